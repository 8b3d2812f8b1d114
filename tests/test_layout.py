"""The four packages resolve to this repository, not to same-named PyPI distributions."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["laserkv", "evals", "cluster", "cli"])
def test_package_resolves_inside_repo(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / package


def test_engine_never_imports_ray_or_evals() -> None:
    for path in (REPO / "laserkv").rglob("*.py"):
        text = path.read_text()
        assert "import ray" not in text and "from evals" not in text and "import evals" not in text, path
