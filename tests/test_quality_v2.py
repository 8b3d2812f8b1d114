"""benchmarks.quality_v2 on a hand-built results directory: labels split into variant and r, only
samples complete under every method counted, pooled paired comparisons equal to brute force."""

from __future__ import annotations

import json
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.stats import holm, paired_binary, proportion_interval
from analysis.table import ScoredTable
from benchmarks import quality_v2
from tests.needle_rows import RIGHT, needle_row, write_shard

OUTCOMES = {  # label -> (kept tokens, protocol, right answers on samples 0..5; None = no row)
    "full": (1000, "-", (1, 1, 1, 1, 0, 1)),
    "laser[compression_ratio=0.25]": (260, "query-aware", (1, 0, 1, 1, 0, 1)),
    "laser[compression_ratio=0.25,score_pooling=7]": (260, "query-aware", (1, 1, 1, 1, 0, 0)),
    "snapkv[compression_ratio=0.25]": (250, "query-aware", (0, 0, 1, 1, 1, None)),
    "laser[compression_ratio=0.125]": (130, "query-aware", (0, 0, 1, 0, 0, 1)),
}


Outcomes = dict[str, tuple[int, str, tuple[int | None, ...]]]


def outcome_rows(outcomes: Outcomes, length: str = "8k") -> list[dict[str, Any]]:
    """The rows of ``outcomes`` at ``length`` (unit ids unique per length)."""
    rows = [
        needle_row(
            label,
            sample,
            bool(ok),
            length,
            method_params=json.dumps({}),
            method_protocol=protocol,
            kept_tokens_final=kept,
        )
        for label, (kept, protocol, right) in outcomes.items()
        for sample, ok in enumerate(right)
        if ok is not None  # None: a unit the sweep has not reached
    ]
    for row in rows:
        row["unit_id"] = f"{row['unit_id']}-{length}"
    return rows


def build(directory: Path, outcomes: Outcomes = OUTCOMES) -> None:
    write_shard(directory, outcome_rows(outcomes))


def test_a_label_splits_into_its_variant_and_kept_fraction() -> None:
    assert quality_v2.ratio_variant("laser[compression_ratio=0.25]") == ("laser", 0.25)
    assert quality_v2.ratio_variant("laser[compression_ratio=0.125,score_pooling=7]") == (
        "laser[score_pooling=7]",
        0.125,
    )
    assert quality_v2.ratio_variant("kvpress:snapkv[compression_ratio=0.25]") == ("kvpress:snapkv", 0.25)
    assert quality_v2.ratio_variant("full") == ("full", None)


def complete_table(directory: Path) -> tuple[ScoredTable, pd.DataFrame]:
    return quality_v2.complete(quality_v2.study_table([directory]))


def test_only_samples_under_every_method_count(tmp_path: Path) -> None:
    build(tmp_path)
    table, coverage = complete_table(tmp_path)
    assert coverage.to_dict("records") == [
        {"model": "tiny", "dataset": "babilong_demo", "task": "niah_single", "length": "8k", "members": 5,
         "seen": 6, "complete": 5}
    ]  # fmt: skip
    assert set(table.frame["sample_id"]) == {f"8k/niah_single/{i}" for i in range(5)}
    assert len(table.frame) == 5 * len(OUTCOMES)


def one(found: pd.DataFrame, **where: object) -> pd.Series:
    """The one row of ``found`` with the given column values."""
    rows = found[np.logical_and.reduce([found[column] == value for column, value in where.items()])]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_cells_and_pooled_comparisons_equal_brute_force(tmp_path: Path) -> None:
    build(tmp_path)
    table, _ = complete_table(tmp_path)
    cells = quality_v2.study_cells(table)
    laser = one(cells, variant="laser", ratio=0.25)
    # samples 0-4: full 1,1,1,1,0; laser 1,0,1,1,0
    assert (laser["n"], laser["accuracy"], laser["kept"]) == (5, 60.0, 260.0)
    assert (laser["low"], laser["high"]) == pytest.approx(astuple(proportion_interval(3, 5))[1:3])
    assert laser["retention"] == pytest.approx(75.0)
    brute = paired_binary([1, 0, 1, 1, 0], [1, 1, 1, 1, 0])
    assert (laser["difference"], laser["diff_low"], laser["diff_high"], laser["p"]) == pytest.approx(
        (brute.difference.estimate, brute.difference.low, brute.difference.high, brute.p_value)
    )
    assert pd.isna(one(cells, variant="full")["p"])
    assert one(cells, variant="full")["protocol"] == "-"
    # the cell table's family: the four comparisons with full
    assert cells["p_holm"].dropna().tolist() == pytest.approx(holm(cells["p"].dropna().tolist()))

    rivals = quality_v2.versus_laser(table)
    # laser 1,0,1,1,0 vs snapkv 0,0,1,1,1: +1 on sample 0, -1 on sample 4
    snapkv = one(rivals, variant="snapkv", ratio=0.25, tasks="all")
    brute = paired_binary([1, 0, 1, 1, 0], [0, 0, 1, 1, 1])
    assert (snapkv["difference"], snapkv["low"], snapkv["high"]) == pytest.approx(
        (brute.difference.estimate, brute.difference.low, brute.difference.high)
    )
    assert (snapkv["only_member"], snapkv["only_baseline"], snapkv["kept"], snapkv["base_kept"]) == (
        1, 1, 260.0, 250.0
    )  # fmt: skip
    assert len(rivals) == 1  # snapkv ran at 0.25 only; niah_single has no word answers
    variant = one(quality_v2.ablation(table), variant="laser[score_pooling=7]", ratio=0.25)
    assert variant["difference"] == pytest.approx(20.0)
    assert variant["verdict"] == "not shown"


def test_report_writes_tables_and_a_plot(tmp_path: Path) -> None:
    build(tmp_path / "run")
    path = quality_v2.report([tmp_path / "run"], tmp_path / "out")
    text = path.read_text()
    assert "| tiny | babilong_demo | niah_single | 8k | 5 | 5 | 6 |" in text
    # LASER-KV against snapkv at r=0.25, its variants left to the ablation
    assert (
        "| all | snapkv | 0.25 | query-aware | 5 | 260 / 250 | +0.0 [-83.2, +83.2] | 1 / 1 | 1 | - "
        "| differs: kept tokens (differ by 3.8%) | mismatched |" in text
    )
    assert "| laser[score_pooling=7] | 0.25 | query-aware | 5 | 260 / 250" not in text
    assert "| word-answer |" not in text  # niah_single has no word answers
    family = (
        "family: the {} of this table, Holm-adjusted; verdict: Holm p < 0.05, else equivalence within ±5 pp"
    )
    assert (
        f"### tiny, 8k: each method against full, pooled over the word-answer tasks (qa_1, qa_2, vt, qa2) "
        f"and over all ({family.format('4 comparisons')}" in text
    )
    (rivals,) = (line for line in text.splitlines() if "LASER-KV against each rival" in line)
    assert f"({family.format('0 matched comparisons')}" in rivals and "the 1 mismatched" in rivals
    assert (
        f"### tiny, babilong_demo niah_single, 8k (1000 context tokens, n=5; {family.format('4 comparisons')}"
        in text
    )
    assert (tmp_path / "out" / "accuracy_vs_kept_tiny_babilong_demo.png").stat().st_size > 0


def test_each_length_is_pooled_on_its_own(tmp_path: Path) -> None:
    """Two lengths of one model give two pooled sections, each counting only its own pairs."""
    longer = {"full": (2000, "-", (1, 1)), "laser[compression_ratio=0.25]": (520, "query-aware", (0, 0))}
    write_shard(tmp_path / "run", outcome_rows(OUTCOMES) + outcome_rows(longer, "16k"))
    text = quality_v2.report([tmp_path / "run"], tmp_path / "out").read_text()
    eight = text.index("### tiny, 8k: each method against full")
    sixteen = text.index("### tiny, 16k: each method against full")
    assert eight < sixteen
    assert (
        "| all | laser | 0.25 | query-aware | 5 | 260 | -20.0 [-71.6, +68.1] | 1 | 1 | not shown |"
        in text[eight:sixteen]
    )
    assert (
        "| all | laser | 0.25 | query-aware | 2 | 520 | -100.0 [-100.0, +68.4] | 0.5 | 0.5 | not shown |"
        in text[sixteen:]
    )


def test_word_answer_tasks_are_pooled_apart_from_all(tmp_path: Path) -> None:
    """A length holding a needle task and the word-answer ``qa2`` gives a word-answer row over
    ``qa2``'s pairs only and an all row over both tasks' pairs."""
    words = {"full": (1000, "-", (1, 1)), "laser[compression_ratio=0.25]": (260, "query-aware", (0, 1))}
    word_rows = outcome_rows(words)
    for row in word_rows:  # the needle answer turned into the qa2 answer of the same rightness
        row["task"], row["target"] = "qa2", "bathroom"
        row["raw_output"] = "The bathroom." if row["raw_output"] == RIGHT else "The kitchen."
        row["sample_id"] = row["sample_id"].replace("niah_single", "qa2")
        row["unit_id"] = f"{row['unit_id']}-qa2"
    write_shard(tmp_path / "run", outcome_rows(OUTCOMES) + word_rows)
    text = quality_v2.report([tmp_path / "run"], tmp_path / "out").read_text()
    # qa2: laser 0,1 vs full 1,1; niah_single samples 0-4: laser 1,0,1,1,0 vs full 1,1,1,1,0
    assert (
        "| word-answer | laser | 0.25 | query-aware | 2 | 260 | -50.0 [-98.7, +93.8] | 1 | 1 | not shown |"
        in text
    )
    assert (
        "| all | laser | 0.25 | query-aware | 7 | 260 | -28.6 [-71.0, +48.5] | 0.5 | 1 | not shown |" in text
    )


@pytest.mark.parametrize("lengths", [("8k",), tuple(f"{k}k" for k in range(1, 11))], ids=["1 row", "4 rows"])
def test_the_plot_keeps_legend_and_title_off_the_panels(tmp_path: Path, lengths: tuple[str, ...]) -> None:
    """The study's 16 variants give a legend of four rows: below the lowest panel's axis label
    and above nothing, the title above the highest panel's, for one row of panels and for four."""
    right = (1, 0, 1, 1, 0, 1)
    outcomes: Outcomes = {"full": (1000, "-", right)}
    outcomes |= {f"method{index}[compression_ratio=0.25]": (250, "query-aware", right) for index in range(16)}
    write_shard(tmp_path / "run", [row for length in lengths for row in outcome_rows(outcomes, length)])
    table, _ = complete_table(tmp_path / "run")
    figure = quality_v2.accuracy_figure(quality_v2.study_cells(table))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    panels = [axes.get_tightbbox(renderer) for axes in figure.axes if axes.axison]
    legend = figure.legends[0].get_window_extent(renderer)
    (title,) = (text.get_window_extent(renderer) for text in figure.texts)  # the suptitle
    assert len(figure.legends[0].get_texts()) == 17
    assert legend.y1 <= min(panel.y0 for panel in panels)
    assert title.y0 >= max(panel.y1 for panel in panels)


def test_no_complete_sample_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = {"full": (10, "-", (1, None)), "laser[compression_ratio=0.25]": (5, "query-aware", (None, 1))}
    build(tmp_path / "run", outcomes)
    with pytest.raises(SystemExit):
        quality_v2.main([str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    assert "no sample has a row under every method" in capsys.readouterr().err


def test_the_committed_tables_regenerate_from_the_committed_rows(tmp_path: Path) -> None:
    """docs/quality/v2/tables.md is what ``python -m benchmarks.quality_v2`` makes of the rows in
    docs/quality/runs/q05_ruler, q15_ruler and q05_demo (RULER's metrics need
    nvidia-long-context-eval)."""
    pytest.importorskip("long_context_eval")
    runs = Path(__file__).resolve().parents[1] / "docs" / "quality" / "runs"
    written = quality_v2.report([runs / "q05_ruler", runs / "q15_ruler", runs / "q05_demo"], tmp_path)
    assert written.read_text() == (runs.parent / "v2" / "tables.md").read_text()


PHASES = {f"seconds_{phase}": 0.0 for phase in ("forward", "score", "select", "gather", "decode")}


def test_rivals_cost_keeps_the_rows_of_one_length_and_run(tmp_path: Path, capsys: Any) -> None:
    """``benchmarks.rivals_cost --length/--run``: the table counts only the matching rows, and a
    filter that matches nothing is refused."""
    from benchmarks import rivals_cost

    rows = [
        needle_row(label, sample, True, length, run_id=run, seconds_total=seconds, **PHASES)
        for label in ("full", "laser")
        for sample in range(3)
        for length, run, seconds in (
            ("1k", "20261201T1", 1.0),
            ("2k", "20261201T2", 4.0),
            ("2k", "20261202T1", 9.0),
        )
    ]
    for row in rows:
        row["unit_id"] = f"{row['unit_id']}-{row['length']}-{row['run_id']}"
    write_shard(tmp_path, rows)
    rivals_cost.main([str(tmp_path), "--length", "2k", "--run", "20261201"])
    table = capsys.readouterr().out
    full = next(line for line in table.splitlines() if line.startswith("| full |"))
    assert full.split(" | ")[2] == "3" and full.split(" | ")[8] == "4.00"  # units, total s
    with pytest.raises(SystemExit):
        rivals_cost.main([str(tmp_path), "--length", "4k"])
