"""The official prompt data shipped in ``evals/data`` (sources and licences in SOURCES.md)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


def data_text(name: str) -> str:
    """The exact text of ``evals/data/<name>`` (no newline added or removed)."""
    return resources.files("evals").joinpath("data").joinpath(name).read_text(encoding="utf-8")


@cache
def data_json(name: str) -> Any:
    """``evals/data/<name>`` parsed as JSON (cached; treat as read-only)."""
    return json.loads(data_text(name))
