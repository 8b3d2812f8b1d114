"""``benchmarks.sweep_throughput``'s rows path: a sweep's ok rows, their tokens (context, question,
answer) and units per second, as the table prints them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.sweep_throughput import Path as ThroughputPath
from benchmarks.sweep_throughput import from_rows_problem, rows_path, table_row, target_line
from cluster.writer import read_results

RUN = Path(__file__).resolve().parents[1] / "docs/diagnostics/runs/ruler_niah_smollm2"


def test_a_sweeps_rows_as_a_path(byte_tokenizer: Any) -> None:
    rows = [row for row in read_results(RUN).to_pylist() if row["status"] == "ok"]
    answers = [
        len(byte_tokenizer(row["raw_output"] or "", add_special_tokens=False)["input_ids"]) for row in rows
    ]
    path = rows_path("laserkv, 2 workers", str(RUN), 100.0, byte_tokenizer)
    assert path.units == len(rows) > 100
    assert path.tokens == sum(row["context_tokens"] + row["question_tokens"] for row in rows) + sum(answers)
    kvpress = ThroughputPath(
        "kvpress pipeline", len(rows), 250.0, path.tokens
    )  # the same units in 2.5x the time
    line = table_row(path, 5e15 / path.tokens, 200.0, kvpress)  # 5,000 TFLOP in 100 s: 50 TFLOP/s, 25% of 200
    assert (
        line == f"| laserkv, 2 workers | {len(rows)} | 100.0 | {len(rows) / 100:.3f} | 50.0 | 25.0% | 2.50x |"
    )


def test_the_target_line_names_the_fastest_path_against_kvpress() -> None:
    kvpress = ThroughputPath("kvpress pipeline", 60, 49.2, 1)
    one, ten, mps = (
        ThroughputPath("one worker", 60, 39.9, 1),
        ThroughputPath("10 workers", 60, 16.3, 1),
        ThroughputPath("MPS", 60, 12.2, 1),
    )
    assert target_line([one, kvpress, ten, mps], kvpress) == (
        "# target: >= 3x kvpress's own loop in units/s: MPS, 4.03x (met)"
    )
    assert target_line([one, kvpress], kvpress).endswith("one worker, 1.23x (not met)")


def test_bad_from_rows_entries_are_named_before_the_model_loads(tmp_path: Path) -> None:
    import subprocess
    import sys

    assert from_rows_problem(str(RUN), "12.5") is None
    assert from_rows_problem(str(RUN), "0") == "SECONDS must be positive"
    assert from_rows_problem(str(RUN), "soon") == "SECONDS must be a number"
    assert from_rows_problem(str(tmp_path), "3") == "no result shards there"
    command = [sys.executable, "-m", "benchmarks.sweep_throughput", "--model", "no-such-model",
               "--from-rows", "N workers", str(tmp_path), "3"]  # fmt: skip
    found = subprocess.run(command, cwd=RUN.parents[2], capture_output=True, text=True)
    assert found.returncode == 2 and f"--from-rows {tmp_path} 3: no result shards there" in found.stderr
    assert "Traceback" not in found.stderr


def test_an_in_process_loop_is_timed_per_configuration_too() -> None:
    import time

    from benchmarks.sweep_throughput import timed_loop
    from cluster.presets import sweep_methods

    methods = [method for method in sweep_methods("quality-v3", {}) if method.kind == "kvpress"][:2]
    samples: list[Any] = ["first", "second", "third"]
    units = [(sample, method) for sample in samples for method in methods]
    cost = {methods[0].name: 0.01, methods[1].name: 0.03}

    def run_one(sample: Any, method: Any) -> int:
        time.sleep(cost[method.name])
        return 100 if method is methods[0] else 7

    path = timed_loop("loop", units, run_one)
    assert (path.name, path.units, path.tokens) == ("loop", 6, 3 * 107)
    first, second = path.by_config
    assert (first.name, first.units, first.tokens) == (methods[0].name, 3, 300)
    assert (second.name, second.units, second.tokens) == (methods[1].name, 3, 21)
    assert first.seconds >= 0.03 and second.seconds >= 0.09  # at least their sleeps
    assert first.seconds + second.seconds <= path.seconds


def test_bad_samples_and_ratios_are_named_before_the_model_loads() -> None:
    import subprocess
    import sys

    import pytest

    from benchmarks.sweep_throughput import kvpress_methods, samples_problem
    from laserkv.errors import ConfigError

    assert samples_problem(10, 50) is None and samples_problem(50, 50) is None
    assert (
        samples_problem(0, 50) == samples_problem(2, 0) == "--samples and --demo-samples must be at least 1"
    )
    assert samples_problem(60, 50) == "--samples 60 is more than a cell holds (--demo-samples 50)"
    assert {method.engine.compression_ratio for method in kvpress_methods("quality-v3", 0.25)} == {0.25}
    with pytest.raises(
        ConfigError, match=r"ratio=0.3 is not allowed: .*quality-v3's kvpress .*\[0.125, 0.25\]"
    ):
        kvpress_methods("quality-v3", 0.3)
    with pytest.raises(ConfigError, match="grid='nope' is not allowed"):  # the same one line as a bad ratio
        kvpress_methods("nope", 0.25)
    for flags, message in (
        (["--samples", "60"], "--samples 60 is more than a cell holds (--demo-samples 50)"),
        (["--ratio", "0.3"], "ratio=0.3 is not allowed"),
    ):
        command = [sys.executable, "-m", "benchmarks.sweep_throughput", "--model", "no-such-model", *flags]
        found = subprocess.run(command, cwd=RUN.parents[2], capture_output=True, text=True)
        assert found.returncode == 2 and message in found.stderr, found.stderr
        assert "Traceback" not in found.stderr
