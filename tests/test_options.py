"""Each run option is declared once (``cluster.options``) and its forms stay in step: every
declared option is a flag of ``laserkv eval`` / ``laserkv sweep`` (as declared) and of
``python -m cluster.job``, a key of the YAML run file, and one ``RunConfig`` field of its name
(or, for the method options, part of ``RunConfig.methods``); every form carries the same value
and refuses a bad one with the same line; manifests written before the renames still read."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from cluster import job
from cluster.config import RunConfig
from cluster.options import (
    COMMANDS,
    FORMER_NAMES,
    JOB,
    METHOD_OPTIONS,
    OPTIONS,
    RUN_OPTIONS,
    Declared,
    MethodOptions,
    RunOptions,
    for_command,
    stored_options,
)
from cluster.run_options import DEFAULTS, build_run_config, merged_options, read_run_file
from cluster.writer import previous_cell_revisions, previous_revisions, read_manifests

ROOT = Path(__file__).resolve().parents[1]
RUN_DIRECTORIES = sorted(path.parent for path in (ROOT / "docs" / "quality" / "runs").glob("*/manifests"))
runner = CliRunner()


def sample(declared: Declared) -> Any:
    """A value of the option's type that is not its default (and passes the declared checks)."""
    named = {"device": "cpu", "dtype": "float16"}  # options with a fixed set of names
    return named.get(
        declared.name, {bool: True, int: 3, float: 0.5, str: "x", tuple: ("a", "b")}[declared.type]
    )


def command_line(declared: Declared) -> list[str]:
    """``sample`` as the flags that give it."""
    value = sample(declared)
    if declared.type is bool:
        return [declared.flag]
    if declared.option.repeat:
        return [part for item in value for part in (declared.flag, item)]
    return [declared.flag, ",".join(value) if declared.type is tuple else str(value)]


def help_flags(text: str) -> set[str]:
    """The flags ``--help`` lists (the first words of its option lines: ``--x``, ``--no-x``)."""
    found = re.findall(r"^[\s│]*(--[a-z-]+)(?:[\s,]+(--no-[a-z-]+))?", text, re.MULTILINE)
    return {flag for pair in found for flag in pair if flag}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_declared_option_is_a_flag_of_each_command_that_takes_it(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if command == JOB:
        with pytest.raises(SystemExit):
            job.parse_args(["--help"])
        shown = help_flags(capsys.readouterr().out)
    else:
        result = runner.invoke(app, [command, "--help"], terminal_width=200)
        assert result.exit_code == 0, result.output
        shown = help_flags(result.output)
    for declared in OPTIONS.values():
        assert (declared.flag in shown) is (command in declared.option.commands), (command, declared.name)
    taken = {declared.flag for declared in for_command(command)}
    own = {"--help", "--run-file", "--quiet", "--verbose"}  # not run options
    others = own | {f"--no-{flag[2:]}" for flag in taken | own}
    assert shown - taken <= others, "a flag that is no declared option"


@pytest.mark.parametrize("command", ["eval", "sweep"])
def test_the_commands_and_the_job_pass_the_same_values_by_the_same_names(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, dict[str, Any]] = {}

    def capture(form: str) -> Any:
        def build(flags: dict[str, Any], run_file: str | None = None, sweep: bool = False) -> None:
            seen[form] = {key: value for key, value in flags.items() if value is not None}
            raise SystemExit(0)

        return build

    monkeypatch.setattr("cluster.run_options.build_run_config", capture(command))
    monkeypatch.setattr(job, "build_run_config", capture(JOB))
    taken = for_command(command)
    args = [part for declared in taken for part in command_line(declared)]
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 0, result.output
    with pytest.raises(SystemExit):
        job.config_from_args(job.parse_args(args))
    for form in (command, JOB):
        assert set(seen[form]) == {declared.name for declared in taken}, form
        for declared in taken:
            assert declared.value(seen[form][declared.name]) == sample(declared), (form, declared.name)


def test_the_run_file_takes_every_option_by_its_name(tmp_path: Path) -> None:
    run_file = tmp_path / "run.yaml"
    values = {name: sample(declared) for name, declared in OPTIONS.items()}
    run_file.write_text(
        yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})
    )
    assert set(read_run_file(str(run_file))) == set(OPTIONS)
    run, methods, embedded = merged_options({}, str(run_file))
    assert not embedded
    assert {**run.options(), **dataclasses.asdict(methods)} == values
    flags_win, _, _ = merged_options({"workers": 5, "lengths": "8k"}, str(run_file))
    assert (flags_win.workers, flags_win.lengths) == (5, ("8k",))


def test_each_option_is_one_run_config_field_of_its_name() -> None:
    fields = {field.name: field for field in dataclasses.fields(RunConfig)}
    assert set(fields) == {declared.name for declared in RUN_OPTIONS} | {"methods"}
    for declared in RUN_OPTIONS:
        assert fields[declared.name].default == declared.default == DEFAULTS[declared.name]
    # the method options choose RunConfig.methods: the names, a grid, or an override of every
    # method's parameter of the declared name
    assert {declared.name for declared in METHOD_OPTIONS if not declared.option.method_param} == {
        "methods",
        "grid",
    }
    from laserkv import get_method

    params = get_method("laser").params()
    for declared in METHOD_OPTIONS:
        assert declared.option.method_param in (None, *params), declared.name
    assert not set(OPTIONS) & set(FORMER_NAMES), "a former name is back"
    assert set(OPTIONS) == {f.name for f in dataclasses.fields(RunOptions)} | {
        f.name for f in dataclasses.fields(MethodOptions)
    }


def test_renamed_options_reach_the_run_config(tmp_path: Path) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        "dataset: babilong_demo\nlengths: 1k\ntasks: qa1\nmethods: [full]\noutput: out\ndemo_samples: 7\n"
        "timeout: 90\n"
    )
    config = build_run_config({"source": None}, str(run_file))
    assert (config.output, config.demo_samples, config.timeout, config.source) == ("out", 7, 90.0, None)
    assert set(config.to_dict()) == {field.name for field in dataclasses.fields(RunConfig)}
    assert stored_options(config.to_dict()) == config.to_dict()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("gpus", "-1", "gpus=-1 is not allowed: an integer >= 0"),
        ("timeout", "nan", "timeout=nan is not allowed: a positive number of seconds"),
        ("limit", "0", "limit=0 is not allowed: None or an integer >= 1"),
        ("demo_samples", "0", "demo_samples=0 is not allowed: an integer from 1 to 100,000"),
    ],
)
def test_a_bad_value_is_the_same_line_in_every_form(
    name: str, text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flag = OPTIONS[name].flag
    result = runner.invoke(app, ["eval", flag, text])
    assert result.exit_code == 2 and message in result.output, result.output
    with pytest.raises(SystemExit) as exit_code:
        job.main([flag, text])
    assert exit_code.value.code == 2 and message in capsys.readouterr().err
    run_file = tmp_path / "run.yaml"
    run_file.write_text(f"{name}: {text if text != 'nan' else '.nan'}\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        build_run_config({}, str(run_file))


def test_a_run_file_value_of_another_type_is_one_line(tmp_path: Path) -> None:
    run_file = tmp_path / "run.yaml"
    run_file.write_text("workers: '8'\n")
    with pytest.raises(ValueError, match=re.escape("workers='8' is not allowed: an integer >= 1")):
        build_run_config({}, str(run_file))
    run_file.write_text("greedy: 1\n")
    with pytest.raises(ValueError, match=re.escape("greedy=1 is not allowed: true or false")):
        build_run_config({}, str(run_file))


@pytest.mark.parametrize("directory", RUN_DIRECTORIES, ids=lambda path: path.name)
def test_manifests_written_before_the_renames_still_read(directory: Path) -> None:
    manifests = read_manifests(directory)
    before = [manifest for manifest in manifests if "output_dir" in manifest["config"]]
    assert before, "every committed directory holds a manifest of before the renames"
    for manifest in manifests:  # later runs resumed into some (q15_v3): their manifests read too
        config = manifest["config"]
        options = stored_options(config)
        assert set(options) <= set(OPTIONS) | {"methods", "extra"}
        if manifest in before:
            assert "output" not in config
            assert options["output"] == config["output_dir"]
            assert options["timeout"] == config["unit_timeout_s"]
        dataset = str(config["dataset"])
        assert str(manifest["dataset_revision"]) in previous_revisions(directory, dataset)
        cells = previous_cell_revisions(directory, dataset)
        assert {f"{task}/{length}" for length in config["lengths"] for task in config["tasks"]} <= set(cells)


def test_a_new_manifest_reads_as_an_old_one_did(tmp_path: Path) -> None:
    from cluster.writer import write_manifest

    old = json.loads(next((RUN_DIRECTORIES[0] / "manifests").glob("*.json")).read_text())
    renamed = stored_options(old["config"])
    write_manifest(tmp_path, "20990101T000000-new", renamed, {"dataset_revision": old["dataset_revision"]})
    dataset = str(old["config"]["dataset"])
    assert previous_revisions(tmp_path, dataset) == previous_revisions(RUN_DIRECTORIES[0], dataset) & {
        str(old["dataset_revision"])
    }
    assert (
        previous_cell_revisions(tmp_path, dataset).keys()
        <= previous_cell_revisions(RUN_DIRECTORIES[0], dataset).keys()
    )
