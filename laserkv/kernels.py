"""The block engine's attention kernels, the only module calling private PyTorch attention ops.

- ``block_attention``: a block (and the question rows after it) over the cache in one call,
  bottom-right causal (row i of q sees keys ``<= k - q + i``, exactly the engine's mask: new rows
  see every cached slot and the new rows before them), grouped-query heads taken as they are,
  no materialised mask on CUDA, and each row's log-sum-exp from the same call. On a Hopper GPU in
  bf16 with ``fa3-fwd`` installed (the ``flash`` extra) it is FlashAttention-3 (about 2x PyTorch's
  kernel: docs/benchmarks.md); otherwise on CUDA (bf16 or fp16) it is PyTorch's flash kernel,
  ``aten._scaled_dot_product_flash_attention``, whose causal flag is bottom-right aligned; on
  CPU PyTorch's CPU flash kernel with an additive mask (its own causal flag is top-left aligned);
  elsewhere the materialised fp32 softmax (the reference).
- ``decode_attention``: one query row over a fixed-size span of the cache with a visibility
  vector, so a decoding step has the same shapes at every step and can be replayed as a CUDA
  graph: a split-KV Triton kernel on CUDA (``decode_triton``), torch ops elsewhere.
- ``ragged_attention``: bottom-right causal attention over one layer of a cache whose layers
  hold different numbers of slots and whose KV heads may hide some (the kvpress bridge's
  PyramidKV and AdaKV caches), through PyTorch's public SDPA with a boolean mask.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable

import torch
from torch import Tensor

from laserkv import decode_triton, switches
from laserkv.scorers.exact import fp32_logits, fp32_products

FA3_MODULE = "fa3_fwd_interface"
"""``fa3-fwd``'s Python interface: a FlashAttention-3 forward for Hopper (sm_90), bf16, with the LSE."""
FA3_HEAD_DIMS = (64, 96, 128, 192, 256)
BLOCK_KERNEL_ENV = switches.BLOCK_KERNEL_ENV
"""``torch``: keep PyTorch's flash kernel where FlashAttention-3 would run (a comparison switch)."""
FLASH_DTYPES = (torch.bfloat16, torch.float16)
FLASH_MAX_HEAD_DIM = 256
FLASH_ENV = switches.FLASH_ENV
"""Set to ``0`` to run the CUDA path on the reference kernel instead (a comparison switch)."""


def uses_cuda_flash(query: Tensor) -> bool:
    """Whether ``block_attention`` runs PyTorch's CUDA flash kernel for this query."""
    head_dim = query.shape[-1]
    return (
        query.is_cuda
        and query.dtype in FLASH_DTYPES
        and head_dim % 8 == 0
        and head_dim <= FLASH_MAX_HEAD_DIM
        and os.environ.get(FLASH_ENV, "1") != "0"
    )


@functools.cache
def fa3_attention() -> Callable[..., tuple[Tensor, Tensor]] | None:
    """``fa3-fwd``'s ``flash_attn_func`` when it is installed and loads, else None."""
    if importlib.util.find_spec(FA3_MODULE) is None:
        return None
    try:
        kernel: Callable[..., tuple[Tensor, Tensor]] = importlib.import_module(FA3_MODULE).flash_attn_func
        return kernel
    except (ImportError, OSError, RuntimeError):  # a build that does not load with this torch / CUDA
        return None


def uses_fa3(query: Tensor) -> bool:
    """Whether ``block_attention`` runs FlashAttention-3 for this query: a bf16 CUDA tensor on a
    Hopper GPU (sm_90), a head dim it was built for, ``fa3-fwd`` installed, and neither comparison
    switch set (``LASERKV_BLOCK_KERNEL=torch``, ``LASERKV_FLASH_KERNEL=0``)."""
    return (
        query.is_cuda
        and query.dtype == torch.bfloat16
        and int(query.shape[-1]) in FA3_HEAD_DIMS
        and os.environ.get(BLOCK_KERNEL_ENV, "fa3") != "torch"
        and os.environ.get(FLASH_ENV, "1") != "0"
        and torch.cuda.get_device_capability(query.device) == (9, 0)
        and fa3_attention() is not None
    )


def block_kernel_name(query: Tensor) -> str:
    """Which kernel ``block_attention`` runs for a query like this one (its device, dtype and head
    dim): ``fa3``, ``torch-flash`` (PyTorch's CUDA flash kernel), ``torch-cpu-flash`` or
    ``reference`` (the materialised softmax)."""
    if uses_fa3(query):
        return "fa3"
    if uses_cuda_flash(query):
        return "torch-flash"
    return "torch-cpu-flash" if query.device.type == "cpu" else "reference"


def bottom_right_allowed(n_rows: int, n_keys: int, device: torch.device) -> Tensor:
    """(n_rows, n_keys) bool: row i may attend to keys ``<= n_keys - n_rows + i``."""
    rows = torch.arange(n_rows, device=device)[:, None]
    keys = torch.arange(n_keys, device=device)[None, :]
    return keys <= rows + (n_keys - n_rows)


def block_attention(query: Tensor, key: Tensor, value: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Bottom-right causal attention of one sequence, with every row's log-sum-exp.

    Args:
        query: (1, h, q, d); key, value: (1, kv_h, k, d) with ``h`` a multiple of ``kv_h``
            (last dimension contiguous; other strides free, e.g. views of a larger buffer).
        scale: the logit scale.

    Returns:
        ``(output, lse)``: (1, q, h, d) in the query's dtype, as transformers' attention functions
        return it, and (h, q) fp32 natural-log log-sum-exp of each row's scaled logits over the
        keys it sees.
    """
    n_rows = query.shape[2]
    attention = fa3_attention() if uses_fa3(query) else None
    if attention is not None:  # (b, s, h, d) views of the same tensors; bottom-right causal; natural-log LSE
        output, lse = attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
            softmax_scale=scale, causal=True, return_attn_probs=True,
        )  # fmt: skip
        return output, lse[0]
    if uses_cuda_flash(query):
        output, lse = torch.ops.aten._scaled_dot_product_flash_attention(
            query, key, value, 0.0, True, False, scale=scale
        )[:2]
        return output.transpose(1, 2), lse[0, :, :n_rows]
    allowed = bottom_right_allowed(n_rows, key.shape[2], query.device)
    if query.device.type == "cpu":
        additive = torch.zeros(allowed.shape, dtype=query.dtype).masked_fill_(~allowed, float("-inf"))
        output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, False, attn_mask=additive, scale=scale
        )[:2]
        return output.transpose(1, 2), lse[0].float()
    return _reference_attention(query, key, value, scale, allowed)


def _reference_attention(
    query: Tensor, key: Tensor, value: Tensor, scale: float, allowed: Tensor
) -> tuple[Tensor, Tensor]:
    """The materialised fp32 softmax (memory O(h * q * k)), for devices without a flash kernel."""
    group = query.shape[1] // key.shape[1]
    keys = key.repeat_interleave(group, dim=1).float()
    logits = torch.matmul(query.float(), keys.transpose(-1, -2)) * scale
    logits = logits.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    probabilities = torch.exp(logits - lse[..., None])
    values = value.repeat_interleave(group, dim=1)
    output = torch.matmul(probabilities.to(value.dtype), values)
    return output.transpose(1, 2), lse[0]


DECODE_CHUNK = 512
"""Slots per partial sum of a decoding step's probabilities times values (split-K: one step's
reduction over a long cache runs over many blocks of the GPU instead of one per head)."""


def decode_attention(query: Tensor, key: Tensor, value: Tensor, visible: Tensor, scale: float) -> Tensor:
    """One query row over a fixed span of cache slots, of which ``visible`` are attended.

    Args:
        query: (1, h, 1, d); key, value: (1, kv_h, n, d), the same ``n`` at every step (split
            into ``DECODE_CHUNK`` partial sums when the values are contiguous and ``n`` a
            multiple of it).
        visible: (n,) bool, True for the slots holding tokens (updated in place between steps).

    Returns:
        (1, 1, h, d) in the query's dtype. Logits, softmax and the sum over slots in fp32.
    """
    if decode_triton.available(query):
        return decode_triton.decode_attention(query, key, value, visible, scale)
    heads, dim = query.shape[1], query.shape[3]
    kv_heads, n_slots = key.shape[1], key.shape[2]
    group = heads // kv_heads
    grouped = query[0, :, 0].reshape(kv_heads, group, dim)
    logits = fp32_logits(grouped, key[0], scale).masked_fill(~visible, float("-inf"))
    probabilities = torch.softmax(logits, dim=-1).to(value.dtype)  # (kv_h, group, n)
    chunks = n_slots // DECODE_CHUNK
    if chunks > 1 and n_slots % DECODE_CHUNK == 0 and value[0].is_contiguous():
        pieces = probabilities.view(kv_heads, group, chunks, DECODE_CHUNK).transpose(1, 2)
        pieces = pieces.reshape(kv_heads * chunks, group, DECODE_CHUNK)
        values = value[0].view(kv_heads * chunks, DECODE_CHUNK, dim)
        partial = fp32_products(pieces, values).view(kv_heads, chunks, group, dim)
        output = partial.sum(1).to(value.dtype)
    else:
        output = torch.bmm(probabilities, value[0])  # (kv_h, group, d)
    return output.reshape(1, 1, heads, dim)


RAGGED_MASK_ELEMENTS = 1 << 26
"""Most mask entries (query rows x keys per KV head's group) one ``ragged_attention`` call builds at
once; longer questions are attended in row chunks (64 Mi booleans, plus SDPA's own copy)."""


def ragged_attention(query: Tensor, key: Tensor, value: Tensor, hidden: Tensor, scale: float) -> Tensor:
    """Bottom-right causal attention of one sequence over a layer's keys, some hidden per KV head.

    Row i of q sees keys ``<= k - q + i`` of this layer (its own length, whatever the other
    layers hold), except the slots ``hidden`` marks, which no query of that KV head sees (a
    press's masked keys: exactly zero weight). A KV head's query heads are folded into its rows
    (query head h belongs to KV head ``h // (h_total / kv_h)``, as transformers' ``repeat_kv``),
    so keys and values are never copied per query head.

    Args:
        query: (1, h, q, d); key, value: (1, kv_h, k, d) with ``h`` a multiple of ``kv_h``.
        hidden: (kv_h, m) bool with m <= k: which of the first m slots are hidden (the slots
            after them, the tokens forwarded since the prefill, never are).
        scale: the logit scale.

    Returns:
        (1, q, h, d) in the query's dtype, as transformers' attention functions return it.
    """
    heads, n_rows, dim = query.shape[1], query.shape[2], query.shape[3]
    kv_heads, n_keys = key.shape[1], key.shape[2]
    group = heads // kv_heads
    seen = torch.ones(kv_heads, n_keys, dtype=torch.bool, device=query.device)
    seen[:, : hidden.shape[-1]] = ~hidden.to(query.device)
    grouped = query.reshape(1, kv_heads, group, n_rows, dim)
    causal = bottom_right_allowed(n_rows, n_keys, query.device)  # (q, k)
    rows_per_chunk = max(1, RAGGED_MASK_ELEMENTS // max(1, group * n_keys))
    pieces = []
    for start in range(0, n_rows, rows_per_chunk):
        stop = min(n_rows, start + rows_per_chunk)
        allowed = seen[:, None, None] & causal[None, None, start:stop]  # (kv_h, 1, rows, k)
        rows = grouped[:, :, :, start:stop].reshape(1, kv_heads, group * (stop - start), dim)
        mask = allowed.expand(kv_heads, group, stop - start, n_keys).reshape(1, kv_heads, -1, n_keys)
        output = torch.nn.functional.scaled_dot_product_attention(
            rows, key, value, attn_mask=mask, scale=scale
        )
        pieces.append(output.reshape(1, kv_heads, group, stop - start, dim))
    return torch.cat(pieces, dim=3).reshape(1, heads, n_rows, dim).transpose(1, 2)
