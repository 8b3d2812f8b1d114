"""CompressedKV: the per-sequence compressed cache, returned by value, never stashed on a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from laserkv.kv_buffer import KVBuffer


def _as_per_head(positions: Tensor, shape: tuple[int, int]) -> Tensor:
    """Shared (n,) positions as (layers, kv_heads, n); per-head positions unchanged."""
    return positions if positions.dim() == 3 else positions.expand(*shape, positions.numel())


def join_positions(first: Tensor, second: Tensor) -> Tensor:
    """Positions of ``first`` followed by ``second``; shared (n,) ones are broadcast to per-head."""
    if first.dim() == second.dim():
        return torch.cat([first, second], dim=-1)
    shape = tuple(first.shape[:2] if first.dim() == 3 else second.shape[:2])
    return torch.cat([_as_per_head(first, shape), _as_per_head(second, shape)], dim=-1)  # type: ignore[arg-type]


def count_below(positions: Tensor, position: int) -> int:
    """How many of ``positions`` ((n,) or (layers, kv_heads, n)) per layer and head sit below
    ``position`` (every layer and head keeps the same number)."""
    n = int(positions.shape[-1])
    if n == 0:
        return 0
    return int((positions.reshape(-1, n)[0] < position).sum())


def take_slots(rows: Tensor, slots: Tensor) -> Tensor:
    """Per-slot values ((n,) shared or (layers, kv_heads, n)) at ``slots``: (k,) for every layer
    and head, or (layers, kv_heads, k) per layer and head (shared values are broadcast)."""
    if slots.dim() == 1:
        return rows[..., slots.to(rows.device)]
    shape = (int(slots.shape[0]), int(slots.shape[1]))
    return torch.gather(_as_per_head(rows, shape), -1, slots.to(rows.device))


@dataclass(frozen=True)
class CompressedKV:
    """Per-layer keys and values of the kept tokens, in position order, and their positions.

    Attributes:
        keys: per layer (1, kv_heads, n, head_dim), RoPE applied at the original positions.
        values: per layer (1, kv_heads, n, head_dim).
        positions: int64 CPU tensor of original context positions, ascending along the last
            dimension: (n,) when every layer and head keeps the same tokens, (layers, kv_heads, n)
            after a per-layer or per-head selection.
        scores: (layers, kv_heads, n) fp32 attention mass each kept slot has received so far,
            for selectors that accumulate it over blocks (H2O); None otherwise.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    positions: Tensor
    scores: Tensor | None = None

    @classmethod
    def empty(cls) -> CompressedKV:
        """A cache with no tokens."""
        return cls((), (), torch.empty(0, dtype=torch.long))

    @property
    def length(self) -> int:
        """Number of kept tokens (per layer and head)."""
        return int(self.positions.shape[-1])

    def with_scores(self, scores: Tensor) -> CompressedKV:
        """The same cache carrying ``scores`` (layers, kv_heads, n)."""
        return CompressedKV(self.keys, self.values, self.positions, scores)


@dataclass(frozen=True)
class Prefilled:
    """A prefill's result.

    Attributes:
        state: the cache the answer is decoded over (slots ascending by position per head; its
            positions -1 padded in front where layers keep different numbers).
        kept_positions: context positions attention still sees, ascending: (n,), or (layers,
            kv_heads, n) with heads that keep fewer than others padded with -1 in front.
        kept_tokens: context tokens kept, averaged over layers and KV heads (rounded).
        first_logits: (vocab,) logits for the first answer token when the prefill already ran the
            whole question, else None.
        question_in_state: how many question tokens the prefill already put in ``state`` (at
            positions ``T..``); the answer forwards the rest first.
        hidden_slots: per layer, (kv_heads, slots) bool: the cache slots attention must not see
            (a press's masked keys, AdaKV). Given (all False where nothing is masked) when layers
            keep different numbers of slots (PyramidKV) or a press masks keys: the question and
            the answer then run under ``hooks.ragged_attention``, causal per layer's own length
            with the hidden slots masked (transformers builds one attention mask from the first
            layer's length, and kvpress's own masking searches a fake key per forward).
    """

    state: CompressedKV
    kept_positions: Tensor
    kept_tokens: int
    first_logits: Tensor | None = None
    hidden_slots: tuple[Tensor, ...] | None = None
    question_in_state: int = 0
    buffer: KVBuffer | None = None
