"""``laserkv eval`` and ``laserkv sweep``: options -> RunConfig -> cluster.run_eval -> summary."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.render import laserkv_errors, stdout

app = typer.Typer()

Dataset = Annotated[
    str | None,
    typer.Option(
        help="A benchmark (see laserkv datasets; default: the offline demo set).",
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
    int | None,
    typer.Option(
        help="Samples generated per cell of a generated benchmark (demo set, RULER) (default: 100).",
        rich_help_panel="Data",
    ),
]
Greedy = Annotated[
    bool | None, typer.Option(help="LongBench v2: greedy instead of temperature 0.1.", rich_help_panel="Data")
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
    int | None,
    typer.Option(
        help="GPUs to use (one worker each by default); 0 = CPU workers (default: 0).",
        rich_help_panel="Cluster",
    ),
]
WorkersPerGpu = Annotated[
    int | None,
    typer.Option(
        help="Workers sharing each GPU (small models: 4-8 raise throughput) (default: 1).",
        rich_help_panel="Cluster",
    ),
]
Workers = Annotated[
    int | None, typer.Option(help="CPU workers when --gpus 0 (default: 1).", rich_help_panel="Cluster")
]
MaxInFlight = Annotated[
    int | None, typer.Option(help="Units queued per worker at once (default: 1).", rich_help_panel="Cluster")
]
MaxRetries = Annotated[
    int | None,
    typer.Option(help="Re-queues of a unit whose worker died (default: 2).", rich_help_panel="Cluster"),
]
Address = Annotated[
    str | None,
    typer.Option(
        help="An existing Ray cluster: auto, host:port or ray://host:port.", rich_help_panel="Cluster"
    ),
]
AllowRemoteAddress = Annotated[
    bool | None,
    typer.Option(
        "--allow-remote-address",
        help=(
            "Accept a job API or Ray Client address that is not loopback (default: refused; "
            "tunnel first: ray dashboard ray_cluster.yaml)."
        ),
        rich_help_panel="Cluster",
    ),
]
Device = Annotated[
    str | None,
    typer.Option(help="Worker device (default: cuda with GPUs, else cpu).", rich_help_panel="Cluster"),
]
Dtype = Annotated[str | None, typer.Option(help="float32, bfloat16 or float16.", rich_help_panel="Cluster")]
Timeout = Annotated[
    float | None, typer.Option(help="Seconds a unit may run (default: 3600).", rich_help_panel="Cluster")
]
Seed = Annotated[
    int | None, typer.Option(help="Sampling seed (temperature > 0) (default: 0).", rich_help_panel="Method")
]
Output = Annotated[
    str | None,
    typer.Option(
        help="Results directory, resumed if it holds rows (default: results/eval, sweeps results/sweep).",
        rich_help_panel="Output",
    ),
]
Overwrite = Annotated[
    bool | None, typer.Option(help="Delete previous results instead of resuming.", rich_help_panel="Output")
]
RetryFailed = Annotated[
    bool | None, typer.Option(help="On resume, rerun failed units too.", rich_help_panel="Output")
]
RunFile = Annotated[
    str | None,
    typer.Option(
        help="A YAML run file with any of these options (flags given here override it).",
        rich_help_panel="Output",
    ),
]
Quiet = Annotated[bool, typer.Option(help="No progress display.", rich_help_panel="Output")]
Verbose = Annotated[
    bool, typer.Option(help="Also show Ray's own log lines (its start, notices).", rich_help_panel="Output")
]


def _launch(config: object, quiet: bool, verbose: bool = False) -> None:
    from cli.progress import run_progress
    from cli.summary import summary_table
    from cluster.driver import run_eval
    from cluster.reduce import reduce_results

    with run_progress(quiet) as progress:
        output = run_eval(config, progress=progress, ray_logs=verbose)  # type: ignore[arg-type]
    summary = reduce_results(output)
    table = summary_table(summary["cells"], f"laserkv eval: {output}")
    stdout.print(table)
    stdout.print(f"results, summary: {output}  (laserkv report {output})")


def _flags(values: dict[str, object]) -> dict[str, object]:
    """A command's parameters as run options (``--method`` -> ``methods``)."""
    flags = {key: value for key, value in values.items() if key not in ("run_file", "quiet", "verbose")}
    if "method" in flags:
        flags["methods"] = flags.pop("method") or None
    return flags


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
    demo_samples: DemoSamples = None,
    greedy: Greedy = None,
    budget: Budget = None,
    ratio: Ratio = None,
    protection_divisor: Divisor = None,
    block_size: BlockSize = None,
    seed: Seed = None,
    gpus: Gpus = None,
    workers_per_gpu: WorkersPerGpu = None,
    workers: Workers = None,
    max_in_flight: MaxInFlight = None,
    max_retries: MaxRetries = None,
    address: Address = None,
    allow_remote_address: AllowRemoteAddress = None,
    device: Device = None,
    dtype: Dtype = None,
    timeout: Timeout = None,
    output: Output = None,
    overwrite: Overwrite = None,
    retry_failed: RetryFailed = None,
    run_file: RunFile = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run methods on a benchmark, sharded over Ray workers.

    With no dataset and no model: the offline demo set's needle task at 2k tokens with
    SmolLM2-135M-Instruct, methods full, laser and streaming at a 512-token budget.
    """
    flags = _flags(dict(locals()))
    with laserkv_errors():
        from cluster.run_options import build_run_config

        _launch(build_run_config(flags, run_file), quiet, verbose)


@app.command("sweep")
def sweep_command(
    grid: Annotated[
        str | None,
        typer.Option(
            help=(
                "A preset (ablation, laser-budgets, rivals, quality, quality-v2) or a YAML file "
                "(default: ablation)."
            ),
            rich_help_panel="Method",
        ),
    ] = None,
    dataset: Dataset = None,
    model: Model = None,
    source: Source = None,
    lengths: Lengths = None,
    tasks: Tasks = None,
    limit: Limit = None,
    demo_samples: DemoSamples = None,
    greedy: Greedy = None,
    budget: Budget = None,
    ratio: Ratio = None,
    protection_divisor: Divisor = None,
    block_size: BlockSize = None,
    seed: Seed = None,
    gpus: Gpus = None,
    workers_per_gpu: WorkersPerGpu = None,
    workers: Workers = None,
    max_in_flight: MaxInFlight = None,
    max_retries: MaxRetries = None,
    address: Address = None,
    allow_remote_address: AllowRemoteAddress = None,
    device: Device = None,
    dtype: Dtype = None,
    timeout: Timeout = None,
    output: Output = None,
    overwrite: Overwrite = None,
    retry_failed: RetryFailed = None,
    run_file: RunFile = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run a grid of methods as one job (every worker loads its model once)."""
    flags = _flags(dict(locals()))
    with laserkv_errors():
        from cluster.run_options import build_run_config

        _launch(build_run_config(flags, run_file, sweep=True), quiet, verbose)
