"""Block attention with the log-sum-exp, kernel against kernel (issue 40): the engine's block forward
(``laserkv.kernels.block_attention``: a block of rows and the question after it over the cache,
bottom-right causal, GQA, each row's natural-log LSE) through each kernel that is installed:

- ``torch``: the path of before issue 40, PyTorch's flash kernel
  (``aten._scaled_dot_product_flash_attention``: ``kernels.block_attention`` with
  ``LASERKV_BLOCK_KERNEL=torch``);
- ``engine``: ``kernels.block_attention`` as the engine runs it (FlashAttention-3 where it runs);
- ``fa4``: ``flash-attn-4``'s CuTe DSL kernel (``flash_attn.cute.flash_attn_func``);
- ``fa3``: ``fa3-fwd``'s FlashAttention-3 forward (``fa3_fwd_interface.flash_attn_func``).

First each kernel's output and LSE against an fp64 brute force (bottom-right causal, GQA, rows
fewer than keys), then its time per call at each cache length on Llama-3.1-8B's attention shape
(32 query heads, 8 KV heads, head dim 128, bf16), in one run, with the ratio to ``torch`` and the
useful TFLOP/s (4 * heads * head dim * visible (row, key) pairs).

    python -m benchmarks.attention_kernels --caches 4k,28k,96k --rows 4160
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable

import torch
from torch import Tensor

from laserkv import kernels

Kernel = Callable[[Tensor, Tensor, Tensor, float], tuple[Tensor, Tensor]]
HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def torch_flash(query: Tensor, key: Tensor, value: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """The engine's kernel (``kernels.block_attention``: FlashAttention-3 where it runs)."""
    return kernels.block_attention(query, key, value, scale)


def torch_flash_today(query: Tensor, key: Tensor, value: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """The block kernel of before issue 40: ``kernels.block_attention`` on PyTorch's flash kernel."""
    previous = os.environ.get(kernels.BLOCK_KERNEL_ENV)
    os.environ[kernels.BLOCK_KERNEL_ENV] = "torch"
    try:
        return kernels.block_attention(query, key, value, scale)
    finally:
        if previous is None:
            os.environ.pop(kernels.BLOCK_KERNEL_ENV, None)
        else:
            os.environ[kernels.BLOCK_KERNEL_ENV] = previous


def flash_layout(module: str, function: str, lse_flag: str) -> Kernel:
    """A FlashAttention-style kernel in (b, s, h, d) layout, bottom-right causal, returning the
    natural-log LSE as (b, h, q) when ``lse_flag`` is set, adapted to ``block_attention``'s call."""

    def attention(query: Tensor, key: Tensor, value: Tensor, scale: float) -> tuple[Tensor, Tensor]:
        kernel = getattr(importlib.import_module(module), function)
        output, lse = kernel(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
            softmax_scale=scale, causal=True, **{lse_flag: True},
        )  # fmt: skip
        return output, lse[0]

    return attention


fa4 = flash_layout("flash_attn.cute", "flash_attn_func", "return_lse")
"""flash-attn-4's CuTe DSL kernel."""
fa3 = flash_layout("fa3_fwd_interface", "flash_attn_func", "return_attn_probs")
"""fa3-fwd's FlashAttention-3 forward (its ``return_attn_probs`` returns the LSE)."""


KERNELS: dict[str, Kernel] = {"torch": torch_flash_today, "engine": torch_flash, "fa4": fa4, "fa3": fa3}


def tokens(label: str) -> int:
    return int(label.removesuffix("k")) * 1024 if label.endswith("k") else int(label)


def inputs(rows: int, keys: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Query (1, h, rows, d) and key / value (1, kv_h, keys, d), bf16 on the GPU, laid out as the
    engine's are: projections transposed from (1, s, h, d)."""
    generator = torch.Generator(device="cuda").manual_seed(seed)

    def make(length: int, heads: int) -> Tensor:
        shape = (1, length, heads, HEAD_DIM)
        return torch.randn(shape, generator=generator, device="cuda", dtype=torch.bfloat16).transpose(1, 2)

    return make(rows, HEADS), make(keys, KV_HEADS), make(keys, KV_HEADS)


def brute_force(query: Tensor, key: Tensor, value: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """fp64 bottom-right causal attention with GQA: (1, q, h, d) output and (h, q) LSE."""
    group = query.shape[1] // key.shape[1]
    keys = key.double().repeat_interleave(group, dim=1)
    values = value.double().repeat_interleave(group, dim=1)
    logits = query.double() @ keys.transpose(-1, -2) * scale
    allowed = kernels.bottom_right_allowed(query.shape[2], key.shape[2], query.device)
    logits = logits.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    output = torch.exp(logits - lse[..., None]) @ values
    return output.transpose(1, 2), lse[0]


def check(kernel: Kernel) -> tuple[float, float]:
    """Largest |output - fp64| and |LSE - fp64| at 192 rows over 1,000 keys."""
    query, key, value = inputs(192, 1000, seed=1)
    scale = HEAD_DIM**-0.5
    output, lse = kernel(query, key, value, scale)
    expected_output, expected_lse = brute_force(query, key, value, scale)
    return float((output.double() - expected_output).abs().max()), float(
        (lse.double() - expected_lse).abs().max()
    )


def seconds(kernel: Kernel, rows: int, keys: int, repeats: int) -> float:
    """Median seconds of one call (CUDA events), after two warm-up calls."""
    query, key, value = inputs(rows, keys)
    scale = HEAD_DIM**-0.5
    for _ in range(2):
        kernel(query, key, value, scale)
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        kernel(query, key, value, scale)
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / 1000)
    return sorted(times)[len(times) // 2]


def useful_flops(rows: int, keys: int) -> float:
    """4 * heads * head dim * visible (row, key) pairs (bottom-right causal)."""
    pairs = rows * (keys - rows) + rows * (rows + 1) / 2
    return 4 * HEADS * HEAD_DIM * pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--caches", default="4k,28k,96k", help="cached slots before the block")
    parser.add_argument("--rows", type=int, default=4096 + 64, help="block rows plus question rows")
    parser.add_argument("--kernels", default="torch,fa4,fa3")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    print(
        f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"h={HEADS}, kv_h={KV_HEADS}, d={HEAD_DIM}, bf16"
    )
    usable: dict[str, Kernel] = {}
    for name in args.kernels.split(","):
        try:
            output_error, lse_error = check(KERNELS[name])
        except Exception as error:  # a kernel that does not load or run is reported, not fatal
            print(f"{name}: not usable: {type(error).__name__}: {str(error)[:300]}")
            continue
        print(f"{name}: max |output - fp64| {output_error:.2e}, max |LSE - fp64| {lse_error:.2e}")
        usable[name] = KERNELS[name]
    print("| cache | keys | rows | kernel | ms | TFLOP/s | vs torch |")
    print("|---|---|---|---|---|---|---|")
    for label in args.caches.split(","):
        keys = tokens(label) + args.rows
        baseline = None
        for name, kernel in usable.items():
            elapsed = seconds(kernel, args.rows, keys, args.repeats)
            baseline = elapsed if name == "torch" else baseline
            ratio = f"{baseline / elapsed:.2f}x" if baseline else "-"
            rate = useful_flops(args.rows, keys) / elapsed / 1e12
            print(
                f"| {label} | {keys} | {args.rows} | {name} | {1000 * elapsed:.3f} | {rate:.0f} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
