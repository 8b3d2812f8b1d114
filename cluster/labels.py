"""Method labels of result rows (pure strings; no torch): a sweep labels each expanded method
``name[field=value,...]``."""

from __future__ import annotations


def base_name(label: str) -> str:
    """The registered method of a sweep label: ``laser[budget=1024]`` -> ``laser``."""
    return label.split("[")[0]


def sweep_label(name: str, changes: dict[str, object]) -> str:
    """``name`` with its changed parameters, sorted: ``laser`` + {budget: 512} -> ``laser[budget=512]``."""
    if not changes:
        return name
    return name + "[" + ",".join(f"{field}={value}" for field, value in sorted(changes.items())) + "]"
