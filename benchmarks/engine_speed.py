"""Speed and memory of the engine on the Llama-3.1-8B architecture (random bf16 weights on the
GPU): peak memory, seconds per phase, prefill tokens/s and the linear-FLOP roofline share, per
context length and method. Prints a markdown table; ``--json`` also writes the raw rows.

    python -m benchmarks.engine_speed --contexts 8k,32k,64k,128k --json results.json

Methods (``--methods``): ``full``; ``laser`` (accumulate, r = 0.75, flash); ``laser_recursive``
(B = 4096, flash); ``exact_flash`` / ``exact_eager`` (accumulate, r = 0.75: the same selection,
scored by either backend; eager only where it fits in memory).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from benchmarks.models import LLAMA31_8B_MATMUL_PARAMETERS, LLAMA31_8B_PARAMETERS, random_llama31_8b
from laserkv import GenerationConfig, MethodConfig, get_method
from laserkv.engine import compress_and_generate

BF16_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak (SXM)
METHOD_FACTORIES = {
    "full": lambda: get_method("full"),
    "laser": lambda: get_method("laser", compression_ratio=0.75),
    "laser_recursive": lambda: get_method("laser_recursive", budget=4096),
    "exact_flash": lambda: get_method("exact", compression_ratio=0.75),
    "exact_eager": lambda: get_method("exact", compression_ratio=0.75, backend="eager"),
}


def context_tokens(label: str) -> int:
    """``"8k"`` -> 8192 tokens."""
    return int(label.rstrip("k")) * 1024


def gpu_peak_flops() -> float:
    """The bf16 dense peak of the GPU in use (by name)."""
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in BF16_PEAK_FLOPS.items() if key in name), float("nan"))


def run_one(
    model: Any, method: MethodConfig, n_context: int, n_question: int, n_new: int, seed: int
) -> dict[str, Any]:
    """One call on random ids; returns a result row (or an ``error`` row on CUDA OOM)."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randint(0, 128000, (n_context,), generator=generator).tolist()
    question = torch.randint(0, 128000, (n_question,), generator=generator).tolist()
    row: dict[str, Any] = {"method": method.name, "backend": method.engine.backend, "context": n_context}
    torch.cuda.empty_cache()
    start = time.perf_counter()
    try:
        result = compress_and_generate(
            model, context, question, method, GenerationConfig(max_new_tokens=n_new), frozenset()
        )
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {**row, "error": "CUDA OOM"}
    stats = result.stats
    prefill = sum(stats.seconds[phase] for phase in ("forward", "score", "select", "gather"))
    overhead = stats.seconds["score"] + stats.seconds["select"] + stats.seconds["gather"]
    return {
        **row,
        "wall_seconds": time.perf_counter() - start,
        "budget": stats.budget,
        "final_cache": stats.final_cache_length,
        "max_cache": stats.max_cache_length,
        "peak_gib": (stats.peak_memory_bytes or 0) / 2**30,
        "seconds": stats.seconds,
        "prefill_seconds": prefill,
        "prefill_tokens_per_s": n_context / prefill,
        "overhead_share_of_forward": overhead / stats.seconds["forward"],
        "roofline_share": 2 * LLAMA31_8B_PARAMETERS * n_context / prefill / gpu_peak_flops(),
        "matmul_roofline_share": 2 * LLAMA31_8B_MATMUL_PARAMETERS * n_context / prefill / gpu_peak_flops(),
        "decode_tokens": stats.generated_tokens,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    header = (
        "| context | method | backend | B | final cache | peak GiB | forward s | score s | select s | "
        "gather s | decode s | prefill tok/s | (score+select+gather)/forward | roofline |"
    )
    lines = [header, "|" + "---|" * 14]
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['context']} | {row['method']} | {row['backend']} | {row['error']} |" + " |" * 10
            )
            continue
        seconds = row["seconds"]
        cells = [
            row["context"],
            row["method"],
            row["backend"],
            row["budget"] or "-",
            row["final_cache"],
            f"{row['peak_gib']:.1f}",
            f"{seconds['forward']:.2f}",
            f"{seconds['score']:.3f}",
            f"{seconds['select']:.3f}",
            f"{seconds['gather']:.3f}",
            f"{seconds['decode']:.2f}",
            f"{row['prefill_tokens_per_s']:.0f}",
            f"{100 * row['overhead_share_of_forward']:.1f}%",
            f"{100 * row['roofline_share']:.0f}%",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contexts", default="8k,32k,64k,128k")
    parser.add_argument("--methods", default="full,laser,laser_recursive,exact_flash,exact_eager")
    parser.add_argument("--eager-up-to", default="32k", help="skip exact_eager above this context")
    parser.add_argument("--question-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--json", default=None, help="also write the raw rows here")
    parser.add_argument("--no-cudnn-sdpa", action="store_true", help="keep SDPA off its cuDNN kernel")
    args = parser.parse_args()
    if args.no_cudnn_sdpa:
        torch.backends.cuda.enable_cudnn_sdp(False)
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    model = random_llama31_8b()
    cudnn = "off" if args.no_cudnn_sdpa else "on"
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, 8B arch, bf16, cuDNN SDPA {cudnn}")
    for name in args.methods.split(","):  # warm-up: every method once (kernel selection, allocator)
        run_one(model, METHOD_FACTORIES[name](), 8192, args.question_tokens, 2, seed=99)
    rows = []
    for label in args.contexts.split(","):
        for name in args.methods.split(","):
            if name == "exact_eager" and context_tokens(label) > context_tokens(args.eager_up_to):
                continue
            row = run_one(
                model,
                METHOD_FACTORIES[name](),
                context_tokens(label),
                args.question_tokens,
                args.new_tokens,
                0,
            )
            row["method"] = name
            rows.append(row)
            print(json.dumps({key: value for key, value in row.items() if key != "seconds"}), flush=True)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
