"""Speed and memory of the engine on the Llama-3.1-8B architecture (random bf16 weights on the
GPU): peak memory, seconds per phase, prefill tokens/s and the linear-FLOP roofline share, per
context length and method. Prints a markdown table; ``--json`` also writes the raw rows.

    python -m benchmarks.engine_speed --contexts 8k,32k,64k,128k --json results.json
    python -m benchmarks.engine_speed --contexts 32k,128k --methods full,laser,laser_recursive \
        --distinct 8 --targets --json results.json

``--distinct N``: also N samples of distinct lengths spread over 30k-34k tokens (as a real dataset
has), for ``full`` and ``laser``, each sample once. ``--repeats N``: each (context, method) N times, the
median kept. ``--today-kernel torch``: also ``full`` at 32k and 128k on the path of before issue 40
(PyTorch's block kernel, ``LASERKV_BLOCK_KERNEL=torch``; layers not fused), the block attention
alone per kernel, and issue 40's targets as ratios of this run. The model's layers are fused as
``load_model_and_tokenizer`` fuses them on CUDA (``LASERKV_FUSED_LAYERS=0``: not fused).
``--targets``: also the engine's pieces on their own (``benchmarks.engine_parts``: block forward
with and without scoring at 4k, 28k and 96k caches, a plain 4096-token prefill, decoding steps at
4k and 128k against the HBM floor) and issue 19's targets as ratios measured in this run.

Methods (``--methods``): ``full``; ``laser`` (accumulate, r = 0.75, flash); ``laser_recursive``
(B = 4096, flash); ``exact_flash`` / ``exact_eager`` (accumulate, r = 0.75: the same selection,
scored by either backend; eager only where it fits in memory).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any, TypedDict

import torch

from benchmarks.models import LLAMA31_8B_MATMUL_PARAMETERS, LLAMA31_8B_PARAMETERS, random_llama31_8b
from laserkv import GenerationConfig, MethodConfig, get_method, hooks
from laserkv.engine import compress_and_generate
from laserkv.modeling import FUSED_LAYERS_ENV

BF16_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak (SXM)
METHOD_FACTORIES = {
    "full": lambda: get_method("full"),
    "laser": lambda: get_method("laser", compression_ratio=0.75),
    "laser_recursive": lambda: get_method("laser_recursive", budget=4096),
    "exact_flash": lambda: get_method("exact", compression_ratio=0.75),
    "exact_eager": lambda: get_method("exact", compression_ratio=0.75, backend="eager"),
}


class DistinctTotal(TypedDict):
    """One method over the samples of distinct lengths (None where a sample failed)."""

    lengths: list[int]
    wall_seconds: float | None
    prefill_seconds: float | None
    peak_gib: float | None


class BlockSeconds(TypedDict):
    unscored: float
    scored: float


class DecodeSeconds(TypedDict):
    graph: float
    graph_unfused: float
    eager: float
    dynamic: float
    hbm_floor: float


class Parts(TypedDict):
    """The engine's pieces on their own (``run_parts``), keyed by cache length label."""

    plain_prefill_4096: float
    plain_prefill_4096_fused: float
    block: dict[str, BlockSeconds]
    decode: dict[str, DecodeSeconds]


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
        "blocks": len(stats.cache_length_per_block),
    }


def run_median(
    model: Any, name: str, n_context: int, n_question: int, n_new: int, repeats: int
) -> dict[str, Any]:
    """``run_one`` ``repeats`` times (seed 0 each time): the row with the median prefill seconds,
    with every repeat's prefill seconds beside it (a one-off stall shows as an outlier there)."""
    rows = [run_one(model, METHOD_FACTORIES[name](), n_context, n_question, n_new, 0) for _ in range(repeats)]
    done = sorted((row for row in rows if "error" not in row), key=lambda row: row["prefill_seconds"])
    if not done:
        return {**rows[0], "method": name}
    return {
        **done[len(done) // 2],
        "method": name,
        "prefill_repeats": [row["prefill_seconds"] for row in rows],
    }


def distinct_lengths(count: int, low: int = 30 * 1024, high: int = 34 * 1024) -> list[int]:
    """``count`` distinct context lengths spread over ``[low, high]`` (not multiples of a block)."""
    if count == 1:
        return [low + 7]
    return [low + 7 + (high - low) * index // (count - 1) for index in range(count)]


def run_distinct(
    model: Any, names: list[str], count: int, n_question: int, n_new: int
) -> dict[str, DistinctTotal]:
    """Each method over ``count`` samples of distinct lengths: total seconds and the largest peak."""
    totals: dict[str, DistinctTotal] = {}
    for name in names:
        rows = [
            run_one(model, METHOD_FACTORIES[name](), length, n_question, n_new, seed)
            for seed, length in enumerate(distinct_lengths(count))
        ]
        failed = [row for row in rows if "error" in row]
        totals[name] = {
            "lengths": [row["context"] for row in rows],
            "wall_seconds": None if failed else sum(row["wall_seconds"] for row in rows),
            "prefill_seconds": None if failed else sum(row["prefill_seconds"] for row in rows),
            "peak_gib": None if failed else max(row["peak_gib"] for row in rows),
        }
        print(json.dumps({"distinct": name, **totals[name]}), flush=True)
    return totals


def compile_seconds(model: Any) -> float:
    """What compiling the fused layers costs: after one unfused call (``force_eager``: laserkv's own
    Triton kernels, the allocator and the CUDA graph's first capture warmed up), the first fused
    4096-token call of ``full`` (compiling the block forward's and the decoding step's graphs) minus
    the same call again."""
    with torch.compiler.set_stance("force_eager"):
        run_one(model, METHOD_FACTORIES["full"](), 4096, 64, 2, seed=98)
    first, again = (
        run_one(model, METHOD_FACTORIES["full"](), 4096, 64, 2, seed=98)["wall_seconds"] for _ in range(2)
    )
    return float(first - again)


def run_parts(model: Any, n_question: int) -> Parts:
    """The engine's pieces on their own (``benchmarks.engine_parts``)."""
    from benchmarks import engine_parts as parts

    with torch.compiler.set_stance("force_eager"):  # transformers' own layers, as it runs them
        unfused = parts.plain_prefill_seconds(model, 4096)
    result: Parts = {
        "plain_prefill_4096": unfused,
        "plain_prefill_4096_fused": parts.plain_prefill_seconds(model, 4096),
        "block": {},
        "decode": {},
    }
    for label in ("4k", "28k", "96k"):
        n_cache = context_tokens(label)
        unscored = parts.block_forward_seconds(model, n_cache, 4096, n_question, scored=False)
        scored = parts.block_forward_seconds(model, n_cache, 4096, n_question, scored=True)
        result["block"][label] = {"unscored": unscored, "scored": scored}
        print(json.dumps({"block": label, **result["block"][label]}), flush=True)
    for label in ("4k", "128k"):
        n_cache = context_tokens(label)
        with torch.compiler.set_stance("force_eager"):
            graph_unfused = parts.decode_step_seconds(model, n_cache, "graph")
        result["decode"][label] = {
            "graph": parts.decode_step_seconds(model, n_cache, "graph"),
            "graph_unfused": graph_unfused,
            "eager": parts.decode_step_seconds(model, n_cache, "eager"),
            "dynamic": parts.decode_step_seconds(model, n_cache, "dynamic"),
            "hbm_floor": parts.hbm_floor_seconds(model, n_cache),
        }
        print(json.dumps({"decode": label, **result["decode"][label]}), flush=True)
    return result


def find(
    rows: list[dict[str, Any]], method: str, context: int, kernel: str = "default"
) -> dict[str, Any] | None:
    return next(
        (
            row
            for row in rows
            if row["method"] == method
            and row["context"] == context
            and row.get("kernel", "default") == kernel
            and "error" not in row
        ),
        None,
    )


def run_today(model: Any, n_question: int, n_new: int, repeats: int = 1) -> list[dict[str, Any]]:
    """``full`` at 32k and 128k on the path of before issue 40 (PyTorch's flash kernel:
    ``LASERKV_BLOCK_KERNEL=torch``; layers not fused: ``force_eager``), rows tagged ``kernel: torch``."""
    from laserkv.kernels import BLOCK_KERNEL_ENV

    rows = []
    previous = os.environ.get(BLOCK_KERNEL_ENV)
    os.environ[BLOCK_KERNEL_ENV] = "torch"
    try:
        with torch.compiler.set_stance("force_eager"):  # first use of today's kernel, as the others had
            run_one(model, METHOD_FACTORIES["full"](), 8192, n_question, 2, seed=99)
        for label in ("32k", "128k"):
            with torch.compiler.set_stance("force_eager"):
                row = run_median(model, "full", context_tokens(label), n_question, n_new, repeats)
            rows.append({**row, "kernel": "torch"})
            print(json.dumps({key: value for key, value in rows[-1].items() if key != "seconds"}), flush=True)
    finally:
        if previous is None:
            os.environ.pop(BLOCK_KERNEL_ENV, None)
        else:
            os.environ[BLOCK_KERNEL_ENV] = previous
    return rows


def kernel_seconds(rows: int = 4096 + 64) -> dict[str, dict[str, float]]:
    """The block attention alone (``benchmarks.attention_kernels``), today's kernel and the
    engine's, at 4k, 28k and 96k caches: seconds per call by kernel."""
    from benchmarks import attention_kernels

    found: dict[str, dict[str, float]] = {}
    for label in ("4k", "28k", "96k"):
        keys = context_tokens(label) + rows
        found[label] = {
            "torch": attention_kernels.seconds(attention_kernels.torch_flash_today, rows, keys, 10),
            "engine": attention_kernels.seconds(attention_kernels.torch_flash, rows, keys, 10),
        }
        print(json.dumps({"block_attention": label, **found[label]}), flush=True)
    return found


def targets40(
    rows: list[dict[str, Any]], parts: Parts | None, kernels: dict[str, dict[str, float]]
) -> list[tuple[str, str, bool]]:
    """Issue 40's targets as ``(target, measured, met)`` from this run (today's path: the rows
    tagged ``kernel: torch``)."""
    out: list[tuple[str, str, bool]] = []
    for label, seconds in kernels.items():
        speedup = seconds["torch"] / seconds["engine"]
        measured = f"{1000 * seconds['torch']:.2f} / {1000 * seconds['engine']:.2f} ms = {speedup:.2f}x"
        out.append(
            (f"block attention with LSE >= 1.5x today's kernel, {label} cache", measured, speedup >= 1.5)
        )
    recursive = find(rows, "laser_recursive", 131072)
    if recursive and parts:
        per_block = recursive["prefill_seconds"] / recursive["blocks"]
        ratio = per_block / parts["plain_prefill_4096"]
        measured = f"{1000 * per_block:.0f} / {1000 * parts['plain_prefill_4096']:.0f} ms = {ratio:.2f}x"
        out.append(
            (
                "recursive block <= 1.15x a plain 4096-token prefill (transformers' SDPA)",
                measured,
                ratio <= 1.15,
            )
        )
        fused = per_block / parts["plain_prefill_4096_fused"]
        out.append(
            (
                "the same, against a plain prefill with the engine's fused layers (stricter)",
                f"{1000 * per_block:.0f} / {1000 * parts['plain_prefill_4096_fused']:.0f} ms = {fused:.2f}x",
                fused <= 1.15,
            )
        )
    for label in ("32k", "128k"):
        today, now = (
            find(rows, "full", context_tokens(label), "torch"),
            find(rows, "full", context_tokens(label)),
        )
        if today and now:
            speedup = today["prefill_seconds"] / now["prefill_seconds"]
            measured = f"{today['prefill_seconds']:.2f} / {now['prefill_seconds']:.2f} s = {speedup:.2f}x"
            out.append(
                (f"full-cache prefill >= 1.3x faster than today's path, {label}", measured, speedup >= 1.3)
            )
    today = find(rows, "full", 131072, "torch")
    if today and recursive:
        speedup = today["prefill_seconds"] / recursive["prefill_seconds"]
        measured = f"{today['prefill_seconds']:.2f} / {recursive['prefill_seconds']:.2f} s = {speedup:.2f}x"
        out.append(("laser_recursive 128k >= 5x faster than today's full-cache path", measured, speedup >= 5))
    for label, decode in (parts["decode"] if parts else {}).items():
        ratio = decode["graph"] / decode["hbm_floor"]
        measured = (
            f"{1000 * decode['graph']:.2f} / {1000 * decode['hbm_floor']:.2f} ms = {ratio:.2f}x "
            f"(unfused {1000 * decode['graph_unfused']:.2f} ms)"
        )
        out.append((f"decode <= 2x the HBM floor per token, {label} cache", measured, ratio <= 2))
    return out


def targets(
    rows: list[dict[str, Any]], distinct: dict[str, DistinctTotal], parts: Parts | None
) -> list[tuple[str, str, bool]]:
    """Issue 19's targets as ``(target, measured, met)`` from this run's rows."""
    out: list[tuple[str, str, bool]] = []
    for label in ("32k", "128k"):
        full, laser = find(rows, "full", context_tokens(label)), find(rows, "laser", context_tokens(label))
        if full and laser:
            time_ratio = laser["wall_seconds"] / full["wall_seconds"]
            peak_ratio = laser["peak_gib"] / full["peak_gib"]
            measured = (
                f"time {laser['wall_seconds']:.2f} / {full['wall_seconds']:.2f} s = {time_ratio:.2f}x, "
                f"peak {laser['peak_gib']:.1f} / {full['peak_gib']:.1f} GiB = {peak_ratio:.2f}x"
            )
            out.append(
                (f"laser <= full at {label} (time, peak)", measured, time_ratio <= 1 and peak_ratio <= 1)
            )
    full_d, laser_d = distinct.get("full"), distinct.get("laser")
    if (
        full_d and laser_d and full_d["wall_seconds"] and laser_d["wall_seconds"] is not None
        and full_d["peak_gib"] and laser_d["peak_gib"] is not None
    ):  # fmt: skip
        time_ratio = laser_d["wall_seconds"] / full_d["wall_seconds"]
        peak_ratio = laser_d["peak_gib"] / full_d["peak_gib"]
        measured = (
            f"{len(full_d['lengths'])} samples of {min(full_d['lengths'])}-{max(full_d['lengths'])} tokens: "
            f"time {laser_d['wall_seconds']:.2f} / {full_d['wall_seconds']:.2f} s = {time_ratio:.2f}x, "
            f"peak {peak_ratio:.2f}x"
        )
        out.append(("laser <= full over distinct lengths", measured, time_ratio <= 1 and peak_ratio <= 1))
    full, recursive = find(rows, "full", 131072), find(rows, "laser_recursive", 131072)
    if full and recursive:
        speedup = full["prefill_seconds"] / recursive["prefill_seconds"]
        measured = f"{full['prefill_seconds']:.2f} / {recursive['prefill_seconds']:.2f} s = {speedup:.2f}x"
        out.append(("laser_recursive 128k prefill >= 5x faster than full", measured, speedup >= 5))
    if recursive and parts:
        per_block = recursive["prefill_seconds"] / recursive["blocks"]
        ratio = per_block / parts["plain_prefill_4096"]
        measured = (
            f"{1000 * per_block:.0f} ms per block (mean of {recursive['blocks']}, score + select + "
            f"compaction included) / {1000 * parts['plain_prefill_4096']:.0f} ms = {ratio:.2f}x"
        )
        out.append(("recursive block <= 1.25x a plain 4096-token prefill", measured, ratio <= 1.25))
    for label, block in (parts["block"] if parts else {}).items():
        overhead = block["scored"] / block["unscored"] - 1
        measured = (
            f"{1000 * block['scored']:.0f} vs {1000 * block['unscored']:.0f} ms: {100 * overhead:+.1f}%"
        )
        out.append(
            (f"scoring overhead <= 5% of a block's forward, {label} cache", measured, overhead <= 0.05)
        )
    for label, decode in (parts["decode"] if parts else {}).items():
        ratio = decode["graph"] / decode["hbm_floor"]
        measured = (
            f"{1000 * decode['graph']:.2f} ms/token (eager steps {1000 * decode['eager']:.2f}, "
            f"DynamicCache + SDPA {1000 * decode['dynamic']:.2f}) vs floor "
            f"{1000 * decode['hbm_floor']:.2f} ms = {ratio:.2f}x"
        )
        out.append((f"decode <= 2x the HBM floor, {label} cache", measured, ratio <= 2))
    return out


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
    parser.add_argument(
        "--distinct", type=int, default=0, help="also N samples of distinct lengths (30k-34k)"
    )
    parser.add_argument(
        "--targets", action="store_true", help="also the engine's pieces and issue 19's targets"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="run each (context, method) this many times; keep the median"
    )
    parser.add_argument(
        "--today-kernel", choices=("torch",), default=None,
        help="also today's block kernel (before issue 40) and issue 40's targets (needs --targets)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.no_cudnn_sdpa:
        torch.backends.cuda.enable_cudnn_sdp(False)
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    model = random_llama31_8b()
    cudnn = "off" if args.no_cudnn_sdpa else "on"
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, 8B arch, bf16, cuDNN SDPA {cudnn}")
    if os.environ.get(FUSED_LAYERS_ENV, "1") != "0":  # as load_model_and_tokenizer does on CUDA
        print(
            f"# fused layers: {hooks.fuse_layers(model)} modules; compiled in {compile_seconds(model):.1f} s"
        )
    for name in args.methods.split(","):  # warm-up: every method once (kernel selection, allocator)
        run_one(model, METHOD_FACTORIES[name](), 8192, args.question_tokens, 2, seed=99)
    rows = []
    for label in args.contexts.split(","):
        for name in args.methods.split(","):
            if name == "exact_eager" and context_tokens(label) > context_tokens(args.eager_up_to):
                continue
            row = run_median(
                model, name, context_tokens(label), args.question_tokens, args.new_tokens, args.repeats
            )
            rows.append(row)
            print(json.dumps({key: value for key, value in row.items() if key != "seconds"}), flush=True)
    print(markdown(rows))
    distinct = (
        run_distinct(model, ["full", "laser"], args.distinct, args.question_tokens, args.new_tokens)
        if args.distinct
        else {}
    )
    parts = run_parts(model, args.question_tokens) if args.targets else None
    verdicts = targets(rows, distinct, parts) if (args.targets or args.distinct) else []
    if args.today_kernel:
        rows += run_today(model, args.question_tokens, args.new_tokens, args.repeats)
        verdicts += targets40(rows, parts, kernel_seconds())
    if verdicts:
        print("\n| target | measured (this run) | met |\n|---|---|---|")
        for target, measured, met in verdicts:
            print(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "gpu": torch.cuda.get_device_name(),
                    "torch": torch.__version__,
                    "rows": rows,
                    "distinct": distinct,
                    "parts": parts or {},
                    "targets": [list(item) for item in verdicts],
                },
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
