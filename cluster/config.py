"""``RunConfig``: one evaluation run (model, dataset, methods, resources, output), frozen and
passed down whole. Validation happens once, in ``__post_init__``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.address import check_address
from evals import demo_set
from evals.benchmark import DataRequest
from evals.benchmarks import BENCHMARKS, get_benchmark
from laserkv.errors import ConfigError

if TYPE_CHECKING:
    from laserkv.config import MethodConfig

DATASETS = tuple(BENCHMARKS)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; the manifest records it.

    Attributes:
        model: local directory, HF id or packaged model name (loaded once per worker).
        dataset: one of ``DATASETS``.
        methods: method configs to run on every sample.
        output_dir: where result shards, the manifest and the summary go.
        dataset_source: a local copy of the dataset (None: the hub, or the generated demo set).
        lengths / tasks: BABILong-style cells (ignored for LongBench v2).
        limit: at most this many samples per cell (LongBench: in all); None = every sample.
        demo_samples_per_cell: samples generated per demo-set cell.
        greedy: LongBench v2: greedy decoding instead of the official temperature 0.1.
        gpus: GPUs to use; 0 = CPU workers.
        workers_per_gpu: worker actors sharing each GPU (``num_gpus=1/k``): small models leave
            a GPU idle between kernels, so several workers raise throughput.
        workers: CPU workers when ``gpus == 0``.
        address: an existing Ray cluster (``auto``, ``host:port`` or ``ray://host:port``); None
            starts Ray locally. Checked by ``cluster.address.check_address``.
        allow_remote_address: the user passed ``--allow-remote-address``: a Ray Client address
            that is not loopback is used instead of refused.
        device / dtype: where and how workers load the model (None: the model's defaults).
        max_in_flight: units queued per worker at once.
        unit_timeout_s: a unit running longer is recorded as a timeout error (its worker replaced).
        max_retries: re-queues of a unit whose worker died.
        overwrite: rerun units whose rows already exist (default: resume, skipping them).
        retry_failed: on resume, also rerun units whose rows are failures (error, oom, timeout);
            the reducer then keeps their ``ok`` row.
        seed: sampling seed for temperature > 0.
    """

    model: str
    dataset: str
    methods: tuple[MethodConfig, ...]
    output_dir: str
    dataset_source: str | None = None
    lengths: tuple[str, ...] = ("1k",)
    tasks: tuple[str, ...] = ("qa1",)
    limit: int | None = None
    demo_samples_per_cell: int = demo_set.DemoSpec().samples_per_cell
    greedy: bool = False
    gpus: int = 0
    workers_per_gpu: int = 1
    workers: int = 1
    address: str | None = None
    allow_remote_address: bool = False
    device: str | None = None
    dtype: str | None = None
    max_in_flight: int = 1
    unit_timeout_s: float = 3600.0
    max_retries: int = 2
    overwrite: bool = False
    retry_failed: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_address(self.address, self.allow_remote_address)
        if self.dataset not in DATASETS:
            raise ConfigError("dataset", self.dataset, "one of " + ", ".join(DATASETS))
        if not self.methods:
            raise ConfigError("methods", self.methods, "at least one method")
        names = [method.name for method in self.methods]
        if len(set(names)) != len(names):
            raise ConfigError("methods", names, "distinct method names")
        hashes = [method.config_hash for method in self.methods]
        if len(set(hashes)) != len(hashes):
            raise ConfigError("methods", names, "distinct configs (two names share one config, e.g. laser)")
        get_benchmark(self.dataset).check(self.data_request())
        for name, minimum in (
            ("gpus", 0),
            ("workers_per_gpu", 1),
            ("workers", 1),
            ("max_in_flight", 1),
            ("max_retries", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(name, value, f"an integer >= {minimum}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError("limit", self.limit, "None or an integer >= 1")
        if not math.isfinite(self.unit_timeout_s) or self.unit_timeout_s <= 0:
            raise ConfigError("unit_timeout_s", self.unit_timeout_s, "a positive number of seconds")

    def data_request(self) -> DataRequest:
        """What this run asks of its benchmark."""
        return DataRequest(
            self.lengths, self.tasks, self.dataset_source, self.demo_samples_per_cell, self.greedy, self.model
        )

    @property
    def n_workers(self) -> int:
        """How many worker actors the run starts."""
        return self.gpus * self.workers_per_gpu if self.gpus > 0 else self.workers

    def to_dict(self) -> dict[str, object]:
        """Plain data for the manifest (methods as dicts)."""
        data = dataclasses.asdict(self)
        data["methods"] = [method.to_dict() for method in self.methods]
        return data
