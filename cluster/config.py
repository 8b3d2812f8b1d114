"""``RunConfig``: one evaluation run (model, dataset, methods, resources, output), frozen and
passed down whole. Validation happens once, in ``__post_init__``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cluster.address import check_address
from cluster.options import RunOptions
from evals.benchmark import DataRequest
from evals.benchmarks import BENCHMARKS, get_benchmark
from laserkv.errors import ConfigError

if TYPE_CHECKING:
    from laserkv.config import MethodConfig

DATASETS = tuple(BENCHMARKS)


@dataclass(frozen=True, kw_only=True)
class RunConfig(RunOptions):
    """Everything a run needs; the manifest records it (``to_dict``).

    Its fields are the run options, declared with their types, defaults, help and checks in
    ``cluster.options.RunOptions`` (one name each, as flag, run-file key and field), plus the
    methods to run on every sample (``cluster.options.MethodOptions`` chooses them).

    Attributes:
        methods: method configs to run on every sample.
    """

    methods: tuple[MethodConfig, ...]

    def __post_init__(self) -> None:
        super().__post_init__()  # each option's type and declared check
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

    def data_request(self) -> DataRequest:
        """What this run asks of its benchmark."""
        return DataRequest(self.lengths, self.tasks, self.source, self.demo_samples, self.greedy, self.model)

    @property
    def n_workers(self) -> int:
        """How many worker actors the run starts."""
        return self.gpus * self.workers_per_gpu if self.gpus > 0 else self.workers

    def to_dict(self) -> dict[str, object]:
        """Plain data for the manifest (methods as dicts)."""
        data = dataclasses.asdict(self)
        data["methods"] = [method.to_dict() for method in self.methods]
        return data
