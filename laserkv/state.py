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

    def count_below(self, position: int) -> int:
        """How many kept tokens (per layer and head) sit at context positions below ``position``."""
        return count_below(self.positions, position)

    def concat(self, other: CompressedKV) -> CompressedKV:
        """``self`` followed by ``other`` (other's positions must come later)."""
        if other.length == 0:
            return self
        if self.length == 0:
            return other
        keys = tuple(torch.cat(pair, dim=2) for pair in zip(self.keys, other.keys, strict=True))
        values = tuple(torch.cat(pair, dim=2) for pair in zip(self.values, other.values, strict=True))
        scores = None
        if self.scores is not None and other.scores is not None:
            scores = torch.cat([self.scores, other.scores], dim=-1)
        return CompressedKV(keys, values, join_positions(self.positions, other.positions), scores)

    def with_scores(self, scores: Tensor) -> CompressedKV:
        """The same cache carrying ``scores`` (layers, kv_heads, n)."""
        return CompressedKV(self.keys, self.values, self.positions, scores)

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
            scores = None if self.scores is None else self.scores[..., device_slots.to(self.scores.device)]
            return CompressedKV(keys, values, self.positions[..., slots], scores)
        per_layer = slots.to(self.keys[0].device)
        keys = tuple(_gather_heads(layer, per_layer[i]) for i, layer in enumerate(self.keys))
        values = tuple(_gather_heads(layer, per_layer[i]) for i, layer in enumerate(self.values))
        positions = _as_per_head(self.positions, (slots.shape[0], slots.shape[1]))
        scores = None
        if self.scores is not None:
            scores = torch.gather(self.scores, -1, slots.to(self.scores.device))
        return CompressedKV(keys, values, torch.gather(positions, -1, slots), scores)


def _gather_heads(layer: Tensor, head_slots: Tensor) -> Tensor:
    """(1, kv_heads, n, d) gathered at (kv_heads, k) slots per head -> (1, kv_heads, k, d)."""
    index = head_slots[None, :, :, None].expand(1, -1, -1, layer.shape[-1])
    return torch.gather(layer, 2, index)


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
        question_token_by_token: forward the question one token at a time (the same attention,
            row by row): when layers keep different numbers of slots (PyramidKV; transformers
            builds one attention mask from the first layer's length, which misplaces the causal
            part of a multi-token forward in the other layers), or when a press masks keys
            (AdaKV: kvpress's patched attention must find one fake key that every query of a
            forward ignores, which fails for many random queries at once).
    """

    state: CompressedKV
    kept_positions: Tensor
    kept_tokens: int
    first_logits: Tensor | None = None
    question_token_by_token: bool = False
    question_in_state: int = 0
    buffer: KVBuffer | None = None
