"""The one place a ``RunConfig`` is built: defaults, then an optional YAML run file, then flags.
``laserkv eval``, ``laserkv sweep``, ``python -m cluster.job`` and the benchmark scripts all call
``build_run_config``; the model and the data are checked here, before any Ray cluster starts.

A run file holds the same options as the flags, by their names (``cluster.options``; a flag is
its name with dashes: ``demo_samples`` is ``--demo-samples``, ``methods`` is ``--method``)::

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
set's needle task with SmolLM2-135M-Instruct (``EMBEDDED``). ``DEFAULTS``: every option's
declared default, by name.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cluster.address import check_address
from cluster.options import (
    DEFAULTS,
    METHOD_OPTIONS,
    OPTIONS,
    RUN_OPTIONS,
    MethodOptions,
    RunOptions,
    load_yaml,
    refused,
)
from evals.benchmark import DataRequest
from evals.benchmarks import get_benchmark
from laserkv.errors import ConfigError
from laserkv.model_sources import check_model_available

if TYPE_CHECKING:
    from cluster.config import RunConfig
    from laserkv.config import MethodConfig

__all__ = ["DEFAULTS", "build_run_config", "merged_options", "read_run_file"]

EMBEDDED_METHODS = ("full", "laser", "streaming")
EMBEDDED_OVERRIDES: dict[str, object] = {"budget": 512, "block_size": 1024}
EMBEDDED: dict[str, Any] = {"limit": 10, "lengths": "2k", "tasks": "niah_single", "workers": 2}
"""The embedded default run, beyond the declared defaults (``cluster.options``): the demo needle
task at 2k tokens (SmolLM2 finds the needle with the full cache every time, so what compression
costs shows), 10 samples, ``full`` against ``laser`` and the ``streaming`` rival at a 512-token
budget in 1024-token blocks, on two workers (one per core: Ray gives each worker one thread);
about 10 minutes on 2 cores, set-up included."""
SWEEP_GRID = "ablation"
SWEEP_OUTPUT = "results/sweep"
"""``laserkv sweep`` with neither a grid nor methods runs this grid; a run of a grid writes to
this directory unless ``output`` is given."""


def read_run_file(path: str) -> dict[str, Any]:
    """The options of a YAML run file, by their declared names (``cluster.options``).

    Raises:
        ConfigError: a missing, unreadable, large or invalid file (``load_yaml``), or an unknown
            option (the message lists them).
    """
    loaded = load_yaml(path, "run_file")
    if not isinstance(loaded, dict):
        raise ConfigError("run_file", path, "a YAML mapping of run options")
    unknown = sorted(str(key) for key in loaded if key not in OPTIONS)
    if unknown:
        raise refused("run_file", unknown[0], f"one of the run options: {', '.join(OPTIONS)}")
    return dict(loaded)


def merged_options(
    flags: dict[str, Any], run_file: str | None = None, sweep: bool = False
) -> tuple[RunOptions, MethodOptions, bool]:
    """Defaults, then the run file, then the flags that were given (None = not given), each value
    of its declared type and checked.

    Returns:
        ``(run options, method options, embedded)``: embedded when neither a dataset nor a model
        was given.

    Raises:
        ConfigError: an unknown option, or a value of another type or that its check refuses.
    """
    unknown = sorted(set(flags) - set(OPTIONS))
    if unknown:
        raise ConfigError("option", unknown[0], f"one of the run options: {', '.join(OPTIONS)}")
    given = {
        **(read_run_file(run_file) if run_file else {}),
        **{k: v for k, v in flags.items() if v is not None},
    }
    embedded = "dataset" not in given and "model" not in given
    if embedded:
        given = {**EMBEDDED, **given}
    if sweep and given.get("grid") is None and given.get("methods") is None:
        given["grid"] = SWEEP_GRID
    if given.get("output") is None and given.get("grid") is not None:
        given["output"] = SWEEP_OUTPUT
    values = {name: OPTIONS[name].value(value) for name, value in given.items()}
    methods = MethodOptions(**{o.name: values[o.name] for o in METHOD_OPTIONS if o.name in values})
    run = RunOptions(**{o.name: values[o.name] for o in RUN_OPTIONS if o.name in values})
    return run, methods, embedded


def run_methods(chosen: MethodOptions, embedded: bool) -> tuple[MethodConfig, ...]:
    """The methods of a run: a grid (sweep), or the named methods with the budget options."""
    from cluster import presets  # the method registry loads torch

    overrides = {
        o.option.method_param: getattr(chosen, o.name) for o in METHOD_OPTIONS if o.option.method_param
    }
    if chosen.grid is not None:
        if chosen.methods is not None:
            raise ConfigError("methods", list(chosen.methods), "no methods with a grid (the grid names them)")
        return presets.sweep_methods(chosen.grid, overrides)
    names = chosen.methods if chosen.methods is not None else EMBEDDED_METHODS
    if embedded and all(value is None for value in overrides.values()):
        overrides.update(EMBEDDED_OVERRIDES)
    return presets.methods_with_overrides(names, overrides)


def run_address(options: RunOptions) -> str | None:
    """The address the run will join: ``address``, else ``RAY_ADDRESS``, else None (a local
    cluster), checked by ``cluster.address.check_address`` (a remote job API or Ray Client
    address is refused without ``allow_remote_address``).

    Raises:
        AddressError, ConfigError: an address the run refuses, or of no known form.
    """
    address = options.address
    source = "" if address is not None else "RAY_ADDRESS"
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None
    check_address(address, options.allow_remote_address, source)
    return address


def build_run_config(flags: dict[str, Any], run_file: str | None = None, sweep: bool = False) -> RunConfig:
    """The run the user asked for (see the module docstring), checked before Ray starts.

    Args:
        flags: options given on the command line, by their declared names (None = not given).
        run_file: a YAML run file (its options come before the flags).
        sweep: ``laserkv sweep`` (the grid defaults to ``ablation``).

    Raises:
        ConfigError, EvalError: a bad option, method, dataset, length or task.
        AddressError: a remote job API or Ray Client address without ``allow_remote_address``.
        ModelNotAvailableError: the model cannot be loaded here (named with the real cause).
    """
    run, chosen, embedded = merged_options(flags, run_file, sweep)
    request = DataRequest(run.lengths, run.tasks, run.source, run.demo_samples, model=run.model)
    benchmark = get_benchmark(run.dataset)
    benchmark.check(request)  # torch-free, so a bad argument fails fast
    local = run_address(run) is None
    if local and run.device is not None:  # a cluster's workers may have devices this machine lacks
        from laserkv.modeling import check_device  # loads torch, as RunConfig does below

        check_device(run.device)
    if local or benchmark.needs_tokenizer:  # on a cluster the workers may hold the model elsewhere
        check_model_available(run.model)
    from cluster.config import RunConfig  # the method registry loads torch

    return RunConfig(**run.options(), methods=run_methods(chosen, embedded))
