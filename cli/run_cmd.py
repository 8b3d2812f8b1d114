"""``laserkv run``: compress and answer one demo-set sample (like the original run_single_sample.py)."""

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
    task: Annotated[str, typer.Option(help="qa1 or qa2.", rich_help_panel="Sample")] = "qa1",
    length: Annotated[
        str, typer.Option(help="Context length: 1k, 2k, 4k, 8k, 16k or 32k.", rich_help_panel="Sample")
    ] = "2k",
    sample: Annotated[
        int, typer.Option(help="Index of the sample in its cell.", rich_help_panel="Sample")
    ] = 0,
    max_new_tokens: Annotated[
        int, typer.Option(help="Answer length limit (BABILong: 20).", rich_help_panel="Sample")
    ] = 20,
) -> None:
    """Compress and answer one demo-set sample (like the original run_single_sample.py).

    The sample comes from the offline BABILong-format demo set and is prompted and scored as
    BABILong.
    """
    with laserkv_errors():
        from evals import demo_set
        from evals.babilong import check_config, compare_answers
        from evals.chat import engine_texts
        from laserkv import GenerationConfig, answer_texts, get_method, load_model_and_tokenizer

        overrides: dict[str, object] = {"block_size": block_size}
        if method != "full":
            overrides.update(budget=budget, protection_divisor=protection_divisor)
        config = get_method(method, **overrides)
        if sample < 0:
            raise ValueError(f"sample={sample} is not allowed: an index >= 0")
        check_config(demo_set.DATASET, length, task)  # before the model loads
        with stdout.status(f"loading {model}"):
            loaded_model, tokenizer = load_model_and_tokenizer(model, device=device, dtype=dtype)
        spec = demo_set.model_spec(model, max(sample + 1, demo_set.DemoSpec().samples_per_cell))
        with stdout.status(f"demo set: {length}/{task}"):
            counter = demo_set.tokenizer_counter(tokenizer)
            chosen = list(demo_set.load_samples([length], [task], spec, counter))[sample]
        texts = engine_texts(tokenizer, chosen.parts)
        with stdout.status(f"{config.name}: compressing and answering"):
            result = answer_texts(
                loaded_model,
                tokenizer,
                texts.context_text,
                texts.question_text,
                config,
                GenerationConfig(max_new_tokens=max_new_tokens),
            )
    stats = result.stats
    correct = compare_answers(chosen.target, result.text, chosen.fields["question"], chosen.task)
    table = Table(title=f"laserkv run: {chosen.dataset} {chosen.sample_id}", show_header=False)
    rows = [
        ("model", model),
        ("method", f"{config.name} ({config.kind}, {config.engine.compression_mode}, budget {stats.budget})"),
        ("context tokens", str(stats.context_tokens)),
        ("kept tokens (final)", str(stats.final_cache_length)),
        ("cache length per block", ", ".join(map(str, stats.cache_length_per_block))),
        ("question", chosen.fields["question"]),
        ("expected", chosen.target),
        ("answer", result.text),
        ("correct", "[green]yes[/]" if correct else "[red]no[/]"),
        ("seconds", ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in stats.seconds.items())),
    ]
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)
