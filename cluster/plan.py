"""The plan (pure): samples x method configs -> work units with stable ids, minus the units whose
rows already exist (resume)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from evals.sample import EvalSample
from laserkv.config import MethodConfig


@dataclass(frozen=True)
class WorkUnit:
    """One sample under one method: what a worker runs and a result row describes.

    Attributes:
        unit_id: stable hash of dataset, dataset revision, sample id, method config hash, model,
            generation settings and seed.
        sample: the benchmark sample (prompt parts, target, breakdown fields).
        method: the method config.
        model: the model id every worker loaded.
        dataset_revision: the data's version (hub revision, local path, or demo-set key).
        seed: sampling seed (used when the generation temperature is > 0).
    """

    unit_id: str
    sample: EvalSample
    method: MethodConfig
    model: str
    dataset_revision: str
    seed: int


def unit_id(sample: EvalSample, method: MethodConfig, model: str, dataset_revision: str, seed: int) -> str:
    """A 20-hex-digit sha256 over what makes a unit's result reproducible."""
    key = {
        "dataset": sample.dataset,
        "dataset_revision": dataset_revision,
        "sample_id": sample.sample_id,
        "method": method.config_hash,
        "model": model,
        "generation": dataclasses.asdict(sample.generation),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def plan_units(
    samples: Iterable[EvalSample],
    methods: Iterable[MethodConfig],
    model: str,
    dataset_revision: str,
    seed: int = 0,
) -> list[WorkUnit]:
    """Every sample under every method, samples outermost (so early rows cover all methods). A
    sample's own revision (``EvalSample.revision``: its cell changed) replaces the run's."""
    methods = list(methods)
    return [
        WorkUnit(
            unit_id(sample, method, model, sample.revision or dataset_revision, seed),
            sample,
            method,
            model,
            sample.revision or dataset_revision,
            seed,
        )
        for sample in samples
        for method in methods
    ]


def cell_revisions(units: Iterable[WorkUnit]) -> dict[str, str]:
    """The data version of each (task, length) cell of a plan, as ``task/length`` -> revision."""
    return {f"{unit.sample.task}/{unit.sample.length}": unit.dataset_revision for unit in units}


def drop_done(units: Iterable[WorkUnit], done_ids: set[str]) -> list[WorkUnit]:
    """The units not yet written (resume), in plan order, each id once."""
    seen = set(done_ids)
    todo = []
    for unit in units:
        if unit.unit_id not in seen:
            seen.add(unit.unit_id)
            todo.append(unit)
    return todo
