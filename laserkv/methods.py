"""Method registry: name -> factory of a fresh, frozen ``MethodConfig``, and building a method
from flat parameters (``build_method``), the form overrides, sweep grids and result rows use.

Holds LASER-KV (``laser``), the ablation grid of the original README and the baselines; they
all run through the same engine. Unknown names fail with the nearest valid names; any
registered method can be overridden parameter by parameter. ``scripts/update_readme_methods.py``
writes the README's method table from this registry.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable

from laserkv.config import ENGINE_FIELDS, EngineConfig, MethodConfig
from laserkv.errors import ConfigError
from laserkv.selectors import PART_KEYS, build_selector, selector_param_names

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


def known_param_names() -> set[str]:
    """Every flat parameter name: ``selector``, the engine fields, every selector's parameters."""
    return {"selector", *ENGINE_FIELDS, *selector_param_names()}


def build_method(name: str = "custom", **params: object) -> MethodConfig:
    """A method from flat parameters: ``selector`` (default ``exact``), engine fields, and the
    selector's own parameters (a hybrid's parts: ``hybrid_primary`` / ``hybrid_secondary``).

    Raises:
        ConfigError: an unknown parameter, one the selector does not take, or a bad value.
    """
    return method_from_params(name, params)


def method_from_params(name: str, params: dict[str, object], lenient: bool = False) -> MethodConfig:
    """``build_method`` with the parameters as a dict.

    Args:
        lenient: drop known parameters the chosen selector does not declare, instead of failing
            (for callers that pass one full set of options whatever the selector).

    Raises:
        ConfigError: an unknown parameter, one the selector does not take, or a bad value.
    """
    unknown = sorted(set(params) - known_param_names())
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known_param_names()), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            "override", unknown[0], f"{hint}a method parameter: {', '.join(sorted(known_param_names()))}"
        )
    kind = params.get("selector", "exact")
    selector, used = build_selector(kind, params)
    engine_params = {field: params[field] for field in ENGINE_FIELDS if field in params}
    unused = sorted(set(params) - used - set(engine_params) - {"selector"})
    if unused and not lenient:
        raise ConfigError(
            unused[0], params[unused[0]], f"a parameter of selector {selector.summary()!r} or the engine"
        )
    return MethodConfig(name, selector, EngineConfig(**engine_params))  # type: ignore[arg-type]


def with_params(method: MethodConfig, **changes: object) -> MethodConfig:
    """``method`` with some flat parameters changed (validated again).

    Setting ``budget`` clears ``compression_ratio`` and the other way round; changing the
    selector's kind (or a hybrid's part) keeps only the old parameters the new selector declares.

    Raises:
        ConfigError: an unknown parameter, one the selector does not take, or a bad value.
    """
    if method.selector.evicts and changes.keys() & {"budget", "compression_ratio"}:
        changes.setdefault("budget", None)
        changes.setdefault("compression_ratio", None)
    current = method.params()
    if not changes.keys() & {"selector", *PART_KEYS}:
        return method_from_params(method.name, {**current, **changes})
    declared = method_from_params(method.name, {**current, **changes}, lenient=True).params()
    kept = {name: value for name, value in current.items() if name in declared}
    return method_from_params(method.name, {**kept, **changes})


def register(name: str, description: str, **fields: object) -> None:
    """Add a method: ``name`` -> ``build_method(name, **fields)``; backend ``flash`` unless given."""
    fields.setdefault("backend", "flash")
    build_method(name, **fields)  # fail at import on a bad registration
    METHODS[name] = functools.partial(build_method, name, **fields)
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
    """A fresh config of the registered method ``name``, with flat parameters overridden.

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
    return with_params(config, **overrides) if overrides else config


def _budget_cell(config: MethodConfig) -> str:
    engine = config.engine
    if engine.budget is None and engine.compression_ratio is None:
        return "none"
    return f"r={engine.compression_ratio}" if engine.budget is None else f"B={engine.budget}"


def methods_markdown() -> str:
    """The registry as a markdown table (name, selector, mode, budget, hash, description)."""
    lines = [
        "| method | selector | mode | default budget | config hash | what it is |",
        "|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        config = METHODS[name]()
        mode = config.engine.compression_mode if config.selector.evicts else "-"
        lines.append(
            f"| `{name}` | {config.selector.summary()} | {mode} | {_budget_cell(config)} "
            f"| `{config.config_hash}` | {DESCRIPTIONS[name]} |"
        )
    return "\n".join(lines) + "\n"
