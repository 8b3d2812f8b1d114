"""``laserkv run``: compress and answer one generated sample (like the original run_single_sample.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.render import laserkv_errors, stdout

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
            help="Registered method, e.g. laser, exact, snapkv (see README).", rich_help_panel="Method"
        ),
    ] = "laser",
    budget: Annotated[
        int | None, typer.Option(help="Total token budget B.", rich_help_panel="Budget")
    ] = 1024,
    block_size: Annotated[
        int, typer.Option(help="Context tokens per block.", rich_help_panel="Budget")
    ] = 1024,
    protection_divisor: Annotated[
        int, typer.Option(help="n: anchors = local = B/n.", rich_help_panel="Budget")
    ] = 4,
    context_words: Annotated[
        int, typer.Option(help="Haystack size in words.", rich_help_panel="Sample")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Sample generator seed.", rich_help_panel="Sample")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit.", rich_help_panel="Sample")] = 32,
) -> None:
    """Compress and answer one generated BABILong-qa1-style sample, offline."""
    with laserkv_errors():
        from evals.demo import generate_qa1, is_correct
        from laserkv import GenerationConfig, answer, get_method, load_model_and_tokenizer

        overrides: dict[str, object] = {"block_size": block_size}
        if method != "full":
            overrides.update(budget=budget, protection_divisor=protection_divisor)
        config = get_method(method, **overrides)
        sample = generate_qa1(seed, context_words)
        with stdout.status(f"loading {model}"):
            loaded_model, tokenizer = load_model_and_tokenizer(model, device=device, dtype=dtype)
        with stdout.status(f"{config.name}: compressing and answering"):
            result = answer(
                loaded_model,
                tokenizer,
                sample.context,
                sample.instruction,
                config,
                GenerationConfig(max_new_tokens=max_new_tokens),
            )
    stats = result.stats
    table = Table(title=f"laserkv run: {sample.sample_id}", show_header=False)
    rows = [
        ("model", model),
        ("method", f"{config.name} ({config.selector}, {config.compression_mode}, budget {stats.budget})"),
        ("context tokens", str(stats.context_tokens)),
        ("kept tokens (final)", str(stats.final_cache_length)),
        ("cache length per block", ", ".join(map(str, stats.cache_length_per_block))),
        ("question", sample.question),
        ("expected", sample.answer),
        ("answer", result.text),
        ("correct", "[green]yes[/]" if is_correct(sample, result.text) else "[red]no[/]"),
        ("seconds", ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in stats.seconds.items())),
    ]
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)
