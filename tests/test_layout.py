"""The packages resolve to this repository, not to same-named PyPI distributions, and import each
other without a cycle."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["laserkv", "evals", "cluster", "cli", "analysis", "reports"])
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


PACKAGES = ("laserkv", "evals", "cluster", "cli", "analysis", "reports", "benchmarks")


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in the file, deferred imports included;
    ``if TYPE_CHECKING`` blocks left out: they never run)."""
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: list[str] = []
        pending: list[ast.AST] = [ast.parse(path.read_text())]
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # ``from pkg import module`` imports that module
                    full = f"{node.module}.{alias.name}"
                    found.append(full if full in modules else node.module)
            pending.extend(ast.iter_child_nodes(node))
        graph[name] = {target for target in map(resolve, found) if target and target != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (depth-first search), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_packages_have_no_import_cycle() -> None:
    graph = import_graph()
    assert "laserkv.config" in graph and "laserkv.methods" in graph["cluster.presets"]
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check can fail
