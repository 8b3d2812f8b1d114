"""Method registry: name -> factory of a fresh, frozen ``MethodConfig``.

Holds LASER-KV (``laser``), the ablation grid of the original README and the baselines; they
all run through the same engine. Unknown names fail with the nearest valid names; any
registered method can be overridden field by field. ``scripts/update_readme_methods.py`` writes
the README's method table from this registry.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable

from laserkv.config import MethodConfig
from laserkv.errors import ConfigError

MethodFactory = Callable[[], MethodConfig]

LSH_MODES_BY_NAME = {"frequency_rank": "frequency_rank", "magicpig": "magicpig_baseline"}
HYBRID_RATIOS = (0.5, 0.75)
LASER_FIELDS: dict[str, object] = {
    "selector": "hybrid",
    "hybrid_primary": "exact",
    "hybrid_secondary": "lsh",
    "lsh_mode": "magicpig_baseline",
    "hybrid_ratio": 0.75,
    "compression_mode": "accumulate",
    "protection_divisor": 4,
    "block_size": 4096,
    "backend": "flash",
}
SNAPKV_FIELDS: dict[str, object] = {
    "selector": "exact",
    "query_source": "window",
    "observation_window": 64,  # kvpress SnapKVPress defaults, the original's baseline library
    "score_pooling": 5,
    "granularity": "head",
    "compression_mode": "recursive",
}

METHODS: dict[str, MethodFactory] = {}
DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str, **fields: object) -> None:
    """Add a method: ``name`` -> ``MethodConfig(name=name, **fields)``; backend ``flash`` unless given."""
    fields.setdefault("backend", "flash")
    METHODS[name] = functools.partial(MethodConfig, name=name, **fields)  # type: ignore[arg-type]
    DESCRIPTIONS[name] = description


def _suffix(mode: str) -> str:
    return "_recursive" if mode == "recursive" else ""


def _register_all() -> None:
    register(
        "laser",
        "LASER-KV: hybrid exact + LSH magicpig, rho 0.75, accumulate, n 4, block 4096",
        **LASER_FIELDS,
    )
    register(
        "laser_recursive",
        "LASER-KV in recursive mode: the cache stays within the budget",
        **{**LASER_FIELDS, "compression_mode": "recursive"},
    )
    for mode in ("accumulate", "recursive"):
        register(
            f"exact{_suffix(mode)}",
            f"exact question-attention scores, {mode}",
            compression_mode=mode,
        )
    for short, lsh_mode in LSH_MODES_BY_NAME.items():
        for mode in ("accumulate", "recursive"):
            register(
                f"lsh_{short}{_suffix(mode)}",
                f"LSH {lsh_mode} on last-layer keys (K 10, L 8), {mode}",
                selector="lsh",
                lsh_mode=lsh_mode,
                compression_mode=mode,
            )
    for short, lsh_mode in LSH_MODES_BY_NAME.items():
        for ratio in HYBRID_RATIOS:
            for mode in ("accumulate", "recursive"):
                register(
                    f"hybrid_{short}_{ratio}{_suffix(mode)}",
                    f"hybrid: exact takes {ratio:.0%} of the global part, LSH {lsh_mode} the rest, {mode}",
                    **{**LASER_FIELDS, "lsh_mode": lsh_mode, "hybrid_ratio": ratio, "compression_mode": mode},
                )
    register(
        "full", "baseline: no compression, the whole context stays in the cache", selector="none", budget=None
    )
    register(
        "streaming",
        "baseline, StreamingLLM: anchors plus the most recent tokens, budget B (recursive)",
        selector="recency",
        compression_mode="recursive",
    )
    register(
        "snapkv",
        "baseline, SnapKV: query-agnostic scores from each block's last 64 tokens, pooled (kernel 5), "
        "per KV head, recursive",
        **SNAPKV_FIELDS,
    )


_register_all()


def get_method(name: str, **overrides: object) -> MethodConfig:
    """A fresh config of the registered method ``name``, with fields overridden.

    Setting ``budget`` clears ``compression_ratio`` and the other way round, so
    ``get_method("laser", budget=2048)`` works whichever one the method carries.

    Raises:
        ConfigError: unknown name (the message names the closest ones) or a bad override.
    """
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError("method", name, f"{hint}registered methods: {', '.join(METHODS)}")
    config = METHODS[name]()
    if not overrides:
        return config
    unknown = sorted(set(overrides) - set(config.to_dict()))
    if unknown:
        raise ConfigError("override", unknown[0], f"a MethodConfig field: {', '.join(config.to_dict())}")
    changes = dict(overrides)
    if config.selector != "none" and changes.keys() & {"budget", "compression_ratio"}:
        changes.setdefault("budget", None)
        changes.setdefault("compression_ratio", None)
    return config.replace(**changes)


def _budget_cell(config: MethodConfig) -> str:
    if config.budget is None and config.compression_ratio is None:
        return "none"
    return f"r={config.compression_ratio}" if config.budget is None else f"B={config.budget}"


def methods_markdown() -> str:
    """The registry as a markdown table (name, selector, mode, budget, hash, description)."""
    lines = [
        "| method | selector | mode | default budget | config hash | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        config = METHODS[name]()
        selector = config.selector
        if config.selector == "lsh":
            selector = f"lsh {config.lsh_mode}"
        elif config.selector == "hybrid":
            selector = f"hybrid {config.hybrid_primary}+{config.lsh_mode} rho {config.hybrid_ratio}"
        mode = "-" if config.selector == "none" else config.compression_mode
        lines.append(
            f"| `{name}` | {selector} | {mode} | {_budget_cell(config)} | `{config.config_hash}` "
            f"| {DESCRIPTIONS[name]} |"
        )
    return "\n".join(lines) + "\n"
