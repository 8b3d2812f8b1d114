"""Every ``laserkv`` command through Typer's CliRunner: exit codes, output, error lines; and an
end-to-end CPU run: ``laserkv eval`` (demo set, tiny model, 2 methods, 2 CPU workers), then
``laserkv report`` as Markdown and HTML with PNG plots."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.render import stdout

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
runner = CliRunner()


def test_help_is_instant_and_imports_no_heavy_package() -> None:
    heavy = "('torch', 'ray', 'transformers', 'datasets')"
    code = f"import cli.main, sys; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    help_text = runner.invoke(app, ["--help"]).output
    for command in ("eval", "sweep", "report", "run", "methods", "datasets"):
        assert command in help_text


def test_methods_and_datasets_list_the_registries() -> None:
    stdout.width = 200  # a wide terminal: table cells stay on one line
    methods = runner.invoke(app, ["methods"])
    assert methods.exit_code == 0
    for name in (
        "laser",
        "laser_recursive",
        "hybrid_magicpig_0.75",
        "lsh_frequency_rank",
        "snapkv",
        "streaming",
    ):
        assert name in methods.output
    datasets = runner.invoke(app, ["datasets"])
    assert datasets.exit_code == 0
    for text in ("babilong_demo", "RMT-team/babilong", "longbench_v2", "THUDM/LongBench-v2", "qa1-qa20"):
        assert text in datasets.output


def eval_args(model: Path, output: Path) -> list[str]:
    return [
        "--model", str(model), "--dataset", "babilong_demo", "--lengths", "1k", "--tasks", "qa1",
        "--limit", "2", "--demo-samples", "2", "--workers", "2", "--device", "cpu", "--dtype", "float32",
        "--block-size", "512", "--output", str(output), "--quiet",
    ]  # fmt: skip


TWO_METHODS = ["eval", "--method", "full", "--method", "laser", "--budget", "256"]


def test_eval_then_report_end_to_end(tiny_llama_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    result = runner.invoke(app, [*TWO_METHODS, *eval_args(tiny_llama_dir, output)])
    assert result.exit_code == 0, result.output
    assert "laserkv eval" in result.output
    assert any(
        line.split("│")[1].strip() == "laser" for line in result.output.splitlines() if line.count("│") > 3
    )
    shards = list((output / "results").glob("*.parquet"))
    rows = pa.concat_tables([pq.read_table(path) for path in shards]).to_pylist()
    assert sorted((row["method"], row["sample_id"]) for row in rows) == [
        ("full", "1k/qa1/0"), ("full", "1k/qa1/1"), ("laser", "1k/qa1/0"), ("laser", "1k/qa1/1"),
    ]  # fmt: skip
    assert (output / "summary.parquet").exists() and (output / "summary.json").exists()
    markdown = runner.invoke(app, ["report", str(output)])
    assert markdown.exit_code == 0, markdown.output
    text = (output / "report.md").read_text()
    assert "| babilong_demo | 1k | laser | query-aware | 2 | 0 |" in text
    assert "- **Models**: " in text and "- **Runs**: " in text and "torch " in text  # a readable header
    kept_plot = output / "plots" / "accuracy_vs_kept_babilong_demo_qa1.png"
    assert "plots/accuracy_vs_kept_babilong_demo_qa1.png" in text
    assert kept_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # full and laser keep different counts
    for plot in ("accuracy_vs_length", "accuracy_vs_budget", "peak_memory_vs_length"):
        assert not (output / "plots" / f"{plot}.png").exists()  # one length, one budget, no CUDA: no data
    page = runner.invoke(app, ["report", str(output), "--format", "html"])
    page_text = (output / "report.html").read_text()
    assert page.exit_code == 0 and "data:image/png;base64," in page_text
    assert page_text.count("<tr data-method=") == 4  # every unit in the per-sample view
    assert "<script src" not in page_text and "{&quot;" not in page_text  # offline; no raw JSON header
    together = runner.invoke(app, ["report", str(output), str(output), "--out", str(tmp_path / "both")])
    assert together.exit_code == 0, together.output
    assert "- **Units**: 4 (each counted once)" in (tmp_path / "both" / "report.md").read_text()
    several = runner.invoke(app, ["report", str(output), str(output)])
    assert several.exit_code == 2 and "--out" in several.output
    again = runner.invoke(app, [*TWO_METHODS, *eval_args(tiny_llama_dir, output)])
    assert again.exit_code == 0 and len(list((output / "results").glob("*.parquet"))) == len(
        shards
    )  # resumed: nothing to do


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_log_lines_only_with_verbose(tiny_llama_dir: Path, tmp_path: Path, verbose: bool) -> None:
    args = [*TWO_METHODS[:3], *eval_args(tiny_llama_dir, tmp_path / "run")]
    args[args.index("--limit") + 1] = "1"
    command = [sys.executable, "-m", "cli.main", *args, *(["--verbose"] if verbose else [])]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr
    assert ("Started a local Ray instance" in result.stderr) is verbose
    assert "laserkv eval" in result.stdout


def test_sweep_runs_a_yaml_grid_as_one_job(tiny_llama_dir: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "methods:\n  - method: streaming\n    budget: [128, 256]\n  - method: full\n"
        "  - method: kvpress:snapkv\n    budget: 128\n    press.window_size: 16\n"
        "  - method: h2o\n    budget: 128\n"
    )
    output = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", "--grid", str(grid), *eval_args(tiny_llama_dir, output)])
    assert result.exit_code == 0, result.output
    rows = pa.concat_tables(
        [pq.read_table(path) for path in (output / "results").glob("*.parquet")]
    ).to_pylist()
    assert sorted({row["method"] for row in rows}) == [
        "full",
        "h2o[budget=128]",
        "kvpress:snapkv[budget=128,press.window_size=16]",
        "streaming[budget=128]",
        "streaming[budget=256]",
    ]
    assert {row["budget"] for row in rows if row["method"].startswith("streaming")} == {128, 256}
    assert len({row["run_id"] for row in rows}) == 1, "one job"
    assert all(row["status"] == "ok" and row["method_protocol"] == "query-agnostic" for row in rows)
    press_rows = [row for row in rows if row["method_kind"] == "kvpress"]
    assert all(row["kept_tokens_final"] <= 128 < row["context_tokens"] for row in press_rows)
    assert runner.invoke(app, ["report", str(output)]).exit_code == 0
    assert (
        "| babilong_demo | 1k | h2o[budget=128] | query-agnostic | 2 | 0 |"
        in (output / "report.md").read_text()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--dataset", "squad", "--model", "x"], "dataset='squad' is not allowed"),
        (["eval", "--method", "lazer"], "method='lazer' is not allowed: did you mean laser"),
        (["eval", "--model", "x"], "model 'x': no such directory, and not an HF id"),
        (["eval", "--model", "/no/such/dir"], "model '/no/such/dir': no such directory"),
        (["eval", "--dataset", "babilong", "--source", "/no/copy"], "source='/no/copy' does not exist"),
        (["eval", "--run-file", "/no/run.yaml"], "run_file='/no/run.yaml' is not allowed: a YAML file"),
        (["eval", "--lengths", "3k"], "length='3k' is not in babilong_demo"),
        (["eval", "--budget", "100", "--ratio", "0.5"], "exactly one of budget and compression_ratio"),
        (
            ["sweep", "--grid", "no-such-grid"],
            "a preset (ablation, laser-budgets, rivals, quality, quality-v2, quality-v3) or a YAML",
        ),
        (
            ["eval", "--method", "kvpress:snapkvv"],
            "method='kvpress:snapkvv' is not allowed: did you mean kvpress:snapkv",
        ),
        (
            ["sweep", "--grid", "quality", "--ratio", "0.5"],
            "no --ratio override: the grid sets budget itself",
        ),
        (["report", "/no/such/dir"], "is not a directory"),
        (["methods", "--bogus"], "No such option"),
        (["eval", "--timeout", "nan"], "timeout=nan is not allowed: a positive number of seconds"),
    ],
)
def test_bad_input_is_one_red_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "press.window: 3",
            "press.window=3 is not allowed: a parameter of press 'snapkv' "
            "(press.window_size, press.kernel_size)",
        ),
        (
            "press.window_size: wide",
            "press.window_size='wide' is not allowed: an integer (the press's default is 64)",
        ),
        ("press: snapkvv", "press='snapkvv' is not allowed: did you mean snapkv"),
        (
            "observation_window: 8",
            "observation_window=8 is not allowed: a parameter of selector 'kvpress snapkv'",
        ),
    ],
)
def test_a_bad_press_or_press_parameter_is_one_line(tmp_path: Path, entry: str, message: str) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"methods:\n  - method: kvpress:snapkv\n    {entry}\n")
    result = runner.invoke(app, ["sweep", "--grid", str(grid), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_bad_model_or_data_fails_before_ray_in_under_two_seconds() -> None:
    code = (
        "import time, sys; from typer.testing import CliRunner; from cli.main import app; "
        "start = time.monotonic(); result = CliRunner().invoke(app, sys.argv[1:]); "
        "print(result.exit_code, round(time.monotonic() - start, 2), 'ray' in sys.modules)"
    )
    for args in (["eval", "--model", "/no/such/model"], ["eval", "--dataset", "babilong", "--lengths", "3x"]):
        result = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
        )
        exit_code, seconds, ray_loaded = result.stdout.split()
        assert exit_code == "2" and float(seconds) < 2.0 and ray_loaded == "False", result.stdout


def test_more_gpus_than_the_cluster_has_is_one_line(tiny_llama_dir: Path, tmp_path: Path) -> None:
    args = ["eval", "--gpus", "1", "--model", str(tiny_llama_dir), "--limit", "1", "--demo-samples", "1"]
    result = runner.invoke(app, [*args, "--lengths", "1k", "--tasks", "qa1", "--output", str(tmp_path)])
    assert result.exit_code == 2 and "gpus=1 but the Ray cluster has 0 GPU(s)" in result.output


def test_a_run_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    from cluster.run_options import build_run_config

    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        "dataset: babilong_demo\nlengths: [2k, 4k]\ntasks: qa1\nmethods: [full, streaming]\n"
        "budget: 256\nmax_in_flight: 3\nmax_retries: 5\noutput: out\n"
    )
    config = build_run_config({"budget": 128, "model": None}, str(run_file))
    assert (config.lengths, config.tasks, config.max_in_flight, config.max_retries) == (
        ("2k", "4k"),
        ("qa1",),
        3,
        5,
    )
    assert [method.name for method in config.methods] == ["full", "streaming"]
    assert config.methods[1].engine.budget == 128 and config.output == "out"
    assert config.limit is None, "a run file with a dataset is not the embedded default"
    run_file.write_text("datset: babilong\n")
    with pytest.raises(Exception, match="run_file='datset' is not allowed: one of the run options"):
        build_run_config({}, str(run_file))


def test_missing_model_and_bad_results_dirs(tmp_path: Path) -> None:
    output = tmp_path / "missing-model"
    missing = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "/no/such/model",
            "--workers",
            "1",
            "--limit",
            "1",
            "--demo-samples",
            "1",
            "--output",
            str(output),
            "--quiet",
        ],
    )
    assert missing.exit_code == 2 and "no such directory" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "holds no result shards" in result.output
    (empty / "results").mkdir()
    pq.write_table(pa.table({"x": [1]}), empty / "results" / "foreign.parquet")
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "foreign.parquet is not a laserkv result shard" in result.output
    bad_format = runner.invoke(app, ["report", str(empty), "--format", "pdf"])
    assert bad_format.exit_code == 2 and "format='pdf' is not allowed: one of md, html" in bad_format.output
