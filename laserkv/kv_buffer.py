"""KVBuffer: one call's key/value storage, allocated once at the size the call needs and compacted
in place (kept slots are ascending, so they only move left). Tensor code: no model, no
transformers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class KVBuffer:
    """Per-layer (1, kv_heads, capacity, head_dim) keys and values; slots ``[0, length)`` hold
    tokens, in causal order.

    Attributes:
        keys, values: one preallocated tensor per layer.
        length: slots in use.
    """

    keys: list[Tensor]
    values: list[Tensor]
    length: int = 0
    moved_slots: list[int] = field(default_factory=list)
    """Slots copied by each ``compact`` (what a compaction cost), for statistics and tests."""
    regrown: int = 0
    """How often ``reserve`` had to reallocate (0 when the call's plan sized the buffer right)."""

    @classmethod
    def allocate(
        cls,
        n_layers: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> KVBuffer:
        """An empty buffer of ``capacity`` slots per layer."""
        shape = (1, kv_heads, capacity, head_dim)
        keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        return cls(keys, values)

    @classmethod
    def holding(cls, keys: tuple[Tensor, ...], values: tuple[Tensor, ...], capacity: int) -> KVBuffer:
        """A buffer of ``capacity`` slots holding copies of per-layer (1, kv_heads, n, d) tensors."""
        n = int(keys[0].shape[2])
        if capacity < n:
            raise ValueError(f"capacity {capacity} below the {n} slots to hold")
        layer = keys[0]
        buffer = cls.allocate(len(keys), layer.shape[1], layer.shape[3], capacity, layer.dtype, layer.device)
        for index, (layer_keys, layer_values) in enumerate(zip(keys, values, strict=True)):
            buffer.write(index, 0, layer_keys, layer_values)
        buffer.length = n
        return buffer

    @property
    def capacity(self) -> int:
        """Slots per layer."""
        return int(self.keys[0].shape[2])

    @property
    def n_layers(self) -> int:
        return len(self.keys)

    def write(self, layer: int, start: int, key: Tensor, value: Tensor) -> None:
        """Copy (1, kv_heads, m, d) ``key``/``value`` into slots ``[start, start + m)`` of ``layer``.

        Raises:
            ValueError: the slots run past the capacity.
        """
        stop = start + int(key.shape[2])
        if stop > self.capacity:
            raise ValueError(f"slots up to {stop} do not fit a buffer of {self.capacity}")
        self.keys[layer][:, :, start:stop].copy_(key)
        self.values[layer][:, :, start:stop].copy_(value)

    def reserve(self, needed: int) -> None:
        """Make room for ``needed`` slots (a reallocation and copy: the safety net when a plan
        underestimated; counted in ``regrown``)."""
        if needed <= self.capacity:
            return
        self.regrown += 1
        for store in (self.keys, self.values):
            for layer, old in enumerate(store):
                grown = old.new_empty((*old.shape[:2], needed, old.shape[3]))
                grown[:, :, : self.length].copy_(old[:, :, : self.length])
                store[layer] = grown

    def layer_view(self, layer: int, stop: int) -> tuple[Tensor, Tensor]:
        """Views of ``layer``'s slots ``[0, stop)`` (no copy)."""
        return self.keys[layer][:, :, :stop], self.values[layer][:, :, :stop]

    def view(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Views of every layer's slots in use."""
        keys = tuple(layer[:, :, : self.length] for layer in self.keys)
        values = tuple(layer[:, :, : self.length] for layer in self.values)
        return keys, values

    def truncate(self, length: int) -> None:
        """Forget the slots from ``length`` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate {self.length} slots to {length}")
        self.length = length

    def compact(self, slots: Tensor) -> None:
        """Keep only ``slots``, moved left to ``[0, k)`` in place.

        Slots already in place (the common prefix with ``0, 1, 2, ...``) are not touched; the
        others are gathered (a transient copy of only the moved slots) and written left.

        Args:
            slots: int64 ascending along the last dimension, below ``length``: (k,) for every
                layer and head, or (layers, kv_heads, k) for one set per layer and head.
        """
        n_keep = int(slots.shape[-1])
        if n_keep and int(slots.max()) >= self.length:
            raise ValueError(f"slot {int(slots.max())} is beyond the {self.length} slots in use")
        moved = 0
        on_device: dict[torch.device, Tensor] = {}  # the slots copied once to each layer's device
        for layer, first in enumerate(_first_moved(slots, self.n_layers)):
            if first == n_keep:
                continue
            moved += n_keep - first
            device = self.keys[layer].device
            if device not in on_device:  # a host-to-device copy waits for the GPU: once, not per layer
                on_device[device] = slots.to(device)
            source = on_device[device] if slots.dim() == 1 else on_device[device][layer]
            for store in (self.keys[layer], self.values[layer]):
                store[:, :, first:n_keep] = _gather_slots(store, source[..., first:])
        self.moved_slots.append(moved)
        self.length = n_keep


def _first_moved(slots: Tensor, n_layers: int) -> list[int]:
    """Per layer, the first index ``i`` with ``slots[..., i] != i`` for some head (``k`` if none):
    (k,) slots shared by every layer or (layers, kv_heads, k); one transfer to the host."""
    n = int(slots.shape[-1])
    if n == 0:
        return [0] * n_layers
    moved = slots != torch.arange(n, device=slots.device)
    per_layer = moved.expand(n_layers, n) if slots.dim() == 1 else moved.any(dim=1)
    first = torch.where(per_layer.any(dim=-1), per_layer.to(torch.uint8).argmax(dim=-1), n)
    return [int(index) for index in first.tolist()]


def _gather_slots(store: Tensor, source: Tensor) -> Tensor:
    """(1, kv_heads, n, d) at (m,) slots for every head or (kv_heads, m) per head -> (1, kv_heads, m, d)."""
    if source.dim() == 1:
        return store.index_select(2, source)
    index = source[None, :, :, None].expand(1, -1, -1, store.shape[-1])
    return torch.gather(store, 2, index)
