"""benchmarks.quality on a hand-built results directory: cells, retention, the rival matched by
realised kept tokens, the ablation table and the written report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from analysis.stats import paired_binary
from benchmarks import quality
from benchmarks.quality_cells import method_variant, quality_cells, study_table
from tests.needle_rows import needle_row, write_shard

OUTCOMES = {  # label -> (budget, kept tokens, right answers on samples 0..3)
    "full": (None, 1000, (1, 1, 1, 0)),
    "laser[budget=256]": (256, 450, (1, 0, 1, 0)),  # accumulate mode keeps more than B
    "streaming[budget=256]": (256, 256, (0, 0, 1, 0)),
    "streaming[budget=512]": (512, 512, (1, 1, 1, 0)),
}


def build(directory: Path, outcomes: dict[str, tuple[int | None, int, tuple[int, ...]]] = OUTCOMES) -> None:
    write_shard(
        directory,
        [
            needle_row(
                label,
                sample,
                bool(ok),
                "1k",
                method_params=json.dumps({"budget": budget}),
                budget=budget,
                kept_tokens_final=kept,
            )
            for label, (budget, kept, right) in outcomes.items()
            for sample, ok in enumerate(right)
        ],
    )


def test_two_rows_for_one_sample_in_a_cell_are_refused(tmp_path: Path) -> None:
    build(tmp_path / "a")
    build(tmp_path / "b", {f"{label} ": outcome for label, outcome in OUTCOMES.items()})  # other labels
    with pytest.raises(ValueError, match="two rows for one sample"):
        study_table([tmp_path / "a", tmp_path / "b"])


def by_cell(cells: pd.DataFrame) -> dict[tuple[str, int | None], pd.Series]:
    return {
        (row["variant"], None if pd.isna(row["B"]) else int(row["B"])): row for _, row in cells.iterrows()
    }


def test_cells_retention_and_matching_by_kept_tokens(tmp_path: Path) -> None:
    build(tmp_path)
    table = study_table([tmp_path])
    cells = quality_cells(table)
    found = by_cell(cells)
    assert set(found) == {("full", None), ("laser", 256), ("streaming", 256), ("streaming", 512)}
    laser = found[("laser", 256)]
    assert (laser["n"], laser["kept"], laser["accuracy"]) == (4, 450.0, 50.0)
    assert laser["retention"] == pytest.approx(100 * 2 / 3)
    brute = paired_binary([1, 0, 1, 0], [1, 1, 1, 0])
    assert (laser["difference"], laser["diff_low"], laser["diff_high"], laser["p"]) == pytest.approx(
        (-25.0, brute.difference.low, brute.difference.high, brute.p_value)
    )
    assert pd.isna(found[("full", None)]["retention"])
    same_budget = quality.versus_rows(table, cells, "budget")
    nearest = quality.versus_rows(table, cells, "kept")
    # laser 1,0,1,0 vs streaming@256 0,0,1,0: one discordant pair, laser's
    # laser is query-aware, streaming not, and they keep different counts: mismatched, no verdict
    assert [(row[5], row[6], row[11], row[12], row[13], row[15]) for row in same_budget] == [
        ("streaming", "256", "+25.0 [-76.6, +80.6]", "1", "-", "mismatched")
    ]
    assert same_budget[0][14].startswith("differs: ")
    # 512 kept tokens are nearer 450 than 256: laser 1,0,1,0 vs streaming@512 1,1,1,0
    assert [(row[5], row[6], row[7], row[8], row[11]) for row in nearest] == [
        ("streaming", "512", "512", "4", "-25.0 [-80.6, +76.6]")
    ]
    ablation = "\n".join(quality.ablation_table(cells, budget=256))
    assert "| laser | hybrid exact + magicpig 0.75 (LASER-KV) | accumulate | 50 (67%) |" in ablation
    assert (
        "| full | none (full cache) | - | 75 |" in ablation
        and "| exact | exact scores | accumulate | - |" in ablation
    )


def test_report_writes_tables_and_plots(tmp_path: Path) -> None:
    build(tmp_path / "run")
    path = quality.report([tmp_path / "run"], tmp_path / "out")
    text = path.read_text()
    assert "## Ablation at B=1024" in text and "| laser | 256 | 450 | 4 | 0 | 50.0" in text
    assert (
        "### tiny, niah_single, 1k (mean context 1000 tokens; family: the 3 comparisons of this table" in text
    )
    assert (
        "## LASER-KV vs the baselines at the same budget B (family: the 0 matched comparisons of this table"
        in text
        and "the 1 mismatched (protocol, prefill regime or kept tokens > 2% apart) are outside it" in text
    )
    assert sorted(image.name for image in (tmp_path / "out").glob("*.png")) == [
        "accuracy_vs_budget_tiny.png",
        "accuracy_vs_length_tiny.png",
    ]


def test_a_directory_without_results_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        quality.main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "holds no result shards" in capsys.readouterr().err


def test_method_variants_keep_settings_other_than_the_budget() -> None:
    assert method_variant("laser") == "laser"
    assert method_variant("laser[budget=1024]") == "laser"
    assert method_variant("laser[budget=1024,score_pooling=7]") == "laser[score_pooling=7]"
    assert method_variant("exact[protection_divisor=8,score_pooling=7]") == (
        "exact[protection_divisor=8,score_pooling=7]"
    )


def test_variants_get_their_own_cells_and_a_paired_table(tmp_path: Path) -> None:
    build(tmp_path / "grid")
    # a second run: the same full units again (same unit ids) beside a pooled variant of laser
    build(
        tmp_path / "variant",
        {"full": OUTCOMES["full"], "laser[budget=256,score_pooling=7]": (256, 450, (1, 1, 1, 0))},
    )
    text = quality.report([tmp_path / "grid", tmp_path / "variant"], tmp_path / "out").read_text()
    assert "| laser[score_pooling=7] | 256 | 450 | 4 | 0 | 75.0" in text  # its own cell, n=4 not 8
    assert "| full | - | 1000 | 4 | 0 |" in text  # the full units counted once
    # variant 1,1,1,0 vs laser 1,0,1,0 on the same 4 samples
    assert (
        "| tiny | niah_single | 1k | laser[score_pooling=7] | 256 | 450 | 100.0 [100.0, 100.0] | 4 "
        "| 75.0 | 50.0 | +25.0 [-76.6, +80.6] | 1 | 1 | matched | not shown |"
    ) in text
    cells = quality_cells(study_table([tmp_path / "grid", tmp_path / "variant"]))
    ablation = "\n".join(quality.ablation_table(cells, budget=256))
    assert (
        "| laser[score_pooling=7] | hybrid exact + magicpig 0.75 (LASER-KV), score_pooling=7 | accumulate "
        "| 75 (100%) |"
    ) in ablation


def test_target_lines_name_laser_and_its_variants(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(quality, "TARGETS", {"tiny": "1k"})
    build(
        tmp_path,
        {
            "full": OUTCOMES["full"],  # 1,1,1,0
            "laser[budget=1024]": (1024, 900, (1, 0, 0, 0)),
            "laser[budget=1024,score_pooling=7]": (1024, 900, (1, 1, 1, 0)),
            "laser[budget=256]": OUTCOMES["laser[budget=256]"],  # not the target budget
        },
    )
    lines = quality.target_lines(quality_cells(study_table([tmp_path])))
    assert len(lines) == 2
    assert lines[0].startswith("- tiny, niah_single, 1k: laser B=1024 retention 33.3 [")
    assert lines[0].endswith("missed (point estimate vs 90%).")
    assert lines[1].startswith("- tiny, niah_single, 1k: laser[score_pooling=7] B=1024 retention 100.0 [")
    assert lines[1].endswith("met (point estimate vs 90%).")


def test_the_committed_tables_regenerate_from_the_committed_rows(tmp_path: Path) -> None:
    """docs/quality/quality_tables.md is what ``python -m benchmarks.quality`` makes of the rows in
    docs/quality/runs (the command in docs/quality.md)."""
    runs = Path(__file__).resolve().parents[1] / "docs" / "quality" / "runs"
    names = ("smol_single", "smol_pooled", "qwen_single8k", "qwen_single", "qwen_single32k", "qwen_pooled")
    written = quality.report([runs / name for name in names], tmp_path)
    assert written.read_text() == (runs.parent / "quality_tables.md").read_text()
