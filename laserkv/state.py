"""CompressedKV: the per-sequence compressed cache, returned by value, never stashed on a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CompressedKV:
    """Per-layer keys and values of the kept tokens, in position order, and their positions.

    Attributes:
        keys: per layer (1, kv_heads, n, head_dim), RoPE applied at the original positions.
        values: per layer (1, kv_heads, n, head_dim).
        positions: (n,) int64 CPU tensor of original context positions, ascending.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    positions: Tensor

    @classmethod
    def empty(cls) -> CompressedKV:
        """A cache with no tokens."""
        return cls((), (), torch.empty(0, dtype=torch.long))

    @property
    def length(self) -> int:
        """Number of kept tokens."""
        return int(self.positions.numel())

    def concat(self, other: CompressedKV) -> CompressedKV:
        """``self`` followed by ``other`` (other's positions must come later)."""
        if other.length == 0:
            return self
        if self.length == 0:
            return other
        keys = tuple(torch.cat(pair, dim=2) for pair in zip(self.keys, other.keys, strict=True))
        values = tuple(torch.cat(pair, dim=2) for pair in zip(self.values, other.values, strict=True))
        return CompressedKV(keys, values, torch.cat([self.positions, other.positions]))

    def gather(self, slots: Tensor) -> CompressedKV:
        """The tokens at ``slots`` (ascending int64 slot indices), in that order."""
        if slots.numel() == 0:
            return CompressedKV.empty()
        device_slots = slots.to(self.keys[0].device)
        keys = tuple(layer.index_select(2, device_slots) for layer in self.keys)
        values = tuple(layer.index_select(2, device_slots) for layer in self.values)
        return CompressedKV(keys, values, self.positions[slots])
