"""benchmarks.unit_agreement on two hand-built results directories: units matched by id and
label, identical answers counted, the paired difference equal to a count by hand, units held by
one directory only reported and not compared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import unit_agreement
from tests.needle_rows import RIGHT, needle_row, write_shard

FIRST = {"laser": (1, 1, 0, 1, 0, 1), "snapkv": (1, 0, 0, 1)}
SECOND = {"laser": (1, 0, 1, 1, 0, 1, 1), "snapkv": (1, 0, 0, 1)}
"""Right (1) or wrong (0) on samples 0..n-1: laser's samples 1 and 2 swap, sample 6 only in SECOND."""


def rows(
    outcomes: dict[str, tuple[int, ...]], kept: int, wording: str = "", length: str = "8k"
) -> list[dict[str, Any]]:
    """The rows of ``outcomes``; ``wording`` is appended to sample 3's right answers (same score)."""
    built = [
        needle_row(label, sample, bool(right), length, kept_tokens_final=kept)
        for label, answers in outcomes.items()
        for sample, right in enumerate(answers)
    ]
    for row in built:
        row["unit_id"] += f"-{length}"
        if row["raw_output"] == RIGHT and row["sample_id"].endswith("/3"):
            row["raw_output"] += wording
    return built


def table_rows(output: str) -> dict[tuple[str, str, str], list[str]]:
    """(method, task, length) -> the row's cells, from the printed Markdown table."""
    lines = [
        line for line in output.splitlines() if line.startswith("| ") and not line.startswith("| method")
    ]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {(cell[0], cell[1], cell[2]): cell for cell in cells}


def test_matched_units_agree_as_counted_by_hand(tmp_path: Path, capsys: Any) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_shard(first, rows(FIRST, kept=100))
    write_shard(second, rows(SECOND, kept=120, wording=" Done."))
    unit_agreement.main([str(first), str(second)])
    output = capsys.readouterr().out
    table = table_rows(output)
    assert set(table) == {("laser", "niah_single", "8k"), ("snapkv", "niah_single", "8k")}  # no pool
    laser = table[("laser", "niah_single", "8k")]
    # samples 0-5 in both: first 1,1,0,1,0,1 (4/6), second 1,0,1,1,0,1 (4/6); texts differ on 1, 2, 3
    assert laser[3:7] == ["6", "50.0", "66.7", "66.7"]
    assert laser[7].startswith("+0.0 [")
    assert laser[8:13] == ["1 / 1", "1", "1", "not shown", "100 / 120"]
    snapkv = table[("snapkv", "niah_single", "8k")]
    assert snapkv[3:9] == ["4", "75.0", "50.0", "50.0", "+0.0 [-60.2, +60.2]", "0 / 0"]  # sample 3 reworded
    assert output.strip().splitlines()[-1] == (
        f"10 units in both; 0 only in {first}, 1 only in {second} (not compared)"
    )


def test_a_method_pools_its_groups_and_filters_select(tmp_path: Path, capsys: Any) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    units = rows({"laser": (1, 1, 0, 0), "full": (1, 1, 1, 1)}, kept=10)
    units += rows({"laser": (1, 0, 0, 1)}, kept=20, length="16k")
    write_shard(first, units)
    write_shard(second, [dict(row, raw_output=RIGHT) for row in units])  # every answer right
    unit_agreement.main([str(first), str(second), "--method", "laser"])
    table = table_rows(capsys.readouterr().out)
    assert list(table) == [
        ("laser", "niah_single", "16k"),
        ("laser", "niah_single", "8k"),
        ("laser", "all", "all"),
    ]
    pooled = table[("laser", "all", "all")]
    assert pooled[3:7] == ["8", "50.0", "50.0", "100.0"]
    assert (
        pooled[8:10] == ["0 / 4", "0.125"] and pooled[12] == "15 / 15"
    )  # 4 discordant pairs, all the second's


def test_directories_without_shared_units_are_refused(tmp_path: Path, capsys: Any) -> None:
    first = tmp_path / "first"
    write_shard(first, rows(FIRST, kept=100))
    with pytest.raises(SystemExit):
        unit_agreement.main([str(first), str(first), "--length", "16k"])
    assert "share no unit under --length 16k" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        unit_agreement.main([str(first), str(tmp_path / "missing")])
    assert "missing holds no result shards" in capsys.readouterr().err
