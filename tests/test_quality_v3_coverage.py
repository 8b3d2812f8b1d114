"""Quality v3's coverage check (``benchmarks.quality_v3_coverage``): it reads no outcome column,
counts units per configuration and task, and flags a planned comparison whose arms keep more than
2% apart; every planned arm is a configuration of the ``quality-v3`` preset."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.quality_v3_coverage import (
    COVERAGE_COLUMNS,
    PLANNED,
    PRIMARY_ARMS,
    matching,
    per_config,
    read_coverage,
)
from cluster.presets import sweep_methods
from cluster.rows import RESULT_SCHEMA, blank_row


def test_it_reads_no_outcome_and_every_planned_arm_is_in_the_preset() -> None:
    assert not {"raw_output", "prediction", "correct", "breakdown", "diagnostics"} & set(COVERAGE_COLUMNS)
    labels = {method.name for method in sweep_methods("quality-v3", {})}
    assert {label for item in PLANNED for label in (item.arm, item.rival)} <= labels


def test_counts_and_kept_token_matching(tmp_path: Path) -> None:
    arm, rival = PLANNED[0].arm, PLANNED[0].rival
    rows = []
    for index in range(4):
        for label, kept in ((arm, 1000), (rival, 1000 if index < 2 else 1070)):
            row = blank_row()
            row.update(
                unit_id=f"{label}/{index}", method=label,
                status="ok" if index < 3 or label == arm else "error",
                task="niah_single_1", length="16k", sample_id=f"16k/niah_single_1/{index}",
                kept_tokens_final=kept, prefill_regime="blocks", compression_rounds=4, raw_output="secret",
            )  # fmt: skip
            rows.append(row)
    (tmp_path / "results").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp_path / "results" / "part-x-00000.parquet"
    )
    frame = read_coverage(tmp_path)
    assert list(frame.columns) == list(COVERAGE_COLUMNS) and "secret" not in frame.to_string()
    configs = per_config(frame, "16k", ["niah_single_1", "qa_1"]).set_index("configuration")
    assert configs.loc[rival].tolist() == [3, 1, 96, 0] and configs.loc[arm].tolist() == [4, 0, 96, 0]
    first = matching(frame, "16k").set_index("id").loc["P-a"]
    assert (first["pairs"], first["largest gap"], first["kept (arm / rival)"]) == (3, 70, "1000.0 / 1023.3")
    assert (
        first["matched kept (2%)"] == "no (2.3%)" and first["regime (arm / rival)"] == "blocks x4 / blocks x4"
    )


def test_the_primary_arms_grid_is_the_presets_primary_cells() -> None:
    """``docs/quality/v3-primary-arms.yaml`` runs exactly the primary arms, with the preset's labels
    and config hashes (so its rows resume into q15_v3 and the preset later skips them)."""
    preset = {method.name: method for method in sweep_methods("quality-v3", {})}
    grid = sweep_methods(str(Path(__file__).parents[1] / "docs/quality/v3-primary-arms.yaml"), {})
    assert sorted(method.name for method in grid) == sorted(PRIMARY_ARMS)
    for method in grid:
        assert method == preset[method.name]
        assert method.config_hash == preset[method.name].config_hash
