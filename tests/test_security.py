"""Issue 22: the cluster set-up lets no one in. No script or launcher command binds the
dashboard, job API, GCS or Ray Client server to a non-loopback address (``tests.bind_scan``,
tested first on bad examples); ``ray_cluster.yaml`` keeps the dashboard on 127.0.0.1 with
token authentication; a run refuses a remote job API or Ray Client address without
``--allow-remote-address``; ``trust_remote_code`` stays off unless asked. Nothing here starts
Ray."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from cluster.address import AddressError, AddressKind, check_address, is_loopback_host, parse_address
from laserkv.errors import ConfigError
from tests.bind_scan import Bind, repository_scripts, scan_file, scan_python, scan_shell
from tests.tiny import build_model

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "ray_cluster.yaml"
TUNNEL_STEPS = ("ray dashboard ray_cluster.yaml", "ray job submit --address http://127.0.0.1:8265")
runner = CliRunner()


# The scanner, on examples: each bad one must be found, each good one must pass.

BAD_SHELL = [
    "ray start --head --dashboard-host=0.0.0.0",
    "ray start --head --dashboard-host 0.0.0.0 --port=6379",
    "ray start --head --dashboard-host='::'",
    'ray start --head --dashboard-host="[::]"',
    "ray start --head --dashboard-host=203.0.113.7",
    "ray start --head --dashboard-host=my-head.example.com",
    "ray start --head --node-ip-address=0.0.0.0 --ray-client-server-port=10001",
    "ray start --head --node-ip-address=10.0.0.5",
    "ray start --head --dashboard-host=$HOST",
    'ray start --head --dashboard-host="${HOST:-0.0.0.0}"',
    "  - RAY_AUTH_MODE=token ray start --head --port=6379 --dashboard-host=0.0.0.0 --autoscaling-config=x",
]
GOOD_SHELL = [
    "ray start --head --port=6379",
    "ray start --head --dashboard-host=127.0.0.1",
    "ray start --head --dashboard-host localhost",
    "ray start --head --dashboard-host=[::1]",
    "ray start --node-ip-address=::ffff:127.0.0.1 --address=[::ffff:127.0.0.1]:6379",
    'ray start --head --dashboard-host="${LASERKV_DASHBOARD_HOST:-127.0.0.1}"',
    "ray start --address=$RAY_HEAD_IP:6379",
    "# ray start --head --dashboard-host=0.0.0.0   (a comment, not a command)",
    "ray start --head --dashboard-agent-listen-port=52365",
]
BAD_PYTHON = [
    'import ray\nray.init(dashboard_host="0.0.0.0")',
    "import ray\nray.init(_node_ip_address=address)",
    'subprocess.run(["ray", "start", "--head", "--dashboard-host", "0.0.0.0"])',
    'HOST = "0.0.0.0"\ncommand = f"ray start --head --dashboard-host={HOST}"',
    'subprocess.run("ray start --head --node-ip-address=" + public_ip(), shell=True)',
    'host = "127.0.0.1" if local else "0.0.0.0"\nray.init(dashboard_host=host)',
]
GOOD_PYTHON = [
    "import ray\nray.init(num_cpus=2, include_dashboard=False)",
    'ray.init(dashboard_host="127.0.0.1")',
    'subprocess.run(["ray", "start", "--head", "--dashboard-host", "127.0.0.1"])',
    'LOOPBACK = "127.0.0.1"\nip = f"::ffff:{LOOPBACK}" if joining else LOOPBACK\n'
    'command = [f"--node-ip-address={ip}"]',
    'ray.init(dashboard_host=os.environ.get("LASERKV_DASHBOARD_HOST", "127.0.0.1"))',
]


@pytest.mark.parametrize("text", BAD_SHELL)
def test_the_bind_scan_finds_a_public_bind_in_shell(text: str) -> None:
    binds = scan_shell(text)
    assert binds and not all(bind.loopback for bind in binds), binds


@pytest.mark.parametrize("text", GOOD_SHELL)
def test_the_bind_scan_passes_loopback_and_opt_in_binds_in_shell(text: str) -> None:
    assert all(bind.loopback for bind in scan_shell(text)), scan_shell(text)


@pytest.mark.parametrize("source", BAD_PYTHON)
def test_the_bind_scan_finds_a_public_bind_in_python(source: str) -> None:
    binds = scan_python(source)
    assert binds and not all(bind.loopback for bind in binds), binds


@pytest.mark.parametrize("source", GOOD_PYTHON)
def test_the_bind_scan_passes_loopback_and_opt_in_binds_in_python(source: str) -> None:
    assert all(bind.loopback for bind in scan_python(source)), scan_python(source)


def test_the_bind_scan_reports_the_value_and_the_opt_in() -> None:
    assert scan_shell("x\nray start --head --dashboard-host=0.0.0.0", "run.sh") == [
        Bind("run.sh:2", "--dashboard-host", "0.0.0.0")
    ]
    assert scan_shell('--dashboard-host="${PUBLIC_HOST:-127.0.0.1}"') == [
        Bind("<text>:1", "--dashboard-host", "127.0.0.1", "PUBLIC_HOST")
    ]
    assert scan_shell("--dashboard-host=$HOST") == [Bind("<text>:1", "--dashboard-host", None)]


# The repository.


def test_no_script_or_launcher_command_binds_ray_to_a_public_address() -> None:
    """Every script (``scripts/``, ``.ci/run``, Python that starts Ray, tests included) and the
    launcher config; this file is left out, as it holds the scanner's bad examples."""
    files = repository_scripts(REPO, skip=(Path(__file__),))
    scanned = {str(path.relative_to(REPO)) for path in files}
    assert {"ray_cluster.yaml", ".ci/run", "scripts/eval.sh", "cluster/driver.py"} <= scanned
    binds = [bind for path in files for bind in scan_file(path, REPO)]
    public = [bind for bind in binds if not bind.loopback]
    assert public == [], "\n".join(
        f"{bind.where}: {bind.flag} binds to {bind.value or 'an untraceable value'}; use 127.0.0.1, "
        "or a loopback default the user overrides (${NAME:-127.0.0.1})"
        for bind in public
    )
    files_with_binds = {bind.where.split(":")[0] for bind in binds}  # the scan reads what is there
    assert {"ray_cluster.yaml", "tests/test_cluster_job.py", "tests/test_node_loss.py"} <= files_with_binds


def launcher() -> dict[str, Any]:
    return dict(yaml.safe_load(LAUNCHER.read_text()))


def launcher_commands(config: dict[str, Any]) -> list[str]:
    """Every command the launcher runs: the top-level ``*_commands`` and any per node type."""
    sections = [config, *config["available_node_types"].values()]
    return [
        str(command)
        for section in sections
        for key, commands in section.items()
        if key.endswith("_commands")
        for command in commands or []
    ]


def test_the_launcher_keeps_the_dashboard_on_loopback_with_token_auth() -> None:
    config = launcher()
    commands = launcher_commands(config)
    starts = [command for command in commands if "ray start" in command]
    assert len(starts) == 2
    assert all(command.startswith("RAY_AUTH_MODE=token ray start ") for command in starts)
    (head,) = [command for command in starts if "--head" in command]
    assert [(bind.flag, bind.value) for bind in scan_shell(head)] == [("--dashboard-host", "127.0.0.1")]
    assert not [bind for command in commands for bind in scan_shell(command) if not bind.loopback]
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # to head, then workers
    assert "chmod 600 ~/.ray/auth_token" in config["setup_commands"]


def test_the_launcher_opens_nothing_beyond_rays_defaults_and_needs_no_account_ids() -> None:
    config = launcher()
    assert config["provider"]["security_group"]["IpPermissions"] == []
    for node_type in config["available_node_types"].values():
        assert set(node_type["node_config"]) <= {"InstanceType", "ImageId", "BlockDeviceMappings"}
    assert "auth" not in config or set(config["auth"]) == {"ssh_user"}  # no key name, no key file


def test_the_launcher_header_and_readme_show_the_tunnel() -> None:
    header = "".join(line for line in LAUNCHER.read_text().splitlines(True) if line.startswith("#"))
    readme = (REPO / "README.md").read_text()
    security = readme.split("## Security", 1)[1].split("\n## ", 1)[0]
    for text in (header, security):
        for step in (*TUNNEL_STEPS, "RAY_AUTH_MODE=token", "ray get-auth-token --generate"):
            assert step in text, step
    assert "--allow-remote-address" in security and "trust_remote_code" in security


# Addresses.


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        (None, AddressKind.LOCAL),
        ("local", AddressKind.LOCAL),
        ("auto", AddressKind.AUTO),
        ("127.0.0.1:6379", AddressKind.GCS),
        ("10.0.0.5:6379", AddressKind.GCS),  # a cluster this machine is on: the job's RAY_ADDRESS
        ("[::1]:6379", AddressKind.GCS),
        ("ray://localhost:10001", AddressKind.CLIENT),
        ("ray://127.0.0.1:10001", AddressKind.CLIENT),
    ],
)
def test_an_address_a_run_joins(address: str | None, kind: AddressKind) -> None:
    assert check_address(address).kind is kind


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("http://10.0.0.5:8265", "refusing job address http://10.0.0.5:8265: the job API runs any code"),
        ("https://ray.example.com", "refusing job address https://ray.example.com:"),
        ("http://0.0.0.0:8265", "refusing job address"),
        ("http://[2001:db8::1]:8265", "refusing job address"),
        ("http://127.0.0.1.nip.io:8265", "refusing job address"),  # a name is never trusted
        ("ray://10.0.0.5:10001", "refusing Ray Client address ray://10.0.0.5:10001: the Ray Client"),
    ],
)
def test_a_remote_job_or_client_address_is_refused_without_the_flag(address: str, message: str) -> None:
    with pytest.raises(AddressError) as refused:
        check_address(address)
    text = str(refused.value)
    assert text.startswith(message) and "\n" not in text
    assert "ray dashboard ray_cluster.yaml" in text and text.endswith("or pass --allow-remote-address")


def test_the_flag_lets_a_remote_client_address_through() -> None:
    assert check_address("ray://10.0.0.5:10001", allow_remote=True).kind is AddressKind.CLIENT


@pytest.mark.parametrize(
    "address",
    ["http://127.0.0.1:8265", "http://localhost:8265", "http://[::1]:8265", "http://127.8.9.10:8265"],
)
def test_a_job_api_address_is_for_submitting_not_joining(address: str) -> None:
    """Ray's own ``ray.init`` cannot join an http(s) address: say so in one line, early."""
    assert parse_address(address).loopback
    with pytest.raises(AddressError, match=r"is Ray's job API, which a run cannot join: submit"):
        check_address(address)
    with pytest.raises(AddressError, match="which a run cannot join"):
        check_address("http://10.0.0.5:8265", allow_remote=True)


@pytest.mark.parametrize(
    "address", ["bogus", "10.0.0.5", "10.0.0.5:port", "ftp://10.0.0.5:21", "http://:8265"]
)
def test_an_address_of_no_known_form_is_a_config_error(address: str) -> None:
    with pytest.raises(ConfigError, match=r"auto, host:port, ray://host:port or http\(s\)://host:port"):
        check_address(address)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.255.0.9", True), ("localhost", True), ("LOCALHOST", True),
        ("::1", True), ("[::1]", True), ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.168.1.2", False),
        ("::ffff:10.0.0.5", False), ("localhost.example.com", False), ("head", False),
    ],
)  # fmt: skip
def test_loopback_is_127_8_and_ipv6_1_and_localhost(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("command", ["eval", "sweep"])
def test_laserkv_refuses_a_remote_job_address_in_one_line(command: str, tiny_llama_dir: Path) -> None:
    args = [command, "--model", str(tiny_llama_dir), "--address", "http://10.0.0.5:8265"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    line = one_error_line(refused.output)
    assert line.startswith("error: refusing job address http://10.0.0.5:8265: the job API runs any code")
    allowed = runner.invoke(app, [*args, "--allow-remote-address"])  # the flag reaches the check
    assert allowed.exit_code == 2 and "which a run cannot join" in one_error_line(allowed.output)


def run_job(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m cluster.job <argv>`` (its ``main``): the exit code and its one stderr line."""
    from cluster.job import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""
    return int(str(exited.value.code)), one_error_line(captured.err)


def test_the_job_entry_point_refuses_a_remote_address_in_one_line(
    tiny_llama_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ["--model", str(tiny_llama_dir)]
    code, line = run_job([*model, "--address", "https://ray.example.com:8265"], capsys)
    assert code == 2 and line.startswith("error: refusing job address https://ray.example.com:8265: the job")
    code, line = run_job([*model, "--address", "http://10.0.0.5:8265", "--allow-remote-address"], capsys)
    assert code == 2 and "which a run cannot join" in line
    monkeypatch.setenv("RAY_ADDRESS", "ray://10.1.2.3:10001")  # e.g. exported for another tool
    code, line = run_job(model, capsys)
    assert code == 2
    assert line.startswith("error: refusing Ray Client address ray://10.1.2.3:10001 (RAY_ADDRESS):")


def test_the_flag_and_a_cluster_address_reach_the_run_config(tiny_llama_dir: Path) -> None:
    from cluster.run_options import build_run_config

    flags = {"model": str(tiny_llama_dir), "address": "ray://10.0.0.5:10001", "allow_remote_address": True}
    config = build_run_config(flags)
    assert (config.address, config.allow_remote_address) == ("ray://10.0.0.5:10001", True)
    gcs = build_run_config({"model": str(tiny_llama_dir), "address": "10.0.0.5:6379"})
    assert (gcs.address, gcs.allow_remote_address) == ("10.0.0.5:6379", False)
    with pytest.raises(AddressError, match="refusing Ray Client address"):
        dataclasses.replace(config, allow_remote_address=False)  # RunConfig checks it too


# trust_remote_code.


def test_trust_remote_code_is_off_by_default_and_no_run_option_turns_it_on() -> None:
    from cluster.config import RunConfig
    from cluster.run_options import DEFAULTS
    from laserkv.api import RecursiveCompressionEngine
    from laserkv.modeling import load_model_and_tokenizer, load_tokenizer

    for loader in (load_tokenizer, load_model_and_tokenizer, RecursiveCompressionEngine):
        assert inspect.signature(loader).parameters["trust_remote_code"].default is False, loader
    assert "trust_remote_code" not in DEFAULTS  # the CLI and the job pass run options only
    assert "trust_remote_code" not in {field.name for field in dataclasses.fields(RunConfig)}


MARKER_CODE = """from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

Path({marker!r}).write_text("the checkpoint's own code ran")


class MarkerConfig(LlamaConfig):
    pass


class MarkerForCausalLM(LlamaForCausalLM):
    config_class = MarkerConfig
"""
LOADS = """
import json, sys
from pathlib import Path
from cluster.worker import EvalWorker
from laserkv.api import RecursiveCompressionEngine
from laserkv.modeling import load_model_and_tokenizer, load_tokenizer

model_dir, marker = sys.argv[1], Path(sys.argv[2])
worker = EvalWorker(model_dir, "cpu", "float32", "run")  # the cluster path, as a Ray actor runs it
load_tokenizer(model_dir)  # the driver's
engine = RecursiveCompressionEngine(model_dir, device="cpu")  # the Python API
seen = {"worker": worker.start_error() or type(worker.model).__name__,
        "engine": type(engine.model).__name__, "ran_by_default": marker.exists()}
trusted, _ = load_model_and_tokenizer(model_dir, device="cpu", trust_remote_code=True)
seen.update(trusted=type(trusted).__name__, ran_when_asked=marker.exists())
print(json.dumps(seen))
"""


def test_a_checkpoint_with_its_own_code_loads_without_running_it(tmp_path: Path) -> None:
    """A tiny checkpoint whose config maps to code shipped with it (``auto_map``), code that
    leaves a file when it runs. The worker, the driver's tokenizer and the Python API load it
    with transformers' own Llama classes; only ``trust_remote_code=True`` runs it (the control
    that shows the marker works). In another process, with its own ``HF_MODULES_CACHE``."""
    model_dir, marker = tmp_path / "model", tmp_path / "remote-code-ran"
    build_model(model_dir, "llama")
    (model_dir / "marker_code.py").write_text(MARKER_CODE.format(marker=str(marker)))
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "marker_code.MarkerConfig",
        "AutoModelForCausalLM": "marker_code.MarkerForCausalLM",
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", LOADS, str(model_dir), str(marker)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "worker": "LlamaForCausalLM",
        "engine": "LlamaForCausalLM",
        "ran_by_default": False,
        "trusted": "MarkerForCausalLM",
        "ran_when_asked": True,
    }
