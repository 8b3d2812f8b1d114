"""``laserkv run``: compress and answer one demo-set sample (like the original run_single_sample.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.render import laserkv_errors, stdout
from evals.benchmarks import OFFLINE_DEFAULT

app = typer.Typer()

DEFAULT_MODEL = "smollm2-135m-instruct"


@app.command()
def run(
    model: Annotated[
        str, typer.Option(help="Local directory, HF id, or packaged model name.", rich_help_panel="Model")
    ] = DEFAULT_MODEL,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or cuda:N (default: a GPU if any).", rich_help_panel="Model")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16 or float16.", rich_help_panel="Model")
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            help="Registered method, e.g. laser, exact, snapkv (laserkv methods).", rich_help_panel="Method"
        ),
    ] = "laser",
    budget: Annotated[
        int | None,
        typer.Option(help="Total token budget B (default: the method's).", rich_help_panel="Budget"),
    ] = None,
    ratio: Annotated[
        float | None,
        typer.Option(
            help="Keep this fraction r of the context instead of a budget.", rich_help_panel="Budget"
        ),
    ] = None,
    block_size: Annotated[
        int | None,
        typer.Option(help="Context tokens per block (default: the method's).", rich_help_panel="Budget"),
    ] = None,
    protection_divisor: Annotated[
        int | None,
        typer.Option(
            help="n: anchors = local = B/n (default: the method's split).", rich_help_panel="Budget"
        ),
    ] = None,
    dataset: Annotated[
        str, typer.Option(help="A benchmark with cells (see laserkv datasets).", rich_help_panel="Sample")
    ] = OFFLINE_DEFAULT,
    source: Annotated[
        str | None, typer.Option(help="A local copy of the dataset.", rich_help_panel="Sample")
    ] = None,
    task: Annotated[
        str,
        typer.Option(
            help="e.g. qa1, qa2, qa3, niah_single (see laserkv datasets).", rich_help_panel="Sample"
        ),
    ] = "qa1",
    length: Annotated[
        str, typer.Option(help="Context length, e.g. 1k, 2k, 4k.", rich_help_panel="Sample")
    ] = "2k",
    sample: Annotated[
        int, typer.Option(help="Index of the sample in its cell.", rich_help_panel="Sample")
    ] = 0,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(help="Answer length limit (default: the benchmark's).", rich_help_panel="Sample"),
    ] = None,
    attention_recall: Annotated[
        bool,
        typer.Option(
            help="Also show the attention recall per layer (one more full-cache forward).",
            rich_help_panel="Output",
        ),
    ] = False,
) -> None:
    """Compress and answer one benchmark sample (like the original run_single_sample.py).

    By default a sample of the offline demo set, prompted and scored by its benchmark's official
    code (the same path as a worker of laserkv eval).
    """
    with laserkv_errors():
        from cluster.unit import SingleRun, run_method, run_single

        config = run_method(method, budget, ratio, block_size, protection_divisor)
        run_spec = SingleRun(
            model,
            dataset,
            length,
            task,
            sample,
            config,
            source,
            device,
            dtype,
            max_new_tokens,
            attention_recall,
        )  # checked before the model loads
        with stdout.status(f"{config.name} on {dataset} {length}/{task}/{sample}"):
            chosen, outcome = run_single(run_spec)
    stats = outcome.result.stats
    table = Table(title=f"laserkv run: {chosen.dataset} {chosen.sample_id}", show_header=False)
    rows = [
        ("model", model),
        ("method", f"{config.name} ({config.kind}, {config.engine.compression_mode}, budget {stats.budget})"),
        ("context tokens", str(stats.context_tokens)),
        ("kept tokens (final)", str(stats.final_cache_length)),
        ("cache length per block", ", ".join(map(str, stats.cache_length_per_block))),
        ("question", chosen.question),
        ("expected", chosen.target),
        ("answer", outcome.result.text),
        ("prediction", "" if outcome.scored.prediction is None else outcome.scored.prediction),
        ("correct", Text("yes", style="green") if outcome.scored.correct else Text("no", style="red")),
        ("seconds", ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in stats.seconds.items())),
        *diagnostics_rows(outcome.diagnostics),
    ]
    for key, value in rows:  # Text: model output and labels like "laser[budget=512]" are no markup
        table.add_row(Text(key), value if isinstance(value, Text) else Text(str(value)))
    stdout.print(table)


def diagnostics_rows(diagnostics: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The outcome's diagnostics as table rows: the answer's tokens kept (and each needle's depth),
    the attention recall per layer."""
    if not diagnostics:
        return []
    rows = []
    if "answer_kept" in diagnostics:
        depths = ", ".join(f"{answer['depth']:.1f}%" for answer in diagnostics["answers"])
        kept = f"{100 * diagnostics['answer_kept']:.1f}% of {diagnostics['answer_tokens']} tokens"
        rows.append(("answer kept", f"{kept} (depth {depths})"))
    if "attention_recall_by_layer" in diagnostics:
        by_layer = diagnostics["attention_recall_by_layer"]
        shown = ", ".join(f"{100 * value:.0f}" for value in by_layer)
        mean = 100 * sum(by_layer) / len(by_layer)
        rows.append(
            (
                "attention recall %",
                f"mean {mean:.1f}; by layer {shown} ({diagnostics['seconds_recall']:.2f} s)",
            )
        )
    return rows
