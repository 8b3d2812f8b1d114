"""The scoring rows' window mass as one Triton kernel on CUDA: each program loads one tile of
window keys once and sums exp(q.k * scale - lse) over every scoring row of its KV head's query
heads (bottom-right causal), so no logits matrix is written. The same quantity as
``scorers.exact.window_row_mass`` (its torch reference, tested against brute force), per KV head.
"""

from __future__ import annotations

import torch
from torch import Tensor

from laserkv import switches
from laserkv.triton_support import runs_on

try:  # Triton ships with CUDA builds of torch; CPU builds have none
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

TRITON_ENV = switches.TRITON_SCORES_ENV
"""Set to ``0`` to score with the torch reference on CUDA too (a comparison switch)."""


def available(query_rows: Tensor) -> bool:
    """Whether the kernel runs for these rows (CUDA, Triton, bf16/fp16, power-of-two head dim,
    not switched off by ``LASERKV_TRITON_SCORES=0``)."""
    return triton is not None and runs_on(query_rows, TRITON_ENV)


if triton is not None:

    @triton.jit  # parameters without annotations: Triton reads them as types
    def _window_mass_kernel(  # type: ignore[no-untyped-def]
        q_ptr,
        k_ptr,
        lse_ptr,
        out_ptr,
        stride_qh,
        stride_qr,
        stride_kh,
        stride_kn,
        stride_lh,
        stride_oh,
        rows,
        n_keys,
        window_start,
        window,
        scale,
        GROUP: tl.constexpr,
        HEAD_DIM: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        tile = tl.program_id(0)
        kv_head = tl.program_id(1)
        offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        in_window = offs_n < window
        key_index = window_start + offs_n
        offs_d = tl.arange(0, HEAD_DIM)
        key_ptrs = k_ptr + kv_head * stride_kh + key_index[:, None] * stride_kn + offs_d[None, :]
        keys = tl.load(key_ptrs, mask=in_window[:, None], other=0.0)
        total = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for member in range(GROUP):
            head = kv_head * GROUP + member
            for first in range(0, rows, BLOCK_M):
                offs_m = first + tl.arange(0, BLOCK_M)
                is_row = offs_m < rows
                query_ptrs = q_ptr + head * stride_qh + offs_m[:, None] * stride_qr + offs_d[None, :]
                queries = tl.load(query_ptrs, mask=is_row[:, None], other=0.0)
                logits = tl.dot(queries, tl.trans(keys)) * scale
                lse = tl.load(lse_ptr + head * stride_lh + offs_m, mask=is_row, other=0.0)
                seen = key_index[None, :] <= (n_keys - rows + offs_m)[:, None]
                seen = seen & is_row[:, None] & in_window[None, :]
                mass = tl.where(seen, tl.exp(logits - lse[:, None]), 0.0)
                total += tl.sum(mass, axis=0)
        tl.store(out_ptr + kv_head * stride_oh + offs_n, total, mask=in_window)


def window_mass(
    query_rows: Tensor,
    keys: Tensor,
    lse: Tensor,
    scaling: float,
    window_start: int,
    window: int,
    block_n: int = 64,
    block_m: int = 64,
    num_warps: int = 4,
) -> Tensor:
    """(kv_heads, window) fp32 mass of the scoring rows on keys ``[window_start, window_start +
    window)``, summed over each KV head's query heads (arguments as ``window_row_mass``)."""
    heads, rows, head_dim = int(query_rows.shape[1]), int(query_rows.shape[2]), int(query_rows.shape[3])
    kv_heads, n_keys = int(keys.shape[1]), int(keys.shape[2])
    queries, key_rows = query_rows[0], keys[0]
    if queries.stride(-1) != 1:
        queries = queries.contiguous()
    if key_rows.stride(-1) != 1:
        key_rows = key_rows.contiguous()
    lse = lse.float().contiguous()
    out = torch.empty(kv_heads, window, dtype=torch.float32, device=keys.device)
    grid = (triton.cdiv(window, block_n), kv_heads)
    _window_mass_kernel[grid](
        queries, key_rows, lse, out,
        queries.stride(0), queries.stride(1), key_rows.stride(0), key_rows.stride(1),
        lse.stride(0), out.stride(0),
        rows, n_keys, window_start, window, scaling,
        GROUP=heads // kv_heads, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps,
    )  # fmt: skip
    return out
