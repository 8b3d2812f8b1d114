"""The one place a ``RunConfig`` is built: defaults, then an optional YAML run file, then flags.
``laserkv eval``, ``laserkv sweep``, ``python -m cluster.job`` and the benchmark scripts all call
``build_run_config``; the model and the data are checked here, before any Ray cluster starts.

A run file holds the same options as the flags, by the names in ``DEFAULTS``::

    dataset: babilong
    model: meta-llama/Llama-3.1-8B-Instruct
    lengths: [4k, 32k]          # or "4k,32k"
    tasks: [qa1, qa2]
    methods: [laser, full]      # or grid: quality (a sweep preset or a grid YAML file)
    ratio: 0.75
    gpus: 8
    max_in_flight: 2
    output: results/babilong

With neither a dataset nor a model anywhere, the run is the embedded default: the offline demo
set's needle task with SmolLM2-135M-Instruct (``EMBEDDED``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cluster.address import check_address
from evals.benchmark import DataRequest
from evals.benchmarks import OFFLINE_DEFAULT, get_benchmark
from laserkv.errors import ConfigError
from laserkv.model_sources import check_model_available

if TYPE_CHECKING:
    from cluster.config import RunConfig
    from laserkv.config import MethodConfig

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_DATASET = OFFLINE_DEFAULT
EMBEDDED_METHODS = ("full", "laser", "streaming")
EMBEDDED_OVERRIDES: dict[str, object] = {"budget": 512, "block_size": 1024}
EMBEDDED: dict[str, Any] = {"limit": 10, "lengths": "2k", "tasks": "niah_single", "workers": 2}
"""The embedded default run, beyond ``DEFAULTS``: the demo needle task at 2k tokens (SmolLM2 finds
the needle with the full cache every time, so what compression costs shows), 10 samples, ``full``
against ``laser`` and the ``streaming`` rival at a 512-token budget in 1024-token blocks, on two
workers (one per core: Ray gives each worker one thread); about 10 minutes on 2 cores, set-up
included."""

DEFAULTS: dict[str, Any] = {
    "dataset": EMBEDDED_DATASET,
    "model": EMBEDDED_MODEL,
    "source": None,
    "lengths": "1k,2k,4k",
    "tasks": "qa1,qa2",
    "limit": None,
    "demo_samples": 100,
    "greedy": False,
    "methods": None,
    "grid": None,
    "budget": None,
    "ratio": None,
    "protection_divisor": None,
    "block_size": None,
    "gpus": 0,
    "workers_per_gpu": 1,
    "workers": 1,
    "address": None,
    "allow_remote_address": False,
    "device": None,
    "dtype": None,
    "timeout": 3600.0,
    "max_in_flight": 1,
    "max_retries": 2,
    "output": None,
    "overwrite": False,
    "retry_failed": False,
    "seed": 0,
}
"""Every option of a run and its default (``output``: ``results/eval``, or ``results/sweep`` for
a grid; ``grid``: ``ablation`` for ``laserkv sweep``)."""
BUDGET_OPTIONS = {
    "budget": "budget",
    "ratio": "compression_ratio",
    "protection_divisor": "protection_divisor",
    "block_size": "block_size",
}
"""Run options that override every method's parameter of that name."""


def read_run_file(path: str) -> dict[str, Any]:
    """The options of a YAML run file.

    Raises:
        ConfigError: a missing or unreadable file, or an unknown option (the message lists them).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError("run_file", path, "a YAML file that exists")
    try:
        loaded: Any = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise ConfigError("run_file", path, f"valid YAML ({error})") from error
    if not isinstance(loaded, dict):
        raise ConfigError("run_file", path, "a YAML mapping of run options")
    unknown = sorted(set(loaded) - set(DEFAULTS))
    if unknown:
        raise ConfigError("run_file", unknown[0], f"one of the run options: {', '.join(DEFAULTS)}")
    return dict(loaded)


def merged_options(
    flags: dict[str, Any], run_file: str | None = None, sweep: bool = False
) -> tuple[dict[str, Any], bool]:
    """Defaults, then the run file, then the flags that were given (None = not given).

    Returns:
        ``(options, embedded)``: embedded when neither a dataset nor a model was given.
    """
    unknown = sorted(set(flags) - set(DEFAULTS))
    if unknown:
        raise ConfigError("option", unknown[0], f"one of the run options: {', '.join(DEFAULTS)}")
    given = {
        **(read_run_file(run_file) if run_file else {}),
        **{k: v for k, v in flags.items() if v is not None},
    }
    options = {**DEFAULTS, **given}
    embedded = "dataset" not in given and "model" not in given
    if embedded:
        options.update({key: value for key, value in EMBEDDED.items() if key not in given})
    if sweep and options["grid"] is None and options["methods"] is None:
        options["grid"] = "ablation"
    if options["output"] is None:
        options["output"] = "results/sweep" if options["grid"] is not None else "results/eval"
    return options, embedded


def _names(value: Any) -> tuple[str, ...]:
    """A list option given as ``a,b``, a YAML list or a repeated flag."""
    if isinstance(value, str):
        return tuple(part for part in value.split(",") if part)
    return tuple(str(part) for part in value)


def run_methods(options: dict[str, Any], embedded: bool) -> tuple[MethodConfig, ...]:
    """The methods of a run: a grid (sweep), or the named methods with the budget options."""
    from cluster import presets  # the method registry loads torch

    overrides = {field: options[option] for option, field in BUDGET_OPTIONS.items()}
    if options["grid"] is not None:
        if options["methods"] is not None:
            raise ConfigError("methods", options["methods"], "no methods with a grid (the grid names them)")
        return presets.sweep_methods(options["grid"], overrides)
    names = _names(options["methods"]) if options["methods"] is not None else EMBEDDED_METHODS
    if embedded and all(value is None for value in overrides.values()):
        overrides.update(EMBEDDED_OVERRIDES)
    return presets.methods_with_overrides(names, overrides)


def run_address(options: dict[str, Any]) -> str | None:
    """The address the run will join: ``address``, else ``RAY_ADDRESS``, else None (a local
    cluster), checked by ``cluster.address.check_address`` (a remote job API or Ray Client
    address is refused without ``allow_remote_address``).

    Raises:
        AddressError, ConfigError: an address the run refuses, or of no known form.
    """
    address = options["address"]
    source = "" if address is not None else "RAY_ADDRESS"
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
    check_address(address, bool(options["allow_remote_address"]), source)
    return address


def build_run_config(flags: dict[str, Any], run_file: str | None = None, sweep: bool = False) -> RunConfig:
    """The run the user asked for (see the module docstring), checked before Ray starts.

    Args:
        flags: options given on the command line (None = not given).
        run_file: a YAML run file (its options come before the flags).
        sweep: ``laserkv sweep`` (the grid defaults to ``ablation``).

    Raises:
        ConfigError, EvalError: a bad option, method, dataset, length or task.
        AddressError: a remote job API or Ray Client address without ``allow_remote_address``.
        ModelNotAvailableError: the model cannot be loaded here (named with the real cause).
    """
    options, embedded = merged_options(flags, run_file, sweep)
    lengths, tasks = _names(options["lengths"]), _names(options["tasks"])
    request = DataRequest(
        lengths, tasks, options["source"], options["demo_samples"], model=str(options["model"])
    )
    benchmark = get_benchmark(str(options["dataset"]))
    benchmark.check(request)  # torch-free, so a bad argument fails fast
    address = run_address(options)
    local = address is None
    if local or benchmark.needs_tokenizer:  # on a cluster the workers may hold the model elsewhere
        check_model_available(str(options["model"]))
    from cluster.config import RunConfig  # the method registry loads torch

    return RunConfig(
        model=str(options["model"]),
        dataset=str(options["dataset"]),
        methods=run_methods(options, embedded),
        output_dir=str(options["output"]),
        dataset_source=options["source"],
        lengths=lengths,
        tasks=tasks,
        limit=options["limit"],
        demo_samples_per_cell=options["demo_samples"],
        greedy=bool(options["greedy"]),
        gpus=options["gpus"],
        workers_per_gpu=options["workers_per_gpu"],
        workers=options["workers"],
        address=options["address"],
        allow_remote_address=bool(options["allow_remote_address"]),
        device=options["device"],
        dtype=options["dtype"],
        max_in_flight=options["max_in_flight"],
        unit_timeout_s=float(options["timeout"]),
        max_retries=options["max_retries"],
        overwrite=bool(options["overwrite"]),
        retry_failed=bool(options["retry_failed"]),
        seed=options["seed"],
    )
