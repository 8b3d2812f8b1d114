"""Every run option, declared once: its name, type, default, help and check are the fields of
``RunOptions`` (the run's own settings, inherited by ``cluster.config.RunConfig`` under the same
names) and ``MethodOptions`` (which methods run and the overrides they take; they become
``RunConfig.methods``). Everything else is derived from these two declarations:

- ``laserkv eval`` / ``laserkv sweep`` options (``cli.eval_cmd``: ``typer_parameters``);
- ``python -m cluster.job`` flags (``add_arguments``);
- the YAML run file's keys and the merge defaults -> run file -> flags (``cluster.run_options``);
- the checks ``RunConfig`` runs on itself (``check_fields``).

The flag of an option is ``--`` + its name with dashes (``demo_samples``: ``--demo-samples``)
unless it declares one (``methods``: ``--method``, repeated). A new option is one field here,
plus the code that uses it (``config.<name>``). Torch-free: ``laserkv --help`` imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import reprlib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cluster.address import ALLOW_FLAG
from evals.benchmarks import OFFLINE_DEFAULT
from evals.demo_set import MAX_SAMPLES_PER_CELL
from laserkv.errors import ConfigError

EVAL, SWEEP, JOB = "eval", "sweep", "job"
COMMANDS = (EVAL, SWEEP, JOB)


@dataclass(frozen=True)
class Option:
    """What a run option declares beyond its field's name, type and default.

    Attributes:
        help: one sentence for ``--help`` (`` (default: ...)`` is appended unless it has one).
        panel: the ``--help`` group (Data, Model, Method, Budget, Cluster, Output).
        check: True for a good value (after the type check); None: any value of the type.
        expect: what a good value is, for the error line (``timeout=nan is not allowed: ...``).
        commands: the entry points that take it (``eval``, ``sweep``, ``job``).
        flag: the flag when it is not ``--`` + the name with dashes.
        repeat: a list given by repeating the flag (``--method a --method b``), else comma-separated.
        method_param: the ``MethodConfig`` parameter the option overrides in every method.
    """

    help: str
    panel: str
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    commands: tuple[str, ...] = COMMANDS
    flag: str | None = None
    repeat: bool = False
    method_param: str | None = None


def option(default: Any, help: str, panel: str, **declared: Any) -> Any:
    """A dataclass field that is a run option (see ``Option``)."""
    return dataclasses.field(default=default, metadata={"option": Option(help, panel, **declared)})


def at_least(minimum: int) -> Callable[[Any], bool]:
    return lambda value: value >= minimum


def between(minimum: int, maximum: int) -> Callable[[Any], bool]:
    return lambda value: minimum <= value <= maximum


MAX_SEED = 2**32 - 1
"""The largest sampling seed: every generator a run seeds (torch, NumPy, ``random``) takes it."""
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")
MAX_SHOWN = 60
"""Characters of a refused value an error line shows (a run file's value may be huge)."""


class Shown(str):
    """A refused value as an error line shows it: its ``repr``, cut to ``MAX_SHOWN`` characters."""

    def __new__(cls, value: Any) -> Shown:
        short = reprlib.Repr()
        short.maxlevel, short.maxlist, short.maxtuple, short.maxdict = 2, 4, 4, 4
        short.maxstring = short.maxother = MAX_SHOWN
        try:
            text = short.repr(value)
        except Exception:
            text = f"<{type(value).__name__}>"
        return super().__new__(cls, text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "...")

    def __repr__(self) -> str:
        return str.__str__(self)


def refused(name: str, value: Any, expected: str) -> ConfigError:
    """The ``ConfigError`` of a refused value, shown short (``Shown``)."""
    return ConfigError(name, Shown(value), expected)


@dataclass(frozen=True, kw_only=True)
class MethodOptions:
    """The options that choose the methods of a run (``RunConfig.methods``)."""

    methods: tuple[str, ...] | None = option(
        None, "Registered method (repeat).", "Method", flag="--method", repeat=True, commands=(EVAL, JOB)
    )
    grid: str | None = option(
        None,
        "A preset (ablation, laser-budgets, rivals, quality, quality-v2, quality-v3) or a YAML file "
        "(default: ablation).",
        "Method",
        expect="None or a preset (ablation, laser-budgets, rivals, quality, quality-v2, quality-v3) or a "
        "YAML file",
        commands=(SWEEP, JOB),
    )
    budget: int | None = option(None, "Token budget B for every method.", "Budget", method_param="budget")
    ratio: float | None = option(
        None,
        "Compression ratio r (fraction kept) instead of B.",
        "Budget",
        method_param="compression_ratio",
    )
    protection_divisor: int | None = option(
        None, "Protection divisor n (anchors = local = B/n).", "Budget", method_param="protection_divisor"
    )
    block_size: int | None = option(None, "Context tokens per block.", "Budget", method_param="block_size")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The options of a run beyond its methods; ``RunConfig`` inherits them (same names)."""

    dataset: str = option(
        OFFLINE_DEFAULT, "A benchmark (see laserkv datasets; default: the offline demo set).", "Data"
    )
    model: str = option(
        "smollm2-135m-instruct",
        "Local directory, HF id or packaged model (default: SmolLM2-135M-Instruct).",
        "Model",
    )
    source: str | None = option(None, "A local copy of the dataset.", "Data")
    lengths: tuple[str, ...] = option(
        ("1k", "2k", "4k"), "Comma-separated lengths, e.g. 4k,32k,128k.", "Data"
    )
    tasks: tuple[str, ...] = option(("qa1", "qa2"), "Comma-separated tasks, e.g. qa1,qa2.", "Data")
    limit: int | None = option(
        None,
        "Samples per task x length (LongBench: in all; default: every sample).",
        "Data",
        check=at_least(1),
        expect="None or an integer >= 1",
    )
    demo_samples: int = option(
        100,
        "Samples generated per cell of a generated benchmark (demo set, RULER), at most "
        f"{MAX_SAMPLES_PER_CELL:,}.",
        "Data",
        check=between(1, MAX_SAMPLES_PER_CELL),
        expect=f"an integer from 1 to {MAX_SAMPLES_PER_CELL:,} (samples per cell)",
    )
    greedy: bool = option(False, "LongBench v2: greedy instead of temperature 0.1.", "Data")
    attention_recall: bool = option(
        False,
        "Also record each unit's attention recall per layer (costs one full-cache forward per unit).",
        "Output",
    )
    seed: int = option(
        0,
        "Sampling seed (temperature > 0).",
        "Method",
        check=between(0, MAX_SEED),
        expect=f"an integer from 0 to {MAX_SEED}",
    )
    gpus: int = option(
        0,
        "GPUs to use (one worker each by default); 0 = CPU workers.",
        "Cluster",
        check=at_least(0),
        expect="an integer >= 0",
    )
    workers_per_gpu: int = option(
        1,
        "Workers sharing each GPU (small models: 4-10 raise throughput, more under CUDA MPS).",
        "Cluster",
        check=at_least(1),
        expect="an integer >= 1",
    )
    workers: int = option(
        1, "CPU workers when --gpus 0.", "Cluster", check=at_least(1), expect="an integer >= 1"
    )
    max_in_flight: int = option(
        1, "Units queued per worker at once.", "Cluster", check=at_least(1), expect="an integer >= 1"
    )
    max_retries: int = option(
        2, "Re-queues of a unit whose worker died.", "Cluster", check=at_least(0), expect="an integer >= 0"
    )
    address: str | None = option(
        None, "An existing Ray cluster: auto, host:port or ray://host:port.", "Cluster"
    )
    allow_remote_address: bool = option(
        False,
        "Accept a job API or Ray Client address that is not loopback (default: refused; "
        "tunnel first: ray dashboard ray_cluster.yaml).",
        "Cluster",
        flag=ALLOW_FLAG,
    )
    device: str | None = option(
        None,
        "Worker device (default: cuda with GPUs, else cpu).",
        "Cluster",
        check=DEVICE.fullmatch,
        expect="None or cpu, cuda, cuda:N or mps",
    )
    dtype: str | None = option(
        None,
        "float32, bfloat16 or float16.",
        "Cluster",
        check=DTYPE_NAMES.__contains__,
        expect=f"None or one of {', '.join(DTYPE_NAMES)}",
    )
    timeout: float = option(
        3600.0,
        "Seconds a unit may run (longer: a timeout row, its worker replaced).",
        "Cluster",
        check=lambda value: math.isfinite(value) and value > 0,
        expect="a positive number of seconds",
    )
    output: str = option(
        "results/eval",
        "Results directory, resumed if it holds rows (default: results/eval, with a grid results/sweep).",
        "Output",
    )
    overwrite: bool = option(False, "Delete previous results instead of resuming.", "Output")
    retry_failed: bool = option(False, "On resume, rerun failed units too.", "Output")

    def __post_init__(self) -> None:
        check_fields(self)

    def options(self) -> dict[str, Any]:
        """The run options as plain data, by name (``RunConfig`` adds ``methods``)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(RunOptions)}


@dataclass(frozen=True)
class Declared:
    """One declared option: its field's name, type (without None) and default, and ``Option``."""

    name: str
    type: Any
    optional: bool
    default: Any
    option: Option

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        """The declared help, with the default unless it speaks of one or there is none."""
        shown = self.default
        if "default:" in self.option.help or shown is None or shown is False:
            return self.option.help
        if isinstance(shown, tuple):
            shown = ",".join(shown)
        elif isinstance(shown, float) and shown.is_integer():
            shown = int(shown)
        return f"{self.option.help[:-1]} (default: {shown})."

    def expected(self) -> str:
        """What a good value is (for the error line)."""
        if self.option.expect:
            return self.option.expect
        kind = {
            bool: "true or false (not quoted)",
            int: "an integer",
            float: "a number",
            str: "a non-empty string",
            tuple: "one or more names, as a list or comma-separated",
        }[self.type]
        return f"None or {kind}" if self.optional else kind

    def value(self, given: Any) -> Any:
        """``given`` (a flag's or the run file's value) as the field's type, checked: a boolean is
        ``True`` or ``False`` only (never a string such as ``'false'``, nor 0/1), an integer is no
        boolean, a string is not empty, a list holds at least one non-empty name (or integer,
        such as a length ``4096``), all before the declared check.

        Raises:
            ConfigError: a value of another type or one the check refuses (its value shown short).
        """
        if given is None and self.optional:
            return None
        value = given
        if self.type is tuple and isinstance(given, str):
            value = tuple(part.strip() for part in given.split(","))
        elif self.type is tuple and isinstance(given, list | tuple):
            names = all(isinstance(part, str | int) and not isinstance(part, bool) for part in given)
            value = tuple(str(part).strip() for part in given) if names else None
        elif self.type is float and isinstance(given, int) and not isinstance(given, bool):
            value = float(given)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise refused(self.name, given, self.expected())
        if (self.type is str and not (value.strip() and "\0" not in value)) or (
            self.type is tuple and not (value and all(value))
        ):
            raise refused(self.name, given, self.expected())
        try:
            good = self.option.check is None or bool(self.option.check(value))
        except (TypeError, ValueError, OverflowError):
            good = False
        if not good:
            raise refused(self.name, given, self.expected())
        return value


def _declared(cls: type) -> Iterator[Declared]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next(arg for arg in args if arg is not type(None)) if optional else hint
        yield Declared(
            field.name, typing.get_origin(base) or base, optional, field.default, field.metadata["option"]
        )


PANELS = ("Method", "Data", "Model", "Budget", "Cluster", "Output")
METHOD_OPTIONS: tuple[Declared, ...] = tuple(_declared(MethodOptions))
RUN_OPTIONS: tuple[Declared, ...] = tuple(_declared(RunOptions))
OPTIONS: dict[str, Declared] = {
    declared.name: declared
    for declared in sorted(
        (*METHOD_OPTIONS, *RUN_OPTIONS), key=lambda found: PANELS.index(found.option.panel)
    )
}
"""Every run option by name, in ``--help`` order (by panel, then as declared)."""
DEFAULTS: dict[str, Any] = {name: declared.default for name, declared in OPTIONS.items()}
FORMER_NAMES = {
    "output_dir": "output",
    "dataset_source": "source",
    "demo_samples_per_cell": "demo_samples",
    "unit_timeout_s": "timeout",
}
"""``RunConfig`` fields before each option had one name; manifests written then use them."""


def for_command(command: str) -> tuple[Declared, ...]:
    """The options ``command`` (``eval``, ``sweep`` or ``job``) takes, in ``--help`` order."""
    return tuple(declared for declared in OPTIONS.values() if command in declared.option.commands)


def check_fields(instance: object) -> None:
    """Each declared field of ``instance`` (a ``RunOptions`` or ``RunConfig``) is of its type and
    passes its check.

    Raises:
        ConfigError: the first that does not, by name.
    """
    for declared in RUN_OPTIONS:
        declared.value(getattr(instance, declared.name))


def add_arguments(parser: argparse.ArgumentParser, command: str = JOB) -> None:
    """Every option of ``command`` as an argparse flag, grouped as ``--help`` groups them; an
    option left out parses to None (not given: the run file's value, else the default)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for declared in for_command(command):
        group = groups.get(declared.option.panel) or parser.add_argument_group(declared.option.panel)
        groups[declared.option.panel] = group
        named: dict[str, Any] = {"dest": declared.name, "default": None, "help": declared.help}
        metavar = declared.flag.removeprefix("--").replace("-", "_").upper()
        if declared.type is bool:
            action = "store_true" if declared.option.flag else argparse.BooleanOptionalAction
            group.add_argument(declared.flag, action=action, **named)
        elif declared.option.repeat:
            group.add_argument(declared.flag, action="append", metavar=metavar, **named)
        else:
            kind = str if declared.type is tuple else declared.type
            group.add_argument(declared.flag, type=kind, metavar=metavar, **named)


def stored_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's ``config`` under today's option names (older manifests: ``FORMER_NAMES``)."""
    return {FORMER_NAMES.get(key, key): value for key, value in config.items()}


MAX_YAML_BYTES = 1 << 20
"""The largest run file or grid file read (1 MiB; the largest published grid is under 2 KB)."""


def load_yaml(path: str, field: str) -> Any:
    """A small YAML file (``field``: ``run_file`` or ``grid``, for the error line), loaded safely:
    at most ``MAX_YAML_BYTES``, UTF-8, without aliases (``*name``: a few hundred bytes of nested
    aliases expand to billions of values, a "billion laughs").

    Raises:
        ConfigError: a missing, large, undecodable or invalid file, or one with an alias (one line).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(field, path, "a YAML file that exists")
    if file.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(field, path, f"a YAML file of at most {MAX_YAML_BYTES:,} bytes")
    try:
        text = file.read_bytes().decode()
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ConfigError(field, path, "a YAML file without aliases (*name)")
        return yaml.safe_load(text)
    except UnicodeDecodeError as error:
        raise ConfigError(field, path, f"a UTF-8 text file ({error.reason} at byte {error.start})") from error
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())  # one line
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
        raise ConfigError(field, path, f"valid YAML ({reason})") from error
