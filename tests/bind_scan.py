"""A static scan for where the repository's scripts and launcher config start Ray listening:
the dashboard and job API (``--dashboard-host``, ``dashboard_host=``) and the node address the
GCS and the Ray Client server bind to (``--node-ip-address``, ``_node_ip_address=``).

A bind is fine when its value is loopback (``cluster.address.is_loopback_host``). The one
opt-in is a value the user passes explicitly, defaulting to loopback: ``${NAME:-127.0.0.1}`` in
shell, ``os.environ.get("NAME", "127.0.0.1")`` in Python. Anything else (0.0.0.0, ``::``, a
public IP, a host name, a variable that cannot be traced to a literal) is a finding. Nothing is
run: shell text is matched line by line, Python is read with ``ast`` (string literals,
f-strings, names traced to their assignments, keyword arguments, ``[flag, value]`` lists).
"""

from __future__ import annotations

import ast
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cluster.address import is_loopback_host

SHELL_FLAGS = ("--dashboard-host", "--node-ip-address")
PYTHON_KEYWORDS = ("dashboard_host", "_node_ip_address", "node_ip_address")
UNRESOLVED = "$UNRESOLVED"
SHELL_BIND = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, SHELL_FLAGS)) + r")(?:=|\s+)(\S+)")
OPT_IN = re.compile(r"^\$\{(\w+):?-([^}]*)\}$")
MAX_VALUES = 64
SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".yaml", ".yml")


@dataclass(frozen=True)
class Bind:
    """One place Ray is told where to listen.

    Attributes:
        where: ``path:line`` (or a label for a string scanned on its own).
        flag: the flag or keyword, e.g. ``--dashboard-host``.
        value: the address it binds to (the default, for an opt-in); None when not traceable.
        opt_in: the variable the user sets to bind elsewhere, if the value is an opt-in.
    """

    where: str
    flag: str
    value: str | None
    opt_in: str | None = None

    @property
    def loopback(self) -> bool:
        """Whether this bind stays on the machine unless the user opts in."""
        return self.value is not None and is_loopback_host(self.value)


def judge_value(where: str, flag: str, raw: str) -> Bind:
    """The bind of ``flag`` to ``raw``, a shell word (quotes and an opt-in default resolved)."""
    value = raw.rstrip(";,)").strip("'\"")
    opt_in = OPT_IN.match(value)
    if opt_in:
        return Bind(where, flag, opt_in.group(2).strip("'\""), opt_in.group(1))
    return Bind(where, flag, None if "$" in value or "{" in value else value)


def scan_shell(text: str, where: str = "<text>") -> list[Bind]:
    """Every bind in shell text (a script, a YAML command); ``#`` comment lines are skipped."""
    binds = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        for match in SHELL_BIND.finditer(line):
            binds.append(judge_value(f"{where}:{number}", match.group(1), match.group(2)))
    return binds


class _PythonScan:
    """The string values a Python module can build, as far as literals and names show them."""

    def __init__(self, tree: ast.Module) -> None:
        self.assigned: dict[str, list[ast.expr]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.assigned.setdefault(target.id, []).append(node.value)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                self.assigned.setdefault(node.target.id, []).append(node.value)

    def values(self, node: ast.expr, depth: int = 0) -> set[str]:
        """The strings ``node`` may evaluate to; ``UNRESOLVED`` stands for what cannot be traced.
        An environment lookup with a default (``os.environ.get("X", "d")``) gives ``${X:-d}``."""
        if depth > 8:
            return {UNRESOLVED}
        if isinstance(node, ast.Constant):
            return {str(node.value)}
        if isinstance(node, ast.JoinedStr):
            return self._concat([self.values(part, depth + 1) for part in node.values])
        if isinstance(node, ast.FormattedValue):
            return self.values(node.value, depth + 1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._concat([self.values(node.left, depth + 1), self.values(node.right, depth + 1)])
        if isinstance(node, ast.IfExp):
            return self.values(node.body, depth + 1) | self.values(node.orelse, depth + 1)
        if isinstance(node, ast.Name) and node.id in self.assigned:
            return set().union(*(self.values(value, depth + 1) for value in self.assigned[node.id]))
        environment = _environment_default(node)
        return {environment} if environment else {UNRESOLVED}

    @staticmethod
    def _concat(parts: list[set[str]]) -> set[str]:
        joined = {"".join(choice) for choice in itertools.islice(itertools.product(*parts), MAX_VALUES)}
        return joined or {UNRESOLVED}


def _environment_default(node: ast.expr) -> str | None:
    """``${NAME:-default}`` for ``os.environ.get("NAME", "default")`` / ``os.getenv``, else None."""
    if not isinstance(node, ast.Call):
        return None
    literals = [
        arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    ]
    if len(literals) == len(node.args) == 2 and ast.unparse(node.func) in ("os.environ.get", "os.getenv"):
        return f"${{{literals[0]}:-{literals[1]}}}"
    return None


def _is_string_expression(node: ast.AST) -> bool:
    """A string literal, an f-string or a ``+`` (of strings, as far as the scan cares)."""
    literal = isinstance(node, ast.Constant) and isinstance(node.value, str)
    concatenation = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
    return literal or concatenation or isinstance(node, ast.JoinedStr)


def _string_expressions(tree: ast.Module) -> Iterator[ast.expr]:
    """Every outermost string expression, not the pieces inside one (read as part of it)."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inner.update(id(part) for part in node.values)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            inner.update((id(node.left), id(node.right)))
    for node in ast.walk(tree):
        if isinstance(node, ast.expr) and _is_string_expression(node) and id(node) not in inner:
            yield node


def scan_python(source: str, where: str = "<python>") -> list[Bind]:
    """Every bind in Python source: bind flags in strings (commands for ``ray start``), a bind
    flag followed by its value in a list, and ``dashboard_host=`` / ``_node_ip_address=`` keywords."""
    tree = ast.parse(source)
    scan = _PythonScan(tree)
    binds: list[Bind] = []
    for expression in _string_expressions(tree):
        for text in sorted(scan.values(expression)):
            binds += scan_shell(text, f"{where}:{expression.lineno}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple)):
            for flag_node, value_node in itertools.pairwise(node.elts):
                if scan.values(flag_node) & set(SHELL_FLAGS):
                    flag = next(iter(scan.values(flag_node) & set(SHELL_FLAGS)))
                    for value in sorted(scan.values(value_node) - set(SHELL_FLAGS)):  # a flag is no value
                        binds.append(judge_value(f"{where}:{value_node.lineno}", flag, value))
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in PYTHON_KEYWORDS:
                    for value in sorted(scan.values(keyword.value)):
                        binds.append(judge_value(f"{where}:{keyword.value.lineno}", keyword.arg, value))
    return binds


def scan_file(path: Path, root: Path) -> list[Bind]:
    """The binds of one file: Python read as Python, anything else as shell text."""
    where = str(path.relative_to(root))
    text = path.read_text(errors="replace")
    return scan_python(text, where) if path.suffix == ".py" else scan_shell(text, where)


def _scanned(folder: str, top: bool) -> bool:
    """Whether the walk enters ``folder``: not hidden (but ``.ci``), no cache, no ``results/``."""
    hidden = folder.startswith(".") and folder != ".ci"
    return not hidden and folder != "__pycache__" and not (top and folder == "results")


def repository_scripts(root: Path, skip: tuple[Path, ...] = ()) -> list[Path]:
    """The files that could start Ray: ``*.py``, ``*.sh``, ``*.bash``, ``*.yaml``, ``*.yml`` and
    ``.ci/*``, outside hidden folders (``.venv``, ``.git``; ``.ci`` is scanned), ``results/`` and
    ``__pycache__``."""
    skipped = {path.resolve() for path in skip}
    found = []
    for folder, subfolders, names in os.walk(root):
        top = Path(folder) == root
        subfolders[:] = sorted(name for name in subfolders if _scanned(name, top))
        in_ci = Path(folder).relative_to(root).parts[:1] == (".ci",)
        for name in sorted(names):
            path = Path(folder) / name
            if (path.suffix in SCRIPT_SUFFIXES or in_ci) and path.resolve() not in skipped:
                found.append(path)
    return found
