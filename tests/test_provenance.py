"""A run's manifest names the commit of the code that ran: the checkout's HEAD, or, for a
``git archive`` export (how GPU machines get the code, often copied inside another repository's
tree), the commit the archive wrote into ``cluster/export_commit.txt``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.writer import git_sha

REPO = Path(__file__).resolve().parents[1]


def head() -> str:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_a_checkout_records_its_head() -> None:
    assert git_sha() == head()


def test_an_export_inside_another_repository_records_the_exported_commit(tmp_path: Path) -> None:
    commit = head()
    other = tmp_path / "other"  # a repository whose tree holds the export in an untracked folder
    export = other / "kit" / "src"
    export.mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    (other / "README").write_text("another project\n")
    subprocess.run([*git, "add", "README"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=other, check=True)
    archive = subprocess.run(["git", "archive", "HEAD", "cluster", "laserkv", "evals"], cwd=REPO,
                             capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x"], cwd=export, input=archive, check=True)
    environment = {**os.environ, "PYTHONPATH": str(export)}
    code = "from cluster.writer import git_sha; print(git_sha())"
    found = subprocess.run([sys.executable, "-c", code], cwd=export, env=environment, capture_output=True,
                           text=True, check=True)  # fmt: skip
    assert found.stdout.strip() == commit
