"""Quality-grid throughput on one GPU (issue 40): a grid's kvpress configurations on the same
samples, run two ways in one process on one model:

- ``laserkv``: one worker's loop (``cluster.unit.run_unit``: the official prompt, the kvpress
  bridge, the official score), unit after unit;
- ``kvpress``: kvpress's own pipeline (``KVPressTextGenerationPipeline``), one call per sample and
  press, as kvpress's evaluation loops (a query-aware press gets the question inside the context);
  under transformers 5 its hooks need the attention layers' ``cache_position`` back
  (``hooks.cache_position_restored``, as the bridge does), otherwise it is kvpress's code as shipped, on
  the model's layers as transformers ships them (laserkv's fused layers run eagerly there).

Per path: units, seconds, units/s and the useful model TFLOP/s (2 x the decoder layers' parameters x
the tokens each unit processes: context, question and answer) with its share of the GPU's bf16 peak, and
units/s as a multiple of kvpress's loop (issue 40's target, >= 3x, on its own line); then the same per
configuration for the two in-process paths, against kvpress's loop on that configuration.
laserkv with N workers per GPU is the sweep itself (``laserkv eval ... --workers-per-gpu N`` over the
same cells; the command is printed); ``--from-rows NAME DIRECTORY SECONDS`` adds its rows as a path,
their tokens counted the same way (context, question and the answer's tokens).

    python -m benchmarks.sweep_throughput --model qwen2.5-coder-1.5b-instruct --dataset ruler \\
        --lengths 16k --tasks niah_single_1,qa_1 --samples 2 --grid quality-v3
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cluster.presets import sweep_methods
from cluster.samples import limit_per_cell
from cluster.unit import run_unit
from evals.benchmark import DataRequest
from evals.benchmarks import get_benchmark
from evals.sample import EvalSample
from laserkv import load_model_and_tokenizer
from laserkv.config import MethodConfig
from laserkv.errors import ConfigError

PEAK_TFLOPS = 790.0
"""Dense bf16 matrix throughput measured on an H100/H200 (device notes), TFLOP/s."""


@dataclass(frozen=True)
class Path:
    """One way of running the units: its name, units, seconds and tokens processed, and the same per
    configuration where the path ran them one after another in one process (``by_config``)."""

    name: str
    units: int
    seconds: float
    tokens: int
    by_config: tuple[Path, ...] = ()


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def layer_parameters(model: Any) -> int:
    """Parameters of the decoder layers (what every processed token multiplies)."""
    body = getattr(model, model.base_model_prefix)
    return sum(parameter.numel() for parameter in body.layers.parameters())


def timed_loop(
    name: str,
    units: list[tuple[EvalSample, MethodConfig]],
    run_one: Callable[[EvalSample, MethodConfig], int],
) -> Path:
    """``run_one`` (returning the tokens it processed) over the units, one after another, timed in
    all and per configuration (the GPU synchronised after each unit)."""
    timed: list[tuple[str, float, int]] = []  # per unit: configuration, seconds, tokens
    synchronize()
    start = time.perf_counter()
    for sample, method in units:
        unit_start = time.perf_counter()
        tokens = run_one(sample, method)
        synchronize()
        timed.append((method.name, time.perf_counter() - unit_start, tokens))
    seconds = time.perf_counter() - start
    names = dict.fromkeys(config for config, _, _ in timed)  # in the order first run
    configs = tuple(
        Path(
            config,
            sum(1 for other, _, _ in timed if other == config),
            sum(spent for other, spent, _ in timed if other == config),
            sum(tokens for other, _, tokens in timed if other == config),
        )
        for config in names
    )
    return Path(name, len(units), seconds, sum(config.tokens for config in configs), configs)


def run_laserkv(model: Any, tokenizer: Any, units: list[tuple[EvalSample, MethodConfig]]) -> Path:
    """One worker's loop over the units."""

    def run_one(sample: EvalSample, method: MethodConfig) -> int:
        stats = run_unit(model, tokenizer, sample, method, seed=0).result.stats
        return stats.context_tokens + stats.question_tokens + stats.generated_tokens

    return timed_loop("laserkv, one worker", units, run_one)


def run_kvpress(model: Any, tokenizer: Any, units: list[tuple[EvalSample, MethodConfig]]) -> Path:
    """kvpress's pipeline over the same units, one call per unit: the press at ratio 1 - r (kvpress's
    ratio is the share removed); a query-aware press gets the question inside the context."""
    import kvpress  # noqa: F401  # registers the pipeline
    from transformers import pipeline

    from laserkv import hooks

    build: Any = pipeline  # its overloads name only transformers' own tasks
    pipe = build("kv-press-text-generation", model=model, tokenizer=tokenizer, device=model.device)

    def run_one(sample: EvalSample, method: MethodConfig) -> int:
        selector: Any = method.selector
        ratio = method.engine.compression_ratio
        press = selector.build(1.0 - ratio if ratio is not None else 0.0)
        parts = sample.parts
        context, question = (
            (parts.context + parts.question, "") if selector.query_aware else (parts.context, parts.question)
        )
        answer = pipe(
            context, question=question, answer_prefix=parts.answer_prefix, press=press,
            max_new_tokens=sample.generation.max_new_tokens,
        )["answer"]  # fmt: skip
        return len(tokenizer(parts.message + answer, add_special_tokens=False)["input_ids"])

    # kvpress 0.5.5's hooks read cache_position, which transformers 5 dropped; the model's layers run as
    # transformers ships them (not fused: force_eager), as a user's kvpress would
    with hooks.cache_position_restored(model), torch.compiler.set_stance("force_eager"):
        return timed_loop("kvpress pipeline", units, run_one)


def rows_path(name: str, directory: str, seconds: float, tokenizer: Any) -> Path:
    """A sweep's ``ok`` rows in ``directory`` run in ``seconds`` (from its first unit to its last) as a
    path: the tokens each unit processed are its context and question tokens and its answer's."""
    from cluster.writer import read_results

    rows = [row for row in read_results(pathlib.Path(directory)).to_pylist() if row["status"] == "ok"]
    answers = sum(
        len(tokenizer(row["raw_output"] or "", add_special_tokens=False)["input_ids"]) for row in rows
    )
    tokens = sum(row["context_tokens"] + row["question_tokens"] for row in rows) + answers
    return Path(name, len(rows), seconds, tokens)


def from_rows_problem(directory: str, seconds: str) -> str | None:
    """What is wrong with a ``--from-rows`` entry (no result shards there, seconds not a positive
    number), or None."""
    from cluster.writer import shard_paths

    try:
        if float(seconds) <= 0:
            return "SECONDS must be positive"
    except ValueError:
        return "SECONDS must be a number"
    return None if shard_paths(pathlib.Path(directory)) else "no result shards there"


def samples_problem(samples: int, demo_samples: int) -> str | None:
    """What is wrong with ``--samples`` / ``--demo-samples`` (each at least 1; the first of a cell
    cannot outnumber what the cell holds), or None."""
    if samples < 1 or demo_samples < 1:
        return "--samples and --demo-samples must be at least 1"
    if samples > demo_samples:
        return f"--samples {samples} is more than a cell holds (--demo-samples {demo_samples})"
    return None


def kvpress_methods(grid: str, ratio: float) -> list[MethodConfig]:
    """The grid's kvpress configurations at ``ratio``; a ConfigError names the ratios it has."""
    methods = [method for method in sweep_methods(grid, {}) if method.kind == "kvpress"]
    chosen = [method for method in methods if method.engine.compression_ratio == ratio]
    if not chosen:
        ratios = sorted({kept for method in methods if (kept := method.engine.compression_ratio) is not None})
        raise ConfigError("ratio", ratio, f"a ratio of {grid}'s kvpress configurations: {ratios}")
    return chosen


def units_per_second(path: Path) -> float:
    return path.units / path.seconds


def table_row(path: Path, flops_per_token: float, peak_tflops: float, baseline: Path) -> str:
    """One path as a Markdown table row: units, seconds, units/s, useful TFLOP/s, share of peak, and
    units/s as a multiple of ``baseline``'s (kvpress's own loop on the same units)."""
    rate = flops_per_token * path.tokens / path.seconds / 1e12
    cells = (path.name, path.units, f"{path.seconds:.1f}", f"{units_per_second(path):.3f}",
             f"{rate:.1f}", f"{100 * rate / peak_tflops:.1f}%",
             f"{units_per_second(path) / units_per_second(baseline):.2f}x")  # fmt: skip
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def target_line(paths: list[Path], baseline: Path, target: float = 3.0) -> str:
    """Issue 40's throughput target as one line: the fastest laserkv path's units/s over kvpress's loop."""
    best = max((path for path in paths if path is not baseline), key=units_per_second)
    ratio = units_per_second(best) / units_per_second(baseline)
    met = "met" if ratio >= target else "not met"
    return f"# target: >= {target:g}x kvpress's own loop in units/s: {best.name}, {ratio:.2f}x ({met})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--dataset", default="ruler")
    parser.add_argument("--lengths", default="16k")
    parser.add_argument("--tasks", default="niah_single_1,qa_1")
    parser.add_argument("--samples", type=int, default=2, help="samples per cell: the first of each")
    parser.add_argument(
        "--demo-samples", type=int, default=50,
        help="samples each generated cell holds (as laserkv eval's --demo-samples; 50: the v3 cells)",
    )  # fmt: skip
    parser.add_argument("--grid", default="quality-v3")
    parser.add_argument(
        "--ratio", type=float, default=0.25, help="the grid's kvpress configurations at this r"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    parser.add_argument(
        "--from-rows", nargs=3, action="append", default=[], metavar=("NAME", "DIRECTORY", "SECONDS"),
        help="also a sweep's rows (e.g. laserkv with N workers per GPU) run in SECONDS, as a table row",
    )  # fmt: skip
    args = parser.parse_args()
    for _, directory, seconds in args.from_rows:  # before the model loads
        problem = from_rows_problem(directory, seconds)
        if problem:
            parser.error(f"--from-rows {directory} {seconds}: {problem}")
    problem = samples_problem(args.samples, args.demo_samples)
    if problem:
        parser.error(problem)
    try:
        methods = kvpress_methods(args.grid, args.ratio)
    except ConfigError as error:
        parser.error(str(error))
    model, tokenizer = load_model_and_tokenizer(args.model, device=args.device, dtype=args.dtype)
    lengths, tasks = tuple(args.lengths.split(",")), tuple(args.tasks.split(","))
    request = DataRequest(lengths, tasks, None, args.demo_samples, model=args.model)
    samples = list(limit_per_cell(get_benchmark(args.dataset).load(request, tokenizer), args.samples))
    units = [(sample, method) for sample in samples for method in methods]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"# {device}, {args.model}, {args.dataset} {args.lengths} {args.tasks}: {len(samples)} samples x "
          f"{len(methods)} kvpress configurations of {args.grid} = {len(units)} units")  # fmt: skip
    flops_per_token = 2 * layer_parameters(model)
    header = "| {} | units | seconds | units/s | useful TFLOP/s | share of peak | vs kvpress's loop |"
    rule = "|---|---|---|---|---|---|---|"
    in_process = []
    for run in (run_laserkv, run_kvpress):  # laserkv first: kvpress's pipeline leaves its masks on the layers
        run(model, tokenizer, units[:1])  # warm-up
        in_process.append(run(model, tokenizer, units))
    baseline = in_process[1]
    paths = [*in_process, *(rows_path(name, directory, float(seconds), tokenizer)
                            for name, directory, seconds in args.from_rows)]  # fmt: skip
    print(header.format("path"), rule, sep="\n")
    for path in paths:
        print(table_row(path, flops_per_token, args.peak_tflops, baseline))
    print(target_line(paths, baseline))
    print("\n" + header.format("path, configuration"), rule, sep="\n")
    reference = {config.name: config for config in baseline.by_config}
    for path in in_process:
        for config in path.by_config:
            named = Path(f"{path.name}, {config.name}", config.units, config.seconds, config.tokens)
            print(table_row(named, flops_per_token, args.peak_tflops, reference[config.name]))
    flags = " ".join(f"--method {method.name.split('[')[0]}" for method in methods)
    print(f"# laserkv with N workers per GPU, same units: laserkv eval {flags} --ratio {args.ratio} "
          f"--dataset {args.dataset} --model {args.model} --lengths {args.lengths} --tasks {args.tasks} "
          f"--demo-samples {args.demo_samples} --limit {args.samples} "
          "--gpus 1 --workers-per-gpu N")  # fmt: skip


if __name__ == "__main__":
    main()
