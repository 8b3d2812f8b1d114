"""Quality v3's registered analysis (``benchmarks.quality_v3``) on rows made to order: the primary
family's difference is the unweighted mean of the task means, a comparison whose arms keep more
than 2% apart is "mismatched" and enters Holm with p = 1, one that did not run is "not run", and
the analysis refuses to read outcomes before the primary cells are complete."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.stats import holm, paired_task_average, verdict
from analysis.table import scored_table
from benchmarks import quality_v3
from benchmarks.quality_v3 import FAMILIES, NotYet, check_ready, family_table, markdown
from cluster.rows import RESULT_SCHEMA, blank_row

pytest.importorskip("long_context_eval")
P_A, P_B1, P_B2 = quality_v3.PRIMARY
VALUES = ["1111111", "2222222", "3333333", "4444444"]


def row(
    label: str, task: str, index: int, found: int, kept: int, regime: str = "blocks"
) -> dict[str, object]:
    """A RULER row whose output names ``found`` of the sample's references (one for the niah_single tasks,
    four for niah_multivalue)."""
    references = VALUES[:1] if task.startswith("niah_single") else VALUES
    values = dict(blank_row())
    values.update(
        unit_id=f"{label}/{task}/{index}", status="ok", dataset="ruler", dataset_revision="r",
        sample_id=f"16k/{task}/{index}", task=task, length="16k", model="m", temperature=0.0,
        max_new_tokens=128, seed=0, method=label, method_hash=label[-12:], method_protocol="query-aware",
        target=json.dumps(references), question="", raw_output=" ".join(references[:found]),
        kept_tokens_final=kept, prefill_regime=regime, compression_rounds=4, block_size_used=4096,
    )  # fmt: skip
    return values


def write_rows(directory: Path) -> tuple[list[float], list[float], list[str]]:
    """P-a's arms on 3 + 2 samples of two tasks, P-b1's arms 3% apart in kept tokens, P-b2's rival
    absent; returns P-a's (arm, rival, task) scores in pair order."""
    arm_found = {"niah_single_1": [1, 1, 0], "niah_multivalue": [4, 2]}
    rival_found = {"niah_single_1": [0, 1, 0], "niah_multivalue": [1, 2]}
    rows, arm_scores, rival_scores, tasks = [], [], [], []
    for task, founds in arm_found.items():
        for index, (ours, theirs) in enumerate(zip(founds, rival_found[task], strict=True)):
            rows += [row(P_A.arm, task, index, ours, 1000), row(P_A.rival, task, index, theirs, 1000)]
            press = "one-shot, first token uncompressed"
            rows += [
                row(P_B1.arm, task, index, ours, 1000, "one-shot"),
                row(P_B1.rival, task, index, theirs, 1030, press),
            ]
            total = 1 if task == "niah_single_1" else 4
            arm_scores.append(ours / total)
            rival_scores.append(theirs / total)
            tasks.append(task)
    (directory / "results").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), directory / "results" / "part-a-00000.parquet"
    )
    return arm_scores, rival_scores, tasks


def test_the_primary_family_as_registered(tmp_path: Path) -> None:
    arm, rival, tasks = write_rows(tmp_path)
    order = sorted(range(len(tasks)), key=lambda i: tasks[i])  # the analysis pairs by task, then sample
    arm, rival, tasks = ([values[i] for i in order] for values in (arm, rival, tasks))
    table = scored_table([tmp_path])
    found = family_table(table, FAMILIES[0]).set_index("id")
    expected = paired_task_average(arm, rival, tasks)
    task_means = (2 / 3 - 1 / 3, 0.75 - 0.375)  # niah_single_1, niah_multivalue
    assert expected.difference.estimate == pytest.approx(100 * sum(task_means) / 2)
    assert found.loc["P-a", "comparison"] == expected and found.loc["P-a", "status"] == "matched"
    assert found.loc["P-b1", "status"] == "mismatched: kept tokens (1000 vs 1030)"
    assert found.loc["P-b1", "note"] == "rival's first answer token from its uncompressed forward"
    assert found.loc["P-b2", "status"] == "not run"
    assert found["p_holm"].tolist() == holm([expected.p_value, 1.0, 1.0])
    assert found.loc["P-a", "verdict"] == verdict(expected, found.loc["P-a", "p_holm"])
    assert (
        found.loc["P-a", "H1"] in ("supported", "refuted", "undecided")
        and found.loc["P-b1", "verdict"] == "-"
    )
    text = markdown([(FAMILIES[0].title, found.reset_index())], len(table.frame))
    assert "| P-b2 |" in text and "mismatched: kept tokens (1000 vs 1030)" in text


def test_no_outcome_is_read_before_the_primary_cells_are_complete(tmp_path: Path) -> None:
    write_rows(tmp_path)
    with pytest.raises(NotYet, match=r"the primary cells miss \d+ units"):
        check_ready(tmp_path, budget_exhausted=False)
    check_ready(tmp_path, budget_exhausted=True)


def test_every_family_renders_where_its_arms_did_not_run(tmp_path: Path) -> None:
    write_rows(tmp_path)
    table = scored_table([tmp_path])
    tables, units = quality_v3.analyse(table), len(table.frame)
    assert [title.split(":")[0] for title, _ in tables] == [
        "Primary", "S1", "S2", "S3", "S7", "S8", "S9", "S10", "S5", "S6", "S6",
        "S4 P-a", "S4 P-b1", "S4 P-b2",
    ]  # fmt: skip
    s1 = dict(tables)[FAMILIES[1].title]
    assert set(s1["status"]) == {"not run"} and s1["p_holm"].tolist() == [1.0, 1.0, 1.0]
    per_task = tables[11][1].set_index("task")
    assert per_task.loc["niah_single_1", "pairs"] == 3 and per_task.loc["qa_1", "pairs"] == 0
    text = markdown(tables, units)
    assert text.count("\n## ") == 14 and f"From {units} units" in text
    s5, s6 = dict(tables)["S5: needle value type, Δ(UUID task) − Δ(number task) of P-a (H4)"], tables[10][1]
    assert set(s5["status"]) == {"not run"} and set(s6["status"]) == {"not run"}


def test_failures_count_as_wrong_and_full_is_a_reference(tmp_path: Path) -> None:
    """A failed unit (no regime, no kept tokens) stays in as a 0 and leaves the comparison matched;
    S2 against ``full`` is a reference comparison with a verdict; a rival whose every unit failed is
    mismatched (kept tokens unknown) rather than a crash; two dataset revisions are refused."""
    rows = []
    for index in range(3):
        rows += [
            row(P_A.arm, "niah_single_1", index, 1, 1000),
            row(P_A.rival, "niah_single_1", index, 1, 1000),
        ]
        rows += [row("laser[compression_ratio=0.25]", "niah_single_1", index, 1, 1000),
                 row("full", "niah_single_1", index, 1, 5000, "uncompressed")]  # fmt: skip
        rows += [row(P_B1.arm, "niah_single_1", index, 1, 1000, "one-shot"),
                 row(P_B1.rival, "niah_single_1", index, 1, 1000)]  # fmt: skip
    failed = {"status": "error", "raw_output": None, "prefill_regime": None, "kept_tokens_final": None}
    rows[0].update(failed)  # P-a's arm fails on one sample
    for position in (5, 11, 17):
        rows[position].update(failed)  # every unit of P-b1's rival
    (tmp_path / "results").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp_path / "results" / "part-b-00000.parquet"
    )
    table = scored_table([tmp_path])
    primary = family_table(table, FAMILIES[0]).set_index("id")
    assert primary.loc["P-a", "status"] == "matched"
    assert primary.loc["P-a", "comparison"].difference.estimate == pytest.approx(-100 / 3)
    assert (
        primary.loc["P-b1", "status"].startswith("mismatched: ")
        and "kept tokens unknown" in primary.loc["P-b1", "status"]
    )
    s2 = family_table(table, FAMILIES[2]).set_index("id")
    assert s2.loc["S2 r=0.25", "status"] == "reference (full cache)" and s2.loc["S2 r=0.25", "verdict"] != "-"
    assert "H1 jointly: not supported for all three" in markdown(
        [(FAMILIES[0].title, primary.reset_index())], 1
    )
    rows[1]["dataset_revision"] = "other"  # P-a's rival, one sample
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp_path / "results" / "part-b-00000.parquet"
    )
    with pytest.raises(ValueError, match="several dataset revisions"):
        family_table(scored_table([tmp_path]), FAMILIES[0])


def test_the_value_type_and_regime_contrasts(tmp_path: Path) -> None:
    """S5's C1 is Δ(niah_single_3) − Δ(niah_single_2) of P-a; S6's contrast is the task average of
    gap(1,024) − gap(4,096) per sample."""
    s6 = quality_v3.S6.comparisons
    rows = []
    for task, arm_found, rival_found in (
        ("niah_single_3", [1, 1], [0, 1]),
        ("niah_single_2", [0, 1], [0, 0]),
    ):
        for index in range(2):
            for item in s6:
                ours = arm_found[index] if item.rival == P_A.rival else 1
                rows += [
                    row(item.arm, task, index, ours, 1000),
                    row(item.rival, task, index, rival_found[index], 1000),
                ]
    (tmp_path / "results").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp_path / "results" / "part-c-00000.parquet"
    )
    table = scored_table([tmp_path])
    s5 = quality_v3.value_type_contrasts(table).set_index("id")
    assert s5.loc["S5 C1", "comparison"].difference.estimate == pytest.approx(100 * (0.5 - 0.5))
    assert s5.loc["S5 C2", "status"] == "not run"
    contrasts = quality_v3.regime_contrasts(table).set_index("id")
    # gap(4,096) per sample: ns3 [1, 0], ns2 [0, 1]; gap(1,024): 1 - rival = ns3 [1, 0], ns2 [1, 1]
    first = contrasts.loc["gap(1,024) − gap(4,096)", "comparison"]
    assert first.difference.estimate == pytest.approx(100 * ((0 + 0) / 2 + (1 + 0) / 2) / 2)


def test_the_curve_and_the_per_task_losses_are_descriptive(tmp_path: Path) -> None:
    """S10's figure points (graded average and mean kept tokens per series and r) and S2's per-task
    losses against full, and the command writes tables.md and the figure."""
    import sys

    rows = []
    for index in range(2):
        rows += [row("laser[compression_ratio=0.25]", "niah_single_2", index, index, 1000),
                 row("full", "niah_single_2", index, 1, 4000, "uncompressed"),
                 row("snapkv[compression_ratio=0.5]", "niah_single_2", index, 1, 2000),
                 row("snapkv[compression_ratio=0.25]", "niah_single_2", index, 0, 1000)]  # fmt: skip
    (tmp_path / "results").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), tmp_path / "results" / "part-d-00000.parquet"
    )
    table = scored_table([tmp_path])
    points = quality_v3.curve_points(table).set_index(["series", "r"])
    assert points.loc[("snapkv", 0.5), ["kept", "accuracy", "n"]].tolist() == [2000, 100.0, 2]
    assert points.loc[("laser", 0.25), "accuracy"] == 50.0
    losses = quality_v3.s2_task_losses(table).set_index(["id", "task"])
    assert losses.loc[("S2 r=0.25", "niah_single_2"), "difference"] == -50.0
    assert losses.loc[("S2 r=0.125", "niah_single_2"), "pairs"] == 0
    text = quality_v3.descriptive_markdown(quality_v3.curve_points(table), quality_v3.s2_task_losses(table))
    assert (
        "| snapkv | 0.5 | 2000 | 2 | 100.0 [34.2, 100.0] |" in text
        and "| S2 r=0.25 | niah_single_2 | 2 | -50.0 |" in text
    )
    out = tmp_path / "out"
    argv = ["quality_v3", str(tmp_path), "--out", str(out), "--budget-exhausted"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        quality_v3.main()
    assert (out / "tables.md").read_text().startswith("# Quality v3") and (out / "s10_curve.png").exists()


def test_what_is_missing_is_listed_with_the_achieved_power(tmp_path: Path) -> None:
    """Every configuration of the preset is listed with its missing units (a configuration that
    never ran: all 650), the resume command, and, where the primary cells stopped short, the
    achieved power at their sparsest task's complete samples, or the tasks with none."""
    from benchmarks.quality_v3_power import PLAN_SD, Design, power_at
    from evals.ruler import task_names

    write_rows(tmp_path)
    frame = quality_v3.missing_table(tmp_path).set_index("configuration")
    assert len(frame) == 33 and frame["missing"].sum() == 33 * 650 - 4 * 5
    assert frame.loc[P_A.arm, ["ok", "missing", "fewest per task"]].tolist() == [5, 645, 0]
    assert frame.loc["full", "missing"] == 650
    text = quality_v3.coverage_markdown(tmp_path, scored_table([tmp_path]))
    assert f"resume with `{quality_v3.RESUME_COMMAND}`" in text
    assert "no complete sample of niah_single_2, niah_single_3," in text and "power" not in text

    every_task = tmp_path / "every_task"
    labels = {P_A.arm, P_A.rival, P_B1.arm, P_B1.rival, P_B2.rival}
    rows = [
        row(label, task, index, 1, 1000) for label in labels for task in task_names() for index in range(2)
    ]
    rows.append(row(P_A.arm, "qa_1", 2, 1, 1000))  # a third sample that not every arm ran
    (every_task / "results").mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), every_task / "results" / "part-e-00000.parquet"
    )
    text = quality_v3.coverage_markdown(every_task, scored_table([every_task]))
    difference, equivalence = power_at(2, PLAN_SD, Design())
    assert "2 complete samples in the sparsest task" in text
    assert f"{difference:.3f} for a 5 pp difference" in text and f"{equivalence:.3f} for equivalence" in text


def test_runs_of_another_engine_path_are_refused(tmp_path: Path) -> None:
    """A manifest without engine switches predates issue 40 (v3's path); a later one must record
    v3's two switches, or the analysis refuses to mix its rows in."""
    write_rows(tmp_path)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "20261207T000000-old.json").write_text(json.dumps({"run_id": "20261207T000000-old"}))
    pinned = {"run_id": "20261208T000000-pinned", "engine_switches": dict(quality_v3.V3_ENGINE_PATH)}
    (manifests / "20261208T000000-pinned.json").write_text(json.dumps(pinned))
    quality_v3.check_engine_path(tmp_path)
    check_ready(tmp_path, budget_exhausted=True)
    worker = {"worker": "h:1", "block_kernel": "fa3", "fused_modules": 0}  # switches set, FA3 anyway
    (manifests / "20261208T000000-pinned.json").write_text(json.dumps({**pinned, "workers": [worker]}))
    with pytest.raises(ValueError, match="runs 20261208T000000-pinned did not"):
        check_ready(tmp_path, budget_exhausted=True)
    worker = {**worker, "block_kernel": "torch-flash"}
    (manifests / "20261208T000000-pinned.json").write_text(json.dumps({**pinned, "workers": [worker]}))
    check_ready(tmp_path, budget_exhausted=True)
    fused = {"run_id": "20261209T000000-fused", "engine_switches": {"LASERKV_BLOCK_KERNEL": "torch"}}
    (manifests / "20261209T000000-fused.json").write_text(json.dumps(fused))
    with pytest.raises(ValueError, match="runs 20261209T000000-fused did not run v3's engine path"):
        check_ready(tmp_path, budget_exhausted=True)


def test_the_committed_v3_tables_regenerate_from_the_committed_rows(tmp_path: Path) -> None:
    """docs/quality/v3/tables.md is what the registered analysis makes of docs/quality/runs/q15_v3
    (RULER's metrics need nvidia-long-context-eval)."""
    import subprocess
    import sys

    pytest.importorskip("long_context_eval")
    root = Path(__file__).resolve().parents[1]
    rows = "docs/quality/runs/q15_v3"
    command = [sys.executable, "-m", "benchmarks.quality_v3", rows, "--out", str(tmp_path)]
    subprocess.run(command, cwd=root, check=True, capture_output=True)
    assert (tmp_path / "tables.md").read_text() == (root / "docs/quality/v3/tables.md").read_text()
