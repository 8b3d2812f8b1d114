"""Stored results outlive the code that wrote them: shards of schema version 1 (written before
selectors became plugins) still load, keep their hashes and unit ids, and a resumed run reruns
none of their units; adding a parameter with a default changes no hash; the results layer
imports no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli.main import app
from cluster.rows import RESULT_SCHEMA, SCHEMA_VERSION, SchemaError, blank_row, method_params, upgrade_table
from cluster.writer import read_manifests, read_results
from laserkv.config import params_hash
from laserkv.methods import get_method, method_from_params
from laserkv.model_sources import PACKAGED_MODELS, package_dir

ROOT = Path(__file__).resolve().parents[1]
QUALITY_RUNS = sorted((ROOT / "docs" / "quality" / "runs").iterdir())
V5 = ("prefill_regime", "compression_rounds", "diagnostics")  # and version 6's
V1_FIXTURE = ROOT / "tests" / "data" / "results_v1"
"""12 rows of docs/quality/runs/smol_pooled (samples 0-5 x laser and exact with
score_pooling=7 at B=1024, blocks of 1024, SmolLM2 on the demo set at 4k), as written then."""


@pytest.mark.parametrize("directory", QUALITY_RUNS, ids=lambda path: path.name)
def test_every_stored_quality_shard_loads_and_keeps_its_hash(directory: Path) -> None:
    rows = read_results(directory).to_pylist()
    assert rows and all(1 <= row["schema_version"] <= SCHEMA_VERSION for row in rows)
    for row in rows:
        params = method_params(row)
        assert row["method_kind"] == params["selector"]
        lenient = row["schema_version"] == 1  # v1 stored every field
        method = method_from_params(row["method"], params, lenient=lenient)
        assert method.config_hash == row["method_hash"], (directory.name, row["method"])


def test_a_version_1_table_is_upgraded_and_a_foreign_one_named() -> None:
    v1 = pa.table(
        {
            **{name: pa.array([None], RESULT_SCHEMA.field(name).type) for name in RESULT_SCHEMA.names},
            "unit_id": ["u"],
            "status": ["ok"],
            "m_name": ["streaming"],
            "m_selector": ["recency"],
            "m_budget": [512],
        }
    ).drop_columns(["schema_version", "method_kind", "method_params", "method_protocol", "breakdown", *V5])
    upgraded = upgrade_table(v1).to_pylist()[0]
    assert (upgraded["schema_version"], upgraded["method_kind"]) == (1, "recency")
    assert json.loads(upgraded["method_params"]) == {"selector": "recency", "budget": 512}
    assert upgraded["method_protocol"] == "query-agnostic"
    with pytest.raises(SchemaError, match="unit_id"):
        upgrade_table(pa.table({"x": [1]}))


def test_a_version_2_table_gets_its_protocol_from_its_method() -> None:
    blank = {name: pa.array([None] * 3, RESULT_SCHEMA.field(name).type) for name in RESULT_SCHEMA.names}
    params = [{"query_source": "question"}, {"query_source": "window"}, {"budget": 256}]
    v2 = pa.table(
        {
            **blank,
            "unit_id": ["a", "b", "c"],
            "status": ["ok"] * 3,
            "schema_version": [2] * 3,
            "method": ["laser", "snapkv", "streaming"],
            "method_kind": ["hybrid", "exact", "recency"],
            "method_params": [json.dumps(item) for item in params],
        }
    ).drop_columns(["method_protocol", "breakdown", *V5])
    upgraded = upgrade_table(v2).to_pylist()
    assert [row["method_protocol"] for row in upgraded] == ["query-aware", "query-agnostic", "query-agnostic"]
    assert [row["schema_version"] for row in upgraded] == [2, 2, 2]


def test_columns_a_later_version_adds_are_tolerated() -> None:
    row = {**blank_row(), "unit_id": "u", "status": "ok", "method_params": "{}"}
    table = pa.Table.from_pylist([row], schema=RESULT_SCHEMA).append_column("added_later", pa.array([1.5]))
    read = upgrade_table(table)
    assert read.schema == RESULT_SCHEMA and read.to_pylist()[0]["schema_version"] == SCHEMA_VERSION


def test_a_parameter_added_with_its_default_changes_no_hash() -> None:
    laser = get_method("laser")
    params, defaults = laser.params(), laser.param_defaults()
    assert params_hash(params, defaults) == laser.config_hash == "b81fe6ba5f1a9672"
    with_new = params_hash({**params, "new_knob": 3}, {**defaults, "new_knob": 3})
    assert with_new == laser.config_hash
    assert params_hash({**params, "new_knob": 4}, {**defaults, "new_knob": 3}) != laser.config_hash
    # parameters this release added (fixed-slot splits) count only away from their defaults
    assert laser.params()["anchor_tokens"] == 0
    fixed = get_method("streaming_laser_split", protection_divisor=None, anchor_tokens=4)
    assert fixed.config_hash != get_method("streaming_laser_split").config_hash


@pytest.mark.skipif(
    package_dir(PACKAGED_MODELS["smollm2-135m-instruct"].files[0][0]) is None,
    reason="the SmolLM2 weights package is not installed (scripts/setup_venv.sh does it)",
)
def test_resuming_a_directory_written_before_the_change_reruns_no_unit(tmp_path: Path) -> None:
    output = tmp_path / "results_v1"
    shutil.copytree(V1_FIXTURE, output)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "methods:\n"
        "  - {method: laser, budget: [1024], score_pooling: [7]}\n"
        "  - {method: exact, budget: [1024], score_pooling: [7]}\n"
    )
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    args = ["sweep", "--grid", str(grid), "--lengths", "4k", "--tasks", "niah_single", "--limit", "6"]
    args += ["--block-size", "1024", "--model", "smollm2-135m-instruct", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--output", str(output), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (output / "results").iterdir()) == ["part-v1-00000.parquet"]
    resumed = read_manifests(output)[-1]
    assert (resumed["units_planned"], resumed["units_already_done"]) == (12, 12)
    assert read_results(output).num_rows == 12


def test_the_results_layer_imports_no_torch() -> None:
    code = (
        "import sys, cluster.reduce, cluster.writer, cluster.rows, analysis.table, analysis.views, "
        "reports.write; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"
