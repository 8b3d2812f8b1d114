"""Issue 38's probe, kept: bad command lines and run files for ``laserkv eval``, ``sweep``, ``run``,
``report`` and ``python -m cluster.job``. Each is refused with exit code 2 and exactly one line,
before Ray starts or any model loads (those steps are replaced by failures here), and leaves the
working directory, a results directory in it included, byte-identical, with nothing new."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from cli.render import MAX_ERROR_CHARS
from cluster.options import MAX_YAML_BYTES

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
runner = CliRunner()

LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}' if previous else 'x'] * 9)}]\n"
    for previous, name in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True)
).replace("g: &g", "tasks:")
"""A run file of nested aliases (a "billion laughs"): 9^7 names from a few hundred bytes."""
RUN_FILES: dict[str, str | bytes] = {
    "overwrite_quoted": "overwrite: 'false'\n",
    "allow_remote_quoted": "allow_remote_address: 'false'\naddress: ray://8.8.8.8:10001\n",
    "retry_failed_quoted": "retry_failed: 'true'\n",
    "greedy_int": "greedy: 1\n",
    "seed_text": "seed: abc\n",
    "seed_negative": "seed: -1\n",
    "seed_huge": "seed: 100000000000000000000\n",
    "gpus_bool": "gpus: true\n",
    "output_list": "output: [a, b]\n",
    "output_empty": "output: ''\n",
    "lengths_int": "lengths: 5\n",
    "lengths_empty": "lengths: []\n",
    "tasks_nested": "tasks: [[qa1]]\n",
    "tasks_mapping": "tasks: {qa1: 1}\n",
    "timeout_list": "timeout: [1]\n",
    "timeout_nan": "timeout: .nan\n",
    "timeout_zero": "timeout: 0\n",
    "limit_float": "limit: 1.5\n",
    "limit_zero": "limit: 0\n",
    "workers_text": "workers: '2'\n",
    "max_in_flight_zero": "max_in_flight: 0\n",
    "max_retries_negative": "max_retries: -1\n",
    "workers_per_gpu_zero": "workers_per_gpu: 0\n",
    "demo_samples_huge": "demo_samples: 1000000000\n",
    "model_int": "model: 5\n",
    "dataset_empty": "dataset: ''\n",
    "address_int": "address: 5\n",
    "device_bad": "device: tpu\n",
    "dtype_bad": "dtype: float8\n",
    "methods_int": "methods: 3\n",
    "grid_list": "grid: [a]\n",
    "ratio_text": "ratio: half\n",
    "budget_bool": "budget: true\n",
    "unknown_key": "workerz: 2\n",
    "integer_key": "1: 2\n",
    "not_a_mapping": "- a\n- b\n",
    "invalid_yaml": "lengths: [4k\n",
    "laughs": LAUGHS,
    "binary": b"\xff\xfe\x00seed: 1\n",
    "methods_with_grid": "methods: [laser]\ngrid: ablation\n",
    "grid_huge": "methods:\n  - method: laser\n    budget: [{0}]\n    block_size: [{0}]\n".format(
        ", ".join(str(value) for value in range(1, 10_001))
    ),
    "grid_laughs": LAUGHS.replace("tasks:", "methods:"),
    "grid_no_methods": "budget: [1]\n",
    "grid_entry_without_method": "methods:\n  - budget: [256]\n",
    "grid_empty_values": "methods:\n  - method: laser\n    budget: []\n",
    "grid_method_list": "methods:\n  - method: [laser]\n",
    "grid_empty": "methods: []\n",
    "grid_value_mapping": "methods:\n  - method: laser\n    budget: {a: 1}\n",
    "grid_unknown_parameter": "methods:\n  - method: laser\n    nonsense: 1\n",
    "grid_unknown_method": "methods:\n  - method: nope\n",
    "grid_duplicate_configs": "methods:\n  - method: laser\n    budget: [256, 256]\n",
}
CASES: dict[str, list[str]] = {
    # run files, each value of the wrong type or range (issue 38: 14 of 15 were accepted)
    **{
        f"run_file_{name}": ["eval", "--run-file", f"{{rf:{name}}}"]
        for name in RUN_FILES
        if "grid" not in name
    },
    "sweep_run_file_methods_with_grid": [
        "sweep",
        "--run-file",
        "{rf:methods_with_grid}",
        "--model",
        "{model}",
    ],
    "sweep_run_file_grid_value": ["sweep", "--run-file", "{rf:grid_list}"],
    "run_file_missing": ["eval", "--run-file", "{tmp}/missing.yaml"],
    "run_file_directory": ["eval", "--run-file", "{tmp}"],
    "run_file_too_large": ["eval", "--run-file", "{rf:large}"],
    # flags the command line parser refuses (no usage box: one line)
    "seed_not_a_number": ["eval", "--seed", "abc"],
    "limit_not_a_number": ["eval", "--limit", "ten"],
    "ratio_not_a_number": ["sweep", "--ratio", "half"],
    "unknown_flag": ["eval", "--bogus"],
    "unknown_flag_methods": ["methods", "--bogus"],
    "report_without_directory": ["report"],
    "unknown_command": ["evaluate"],
    # flags the input alone refuses
    "seed_negative": ["eval", "--seed", "-1"],
    "seed_huge": ["eval", "--seed", "4294967296"],
    "demo_samples_huge": ["eval", "--demo-samples", "1000000000", "--limit", "1"],
    "demo_samples_zero": ["eval", "--demo-samples", "0"],
    "lengths_empty": ["eval", "--lengths", ""],
    "tasks_empty": ["eval", "--tasks", ""],
    "lengths_trailing_comma": ["eval", "--lengths", "2k,"],
    "tasks_blank": ["eval", "--tasks", " , "],
    "timeout_inf": ["eval", "--timeout", "inf"],
    "timeout_negative": ["eval", "--timeout", "-1"],
    "workers_zero": ["eval", "--workers", "0"],
    "gpus_negative": ["eval", "--gpus", "-1"],
    "limit_zero": ["eval", "--limit", "0"],
    "output_empty": ["eval", "--output", ""],
    "dtype_bad": ["eval", "--dtype", "float8"],
    "device_bad": ["eval", "--device", "tpu"],
    "dataset_unknown": ["eval", "--dataset", "nope"],
    "length_unknown": ["eval", "--lengths", "999k"],
    "task_unknown": ["eval", "--tasks", "nope"],
    "model_missing": ["eval", "--model", "{tmp}/no-model"],
    "source_missing": ["eval", "--dataset", "babilong", "--source", "{tmp}/no-source"],
    "method_unknown": ["eval", "--model", "{model}", "--method", "nope"],
    "method_empty": ["eval", "--model", "{model}", "--method", ""],
    "ratio_above_one": ["eval", "--model", "{model}", "--ratio", "2"],
    "budget_negative": ["eval", "--model", "{model}", "--budget", "-5"],
    "block_size_zero": ["eval", "--model", "{model}", "--block-size", "0"],
    "remote_address": ["eval", "--address", "ray://8.8.8.8:10001"],
    "sweep_grid_empty": ["sweep", "--grid", ""],
    "sweep_grid_missing": ["sweep", "--grid", "{tmp}/missing-grid.yaml"],
    "sweep_grid_directory": ["sweep", "--grid", "{tmp}"],
    "sweep_grid_override_clash": ["sweep", "--model", "{model}", "--grid", "quality", "--budget", "256"],
    **{
        f"sweep_{name}": ["sweep", "--model", "{model}", "--grid", f"{{rf:{name}}}"]
        for name in RUN_FILES
        if name.startswith("grid_")
    },
    # laserkv run: refused before the model loads
    "run_sample_huge": ["run", "--sample", "1000000000"],
    "run_sample_negative": ["run", "--sample", "-1"],
    "run_device_bad": ["run", "--device", "tpu"],
    "run_dtype_bad": ["run", "--dtype", "float8"],
    "run_dataset_unknown": ["run", "--dataset", "nope"],
    "run_task_unknown": ["run", "--task", "nope"],
    "run_length_unknown": ["run", "--length", "999k"],
    "run_method_unknown": ["run", "--method", "nope"],
    "run_max_new_tokens_zero": ["run", "--max-new-tokens", "0"],
    # laserkv report
    "report_missing": ["report", "{tmp}/missing"],
    "report_file": ["report", "{rf:seed_text}"],
    "report_format": ["report", "--format", "pdf", "results/eval"],
    # python -m cluster.job
    "job_seed_negative": ["job", "--seed", "-1"],
    "job_seed_text": ["job", "--seed", "abc"],
    "job_unknown_flag": ["job", "--workerz", "2"],
    "job_lengths_empty": ["job", "--lengths", ""],
    "job_grid_empty": ["job", "--grid", ""],
    "job_demo_samples_huge": ["job", "--demo-samples", "1000000000"],
    "job_run_file_laughs": ["job", "--run-file", "{rf:laughs}"],
    "job_run_file_overwrite_quoted": ["job", "--run-file", "{rf:overwrite_quoted}"],
    "job_output_empty": ["job", "--output", ""],
    "job_workers_zero": ["job", "--workers", "0"],
}


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root``: a file's sha256, a directory's ``dir``."""
    return {
        str(path.relative_to(root)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a results directory (``results/eval``: a shard, a manifest)."""
    work = tmp_path / "work"
    shards = work / "results" / "eval" / "shards"
    shards.mkdir(parents=True)
    (shards / "run-1.parquet").write_bytes(b"PAR1 not really a shard PAR1")
    (work / "results" / "eval" / "manifest.json").write_text('{"run_id": "r1"}\n')
    monkeypatch.chdir(work)
    return work


def no_ray(*args: object, **kwargs: object) -> None:
    raise AssertionError("the input reached Ray or a model load")


def invoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """(exit code, non-empty output lines) of ``laserkv <argv>`` or ``python -m cluster.job``."""
    if argv[0] != "job":
        result = runner.invoke(app, argv)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, [line for line in result.output.splitlines() if line.strip()]
    from cluster import job

    with pytest.raises(SystemExit) as exited:
        job.main(argv[1:])
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    return int(exited.value.code or 0), lines


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_input_is_one_line_exit_2_and_changes_nothing(
    name: str,
    workdir: Path,
    tmp_path: Path,
    tiny_llama_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    for file_name, content in {**RUN_FILES, "large": "# padding\n" * (MAX_YAML_BYTES // 10 + 1)}.items():
        path = files / f"{file_name}.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    replaced = {"{tmp}": str(files), "{model}": str(tiny_llama_dir)}
    argv = []
    for arg in CASES[name]:
        if arg.startswith("{rf:"):
            arg = str(files / f"{arg[4:-1]}.yaml")
        argv.append(replaced.get(arg, arg.replace("{tmp}", str(files))))
    import cluster.job
    import cluster.unit
    from cli import eval_cmd

    monkeypatch.setattr(eval_cmd, "_launch", no_ray)
    monkeypatch.setattr(cluster.job, "run_eval", no_ray)
    monkeypatch.setattr(cluster.unit, "run_single", no_ray)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = tree(workdir)
    code, lines = invoke(argv, capsys)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert len(lines[0]) <= len("error: ") + MAX_ERROR_CHARS
    assert tree(workdir) == before


def test_the_probe_holds_at_least_60_inputs() -> None:
    assert len(CASES) >= 60


def test_a_cuda_device_without_a_gpu_is_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    import cluster.unit
    from cli import eval_cmd

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(eval_cmd, "_launch", no_ray)
    monkeypatch.setattr(cluster.unit, "run_single", no_ray)
    before = tree(workdir)
    for argv in (["run", "--device", "cuda"], ["eval", "--device", "cuda:0"]):
        code, lines = invoke(argv, capsys)
        assert code == 2 and lines == [
            "error: device='cuda' is not allowed: cpu (no CUDA GPU is visible on this machine)".replace(
                "'cuda'", repr(argv[-1])
            )
        ], lines
    assert tree(workdir) == before


def test_the_job_reports_an_error_after_its_config_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cluster.job
    from laserkv.errors import LaserKVError

    for error in (LaserKVError("results/eval holds\nanother run's rows"), OSError(28, "No space left")):

        def failing(*args: object, error: Exception = error, **kwargs: object) -> None:
            raise error

        monkeypatch.setattr(cluster.job, "run_eval", failing)
        code, lines = invoke(["job", "--lengths", "2k", "--tasks", "qa1"], capsys)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
