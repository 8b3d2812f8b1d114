"""One scored block forward on the Llama-3.1-8B architecture (random bf16), over a cache in the
engine's buffer: the extra peak memory of scoring (eager vs flash vs none) and, with
``--profile``, the top CUDA kernels. (Timing targets: ``benchmarks.engine_speed --targets``.)

    python -m benchmarks.block_cost --cache 28k --block 4096 --question 64 [--profile]
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.models import random_llama31_8b
from laserkv import hooks
from laserkv.backends import ScoreRequest
from laserkv.engine import block_inputs, forward_into


def tokens(label: str) -> int:
    return int(label.rstrip("k")) * 1024 if label.endswith("k") else int(label)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default="28k")
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--question", type=int, default=64)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    model = random_llama31_8b()
    n_cache = tokens(args.cache)
    ids = torch.randint(
        0, 128000, (n_cache + args.block + args.question,), generator=torch.Generator().manual_seed(0)
    )
    block, question = ids[n_cache : n_cache + args.block], ids[n_cache + args.block :]
    total = n_cache + args.block + args.question
    print(f"# {torch.cuda.get_device_name()}: cache {n_cache}, block {args.block}, question {args.question}")
    print("| scoring | peak GiB | extra over no scoring | seconds |")
    print("|---|---|---|---|")
    with torch.inference_mode(), hooks.laserkv_attention(model):
        buffer = hooks.allocate_buffer(model, total)
        for start in range(0, n_cache, 8192):  # build the cache in pieces
            piece = ids[start : min(start + 8192, n_cache)]
            forward_into(model, buffer, piece, torch.arange(start, start + piece.numel()))
        block_ids, block_positions = block_inputs(block, n_cache, (question, total))
        baseline = None
        for backend in ("none", "flash", "eager", "none", "flash"):  # the last two are warm
            request = None
            if backend != "none":
                request = ScoreRequest(
                    backend, args.question, 0, torch.zeros(1, 1, n_cache + args.block, device="cuda")
                )
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            start_event, end_event = (
                torch.cuda.Event(enable_timing=True),
                torch.cuda.Event(enable_timing=True),
            )
            buffer.truncate(n_cache)
            start_event.record()
            forward_into(model, buffer, block_ids, block_positions, request)
            end_event.record()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - before
            if backend == "none":
                baseline = peak
            extra = peak - (baseline or 0)
            seconds = start_event.elapsed_time(end_event) / 1000
            print(f"| {backend} | {peak / 2**30:.2f} | {extra / 2**30:.2f} | {seconds:.3f} |")
        if args.profile:
            request = ScoreRequest(
                "flash", args.question, 0, torch.zeros(1, 1, n_cache + args.block, device="cuda")
            )
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
                buffer.truncate(n_cache)
                forward_into(model, buffer, block_ids, block_positions, request)
                torch.cuda.synchronize()
            print(
                profiler.key_averages().table(
                    sort_by="cuda_time_total", row_limit=15, max_name_column_width=60
                )
            )


if __name__ == "__main__":
    main()
