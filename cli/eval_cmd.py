"""``laserkv eval`` and ``laserkv sweep``: options -> RunConfig -> cluster.run_eval -> summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.render import laserkv_errors, stdout

app = typer.Typer()

Dataset = Annotated[
    str | None,
    typer.Option(
        help="babilong_demo, babilong, babilong_1k or longbench_v2 (default: the offline demo set).",
        rich_help_panel="Data",
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        help="Local directory, HF id or packaged model (default: SmolLM2-135M-Instruct).",
        rich_help_panel="Model",
    ),
]
Source = Annotated[str | None, typer.Option(help="A local copy of the dataset.", rich_help_panel="Data")]
Lengths = Annotated[
    str | None, typer.Option(help="Comma-separated lengths, e.g. 4k,32k,128k.", rich_help_panel="Data")
]
Tasks = Annotated[
    str | None, typer.Option(help="Comma-separated tasks, e.g. qa1,qa2.", rich_help_panel="Data")
]
Limit = Annotated[
    int | None, typer.Option(help="Samples per task x length (LongBench: in all).", rich_help_panel="Data")
]
DemoSamples = Annotated[
    int, typer.Option(help="Demo-set samples generated per cell.", rich_help_panel="Data")
]
Greedy = Annotated[
    bool, typer.Option(help="LongBench v2: greedy instead of temperature 0.1.", rich_help_panel="Data")
]
Budget = Annotated[
    int | None, typer.Option(help="Token budget B for every method.", rich_help_panel="Budget")
]
Ratio = Annotated[
    float | None,
    typer.Option(help="Compression ratio r (fraction kept) instead of B.", rich_help_panel="Budget"),
]
Divisor = Annotated[
    int | None, typer.Option(help="Protection divisor n (anchors = local = B/n).", rich_help_panel="Budget")
]
BlockSize = Annotated[int | None, typer.Option(help="Context tokens per block.", rich_help_panel="Budget")]
Gpus = Annotated[
    int,
    typer.Option(
        help="GPUs to use (one worker each by default); 0 = CPU workers.", rich_help_panel="Cluster"
    ),
]
WorkersPerGpu = Annotated[
    int,
    typer.Option(
        help="Workers sharing each GPU (small models: 4-8 raise throughput).", rich_help_panel="Cluster"
    ),
]
Workers = Annotated[int, typer.Option(help="CPU workers when --gpus 0.", rich_help_panel="Cluster")]
Address = Annotated[
    str | None, typer.Option(help="An existing Ray cluster: auto or host:port.", rich_help_panel="Cluster")
]
Device = Annotated[
    str | None,
    typer.Option(help="Worker device (default: cuda with GPUs, else cpu).", rich_help_panel="Cluster"),
]
Dtype = Annotated[str | None, typer.Option(help="float32, bfloat16 or float16.", rich_help_panel="Cluster")]
Timeout = Annotated[float, typer.Option(help="Seconds a unit may run.", rich_help_panel="Cluster")]
Output = Annotated[
    Path, typer.Option(help="Results directory (resumed if it holds rows).", rich_help_panel="Output")
]
Overwrite = Annotated[
    bool, typer.Option(help="Delete previous results instead of resuming.", rich_help_panel="Output")
]
RetryFailed = Annotated[
    bool, typer.Option(help="On resume, rerun failed units too.", rich_help_panel="Output")
]
Quiet = Annotated[bool, typer.Option(help="No progress display.", rich_help_panel="Output")]


def _launch(config_kwargs: dict[str, object], methods: object, quiet: bool) -> None:
    from cli.progress import run_progress
    from cluster.config import RunConfig
    from cluster.driver import run_eval
    from cluster.reduce import reduce_results

    config = RunConfig(methods=methods, **config_kwargs)  # type: ignore[arg-type]
    with run_progress(quiet) as progress:
        output = run_eval(config, progress=progress)
    summary = reduce_results(output)
    table = Table(title=f"laserkv eval: {output}")
    for column in (
        "dataset",
        "method",
        "task",
        "length",
        "n",
        "errors",
        "accuracy %",
        "delta vs full",
        "kept tokens",
    ):
        table.add_column(column)
    for cell in summary["cells"]:
        delta = cell["delta_vs_full"]
        table.add_row(
            cell["dataset"],
            cell["method"],
            cell["task"],
            cell["length"],
            str(cell["n"]),
            str(cell["errors"]),
            "-" if cell["accuracy"] is None else f"{cell['accuracy']:.1f}",
            "-" if delta is None else f"{delta:+.1f}",
            "-" if cell["mean_kept_tokens_final"] is None else f"{cell['mean_kept_tokens_final']:.0f}",
        )
    stdout.print(table)
    stdout.print(f"results, summary: {output}  (laserkv report {output})")


def _data_kwargs(
    dataset: str | None,
    model: str | None,
    source: str | None,
    lengths: str | None,
    tasks: str | None,
    limit: int | None,
    demo_samples: int,
    greedy: bool,
    gpus: int,
    workers_per_gpu: int,
    workers: int,
    address: str | None,
    device: str | None,
    dtype: str | None,
    timeout: float,
    output: Path,
    overwrite: bool,
    retry_failed: bool,
) -> dict[str, object]:
    from cluster import presets

    embedded = dataset is None and model is None
    return dict(
        model=model or presets.EMBEDDED_MODEL,
        dataset=dataset or presets.EMBEDDED_DATASET,
        dataset_source=source,
        lengths=tuple((lengths or ",".join(presets.EMBEDDED_LENGTHS)).split(",")),
        tasks=tuple((tasks or ",".join(presets.EMBEDDED_TASKS)).split(",")),
        limit=limit if limit is not None else (presets.EMBEDDED_LIMIT if embedded else None),
        demo_samples_per_cell=demo_samples,
        greedy=greedy,
        gpus=gpus,
        workers_per_gpu=workers_per_gpu,
        workers=workers,
        address=address,
        device=device,
        dtype=dtype,
        unit_timeout_s=timeout,
        output_dir=str(output),
        overwrite=overwrite,
        retry_failed=retry_failed,
    )


@app.command("eval")
def eval_command(
    method: Annotated[
        list[str] | None, typer.Option(help="Registered method (repeat).", rich_help_panel="Method")
    ] = None,
    dataset: Dataset = None,
    model: Model = None,
    source: Source = None,
    lengths: Lengths = None,
    tasks: Tasks = None,
    limit: Limit = None,
    demo_samples: DemoSamples = 100,
    greedy: Greedy = False,
    budget: Budget = None,
    ratio: Ratio = None,
    protection_divisor: Divisor = None,
    block_size: BlockSize = None,
    gpus: Gpus = 0,
    workers_per_gpu: WorkersPerGpu = 1,
    workers: Workers = 1,
    address: Address = None,
    device: Device = None,
    dtype: Dtype = None,
    timeout: Timeout = 3600.0,
    output: Output = Path("results/eval"),
    overwrite: Overwrite = False,
    retry_failed: RetryFailed = False,
    quiet: Quiet = False,
) -> None:
    """Run methods on a benchmark, sharded over Ray workers.

    With no dataset and no model: the offline demo set with SmolLM2-135M-Instruct, methods full
    and laser at 1k-4k tokens.
    """
    with laserkv_errors():
        from cluster import presets

        embedded = dataset is None and model is None
        names = tuple(method or presets.EMBEDDED_METHODS)
        overrides: dict[str, object] = {
            "budget": budget,
            "compression_ratio": ratio,
            "protection_divisor": protection_divisor,
            "block_size": block_size,
        }
        if embedded and all(value is None for value in overrides.values()):
            overrides.update(presets.EMBEDDED_OVERRIDES)
        methods = presets.methods_with_overrides(names, overrides)
        kwargs = _data_kwargs(
            dataset,
            model,
            source,
            lengths,
            tasks,
            limit,
            demo_samples,
            greedy,
            gpus,
            workers_per_gpu,
            workers,
            address,
            device,
            dtype,
            timeout,
            output,
            overwrite,
            retry_failed,
        )
        _launch(kwargs, methods, quiet)


@app.command("sweep")
def sweep_command(
    grid: Annotated[
        str,
        typer.Option(
            help="A preset (ablation, laser-budgets, quality) or a YAML file.", rich_help_panel="Method"
        ),
    ] = "ablation",
    dataset: Dataset = None,
    model: Model = None,
    source: Source = None,
    lengths: Lengths = None,
    tasks: Tasks = None,
    limit: Limit = None,
    demo_samples: DemoSamples = 100,
    greedy: Greedy = False,
    budget: Budget = None,
    ratio: Ratio = None,
    block_size: BlockSize = None,
    gpus: Gpus = 0,
    workers_per_gpu: WorkersPerGpu = 1,
    workers: Workers = 1,
    address: Address = None,
    device: Device = None,
    dtype: Dtype = None,
    timeout: Timeout = 3600.0,
    output: Output = Path("results/sweep"),
    overwrite: Overwrite = False,
    retry_failed: RetryFailed = False,
    quiet: Quiet = False,
) -> None:
    """Run a grid of methods as one job (every worker loads its model once)."""
    with laserkv_errors():
        from cluster import presets

        overrides: dict[str, object] = {
            "budget": budget,
            "compression_ratio": ratio,
            "block_size": block_size,
        }
        methods = presets.sweep_methods(grid, overrides)
        kwargs = _data_kwargs(
            dataset,
            model,
            source,
            lengths,
            tasks,
            limit,
            demo_samples,
            greedy,
            gpus,
            workers_per_gpu,
            workers,
            address,
            device,
            dtype,
            timeout,
            output,
            overwrite,
            retry_failed,
        )
        _launch(kwargs, methods, quiet)
