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


def test_evals_never_imports_torch_or_the_engine() -> None:
    for path in (REPO / "evals").rglob("*.py"):
        text = path.read_text()
        for forbidden in (
            "import torch",
            "from torch",
            "import laserkv",
            "from laserkv",
            "import transformers",
        ):
            assert forbidden not in text, (path, forbidden)


def test_official_prompt_data_ships_unchanged() -> None:
    """evals/data holds the files of shared/spec/data byte for byte (when that checkout is beside us)."""
    spec = REPO.parent / "shared" / "spec" / "data"
    if not spec.exists():
        pytest.skip("shared/spec/data is not beside this checkout")
    for source in spec.iterdir():
        assert (REPO / "evals" / "data" / source.name).read_bytes() == source.read_bytes(), source.name
