"""CompressedKV: the per-sequence compressed cache, returned by value, never stashed on a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _as_per_head(positions: Tensor, shape: tuple[int, int]) -> Tensor:
    """Shared (n,) positions as (layers, kv_heads, n); per-head positions unchanged."""
    return positions if positions.dim() == 3 else positions.expand(*shape, positions.numel())


def join_positions(first: Tensor, second: Tensor) -> Tensor:
    """Positions of ``first`` followed by ``second``; shared (n,) ones are broadcast to per-head."""
    if first.dim() == second.dim():
        return torch.cat([first, second], dim=-1)
    shape = tuple(first.shape[:2] if first.dim() == 3 else second.shape[:2])
    return torch.cat([_as_per_head(first, shape), _as_per_head(second, shape)], dim=-1)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CompressedKV:
    """Per-layer keys and values of the kept tokens, in position order, and their positions.

    Attributes:
        keys: per layer (1, kv_heads, n, head_dim), RoPE applied at the original positions.
        values: per layer (1, kv_heads, n, head_dim).
        positions: int64 CPU tensor of original context positions, ascending along the last
            dimension: (n,) when every layer and head keeps the same tokens, (layers, kv_heads, n)
            after a per-layer or per-head selection.
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
        """Number of kept tokens (per layer and head)."""
        return int(self.positions.shape[-1])

    def count_below(self, position: int) -> int:
        """How many kept tokens (per layer and head) sit at context positions below ``position``."""
        if self.length == 0:
            return 0
        return int((self.positions.reshape(-1, self.length)[0] < position).sum())

    def concat(self, other: CompressedKV) -> CompressedKV:
        """``self`` followed by ``other`` (other's positions must come later)."""
        if other.length == 0:
            return self
        if self.length == 0:
            return other
        keys = tuple(torch.cat(pair, dim=2) for pair in zip(self.keys, other.keys, strict=True))
        values = tuple(torch.cat(pair, dim=2) for pair in zip(self.values, other.values, strict=True))
        return CompressedKV(keys, values, join_positions(self.positions, other.positions))

    def gather(self, slots: Tensor) -> CompressedKV:
        """The tokens at ``slots``, in that order.

        Args:
            slots: int64 slot indices, ascending along the last dimension: (k,) for every layer
                and head, or (layers, kv_heads, k) for one set per layer and head.
        """
        if slots.shape[-1] == 0:
            return CompressedKV.empty()
        if slots.dim() == 1:
            if slots.numel() == self.length and torch.equal(slots, torch.arange(self.length)):
                return self  # everything, in order: no copy
            device_slots = slots.to(self.keys[0].device)
            keys = tuple(layer.index_select(2, device_slots) for layer in self.keys)
            values = tuple(layer.index_select(2, device_slots) for layer in self.values)
            return CompressedKV(keys, values, self.positions[..., slots])
        per_layer = slots.to(self.keys[0].device)
        keys = tuple(_gather_heads(layer, per_layer[i]) for i, layer in enumerate(self.keys))
        values = tuple(_gather_heads(layer, per_layer[i]) for i, layer in enumerate(self.values))
        positions = _as_per_head(self.positions, (slots.shape[0], slots.shape[1]))
        return CompressedKV(keys, values, torch.gather(positions, -1, slots))


def _gather_heads(layer: Tensor, head_slots: Tensor) -> Tensor:
    """(1, kv_heads, n, d) gathered at (kv_heads, k) slots per head -> (1, kv_heads, k, d)."""
    index = head_slots[None, :, :, None].expand(1, -1, -1, layer.shape[-1])
    return torch.gather(layer, 2, index)
