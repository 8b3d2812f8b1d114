"""One decoding step's attention as a split-KV Triton kernel on CUDA (flash-decoding): the span's
slots are cut into splits, one program per (split, KV head) streams its keys and values once for
all the query heads of that KV head (online softmax, masked by the visibility vector), and the
splits' partial results are combined by log-sum-exp weights. Fixed grid for a fixed span, so it
is replayed inside the step's CUDA graph. The torch reference is ``kernels.decode_attention``'s
own path, which the GPU tests compare it with."""

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

TRITON_ENV = switches.TRITON_DECODE_ENV
"""Set to ``0`` to decode with the torch reference on CUDA too (a comparison switch)."""
BLOCK_N = 64
TARGET_SPLITS = 64
"""Splits per KV head: enough programs to fill the GPU at every span."""


def available(query: Tensor) -> bool:
    """Whether the kernel runs for this query (CUDA, Triton, bf16/fp16, power-of-two head dim,
    not switched off by ``LASERKV_TRITON_DECODE=0``)."""
    return triton is not None and runs_on(query, TRITON_ENV)


if triton is not None:

    @triton.jit  # parameters without annotations: Triton reads them as types
    def _decode_split_kernel(  # type: ignore[no-untyped-def]
        q_ptr,
        k_ptr,
        v_ptr,
        visible_ptr,
        max_ptr,
        sum_ptr,
        acc_ptr,
        stride_qh,
        stride_kh,
        stride_kn,
        stride_vh,
        stride_vn,
        n_slots,
        split_size,
        n_splits,
        scale,
        GROUP: tl.constexpr,
        GROUP_PAD: tl.constexpr,
        HEAD_DIM: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        split = tl.program_id(0)
        kv_head = tl.program_id(1)
        offs_g = tl.arange(0, GROUP_PAD)
        offs_d = tl.arange(0, HEAD_DIM)
        is_head = offs_g < GROUP
        query_ptrs = q_ptr + (kv_head * GROUP + offs_g)[:, None] * stride_qh + offs_d[None, :]
        queries = tl.load(query_ptrs, mask=is_head[:, None], other=0.0)
        running_max = tl.full((GROUP_PAD,), float("-inf"), dtype=tl.float32)
        running_sum = tl.zeros((GROUP_PAD,), dtype=tl.float32)
        acc = tl.zeros((GROUP_PAD, HEAD_DIM), dtype=tl.float32)
        start = split * split_size
        for first in range(start, start + split_size, BLOCK):
            offs_n = first + tl.arange(0, BLOCK)
            in_span = offs_n < n_slots
            seen = (tl.load(visible_ptr + offs_n, mask=in_span, other=0) != 0) & in_span
            keys = tl.load(
                k_ptr + kv_head * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
                mask=in_span[:, None],
                other=0.0,
            )
            logits = tl.dot(queries, tl.trans(keys)) * scale
            logits = tl.where(seen[None, :], logits, float("-inf"))
            new_max = tl.maximum(running_max, tl.max(logits, axis=1))
            safe_max = tl.where(new_max == float("-inf"), 0.0, new_max)
            rescale = tl.exp(running_max - safe_max)
            weights = tl.exp(logits - safe_max[:, None])
            running_sum = running_sum * rescale + tl.sum(weights, axis=1)
            values = tl.load(
                v_ptr + kv_head * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :],
                mask=in_span[:, None],
                other=0.0,
            )
            acc = acc * rescale[:, None] + tl.dot(weights.to(values.dtype), values)
            running_max = new_max
        row = (kv_head * n_splits + split) * GROUP_PAD + offs_g
        tl.store(max_ptr + row, running_max)
        tl.store(sum_ptr + row, running_sum)
        tl.store(acc_ptr + row[:, None] * HEAD_DIM + offs_d[None, :], acc)


def decode_attention(query: Tensor, key: Tensor, value: Tensor, visible: Tensor, scale: float) -> Tensor:
    """``kernels.decode_attention`` on the GPU: (1, h, 1, d) query over (1, kv_h, n, d) keys and
    values (last dimension contiguous), ``visible`` (n,) bool; returns (1, 1, h, d)."""
    heads, dim = int(query.shape[1]), int(query.shape[3])
    kv_heads, n_slots = int(key.shape[1]), int(key.shape[2])
    group = heads // kv_heads
    group_pad = max(16, triton.next_power_of_2(group))
    split_size = max(BLOCK_N, triton.cdiv(triton.cdiv(n_slots, TARGET_SPLITS), BLOCK_N) * BLOCK_N)
    n_splits = triton.cdiv(n_slots, split_size)
    queries, keys, values = query[0, :, 0], key[0], value[0]
    device = query.device
    running_max = torch.empty(kv_heads, n_splits, group_pad, dtype=torch.float32, device=device)
    running_sum = torch.empty_like(running_max)
    acc = torch.empty(kv_heads, n_splits, group_pad, dim, dtype=torch.float32, device=device)
    _decode_split_kernel[(n_splits, kv_heads)](
        queries, keys, values, visible.view(torch.uint8), running_max, running_sum, acc,
        queries.stride(0), keys.stride(0), keys.stride(1), values.stride(0), values.stride(1),
        n_slots, split_size, n_splits, scale,
        GROUP=group, GROUP_PAD=group_pad, HEAD_DIM=dim, BLOCK=BLOCK_N,
    )  # fmt: skip
    overall = running_max.amax(dim=1, keepdim=True)
    weights = torch.exp(running_max - overall).nan_to_num_(0.0)  # a split that sees nothing weighs 0
    output = (acc * weights[..., None]).sum(1) / (running_sum * weights).sum(1)[..., None]
    return output[:, :group].reshape(1, 1, heads, dim).to(query.dtype)
