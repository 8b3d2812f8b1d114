"""Method registry: name -> factory of a fresh, frozen ``MethodConfig``, and building a method
from flat parameters (``build_method``), the form overrides, sweep grids and result rows use.

Holds LASER-KV (``laser``), the ablation grid of the original README and the baselines; they
all run through the same engine. Unknown names fail with the nearest valid names; any
registered method can be overridden parameter by parameter. ``scripts/update_readme_methods.py``
writes the methods page's listing (``docs/methods.md``) from this registry.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable

from laserkv.config import ENGINE_FIELDS, EngineConfig, MethodConfig
from laserkv.errors import ConfigError, MissingPackageError
from laserkv.selectors import PART_KEYS, build_selector, is_press_param, selector_param_names
from laserkv.selectors.kvpress import PRESSES

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
ORIGINAL_FIELDS: dict[str, object] = {
    "score_norm": "window",
    "faithful_empty_block": True,
    "faithful_hybrid": True,
}
"""What LASER-KV as the original code shipped it (``laser_original``) sets away from ``laser``."""
SNAPKV_LASER_SPLIT_FIELDS: dict[str, object] = {
    "selector": "exact",
    "query_source": "window",
    "observation_window": 64,  # kvpress SnapKVPress defaults, the original's baseline library
    "score_pooling": 5,
    "granularity": "head",
    "compression_mode": "recursive",
}
FIXED_SLOTS: dict[str, object] = {"protection_divisor": None, "compression_mode": "recursive"}
"""The rivals' published budget splits are fixed slots (``anchor_tokens`` / ``local_tokens`` /
``local_fraction``), and their caches stay within the budget (recursive mode)."""
RIVALS: dict[str, tuple[str, dict[str, object]]] = {
    "snapkv": (
        "SnapKV as published: the prompt's last 32 tokens (the question's) score, avgpool 5, per KV head",
        {"selector": "snapkv", "query_source": "question"},
    ),
    "snapkv_agnostic": (
        "SnapKV query-agnostic: each block's last 32 tokens score and are kept, avgpool 5, per KV head",
        {"selector": "snapkv", "query_source": "window", "local_tokens": 32},
    ),
    "streaming": (
        "StreamingLLM: 4 sink tokens plus the most recent tokens",
        {"selector": "recency", "anchor_tokens": 4},
    ),
    "h2o": (
        "H2O: heavy hitters by accumulated attention (half the budget) plus a recent window (half)",
        {"selector": "h2o", "local_fraction": 0.5},
    ),
    "tova": (
        "TOVA: the question's last token's attention, heads averaged, per layer",
        {"selector": "tova", "query_source": "question"},
    ),
    "tova_agnostic": (
        "TOVA query-agnostic: each block's last token's attention (that token kept), per layer",
        {"selector": "tova", "query_source": "window", "local_tokens": 1},
    ),
}
"""The published rivals, natively in the block engine (sources in each selector's docstring)."""
KVPRESS_PREFIX = "kvpress:"
QUERY_AWARE_SUFFIX = "_query_aware"

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
    unknown = sorted(name for name in set(params) - known_param_names() if not is_press_param(name))
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
    if "press" in changes:  # another press: the old press's own parameters do not carry over
        current = {name: value for name, value in current.items() if not is_press_param(name)}
    if not changes.keys() & {"selector", *PART_KEYS}:
        return method_from_params(method.name, {**current, **changes})
    declared = method_from_params(method.name, {**current, **changes}, lenient=True).params()
    kept = {name: value for name, value in current.items() if name in declared}
    return method_from_params(method.name, {**kept, **changes})


def register(name: str, description: str, **fields: object) -> None:
    """Add a method: ``name`` -> ``build_method(name, **fields)``; backend ``flash`` unless given.
    It is built once now, so that a bad registration fails at import."""
    fields.setdefault("backend", "flash")
    build_method(name, **fields)
    register_unchecked(name, description, fields)


def register_unchecked(name: str, description: str, fields: dict[str, object]) -> None:
    """``register`` without building the method now (kvpress methods: building one imports kvpress;
    ``tests/test_rivals.py`` builds every one)."""
    fields.setdefault("backend", "flash")
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
    register(
        "laser_pooled",
        "LASER-KV with its exact scores average-pooled over 7 neighbouring slots: better on needle "
        "retrieval, the same on word answers (docs/quality.md, quality v2)",
        **{**LASER_FIELDS, "score_pooling": 7},
    )
    register(
        "laser_original",
        "LASER-KV as the original code ran it (its LASER-KV setting): laser's settings with the flash "
        "path's scores normalised over the scored window only (score_norm window), the whole selection "
        "skipped for a block without candidates of its own (faithful_empty_block), unused hybrid slots "
        "left empty (faithful_hybrid) and the accumulate ratio-to-budget rule; laser has the fixes",
        **{**LASER_FIELDS, **ORIGINAL_FIELDS},
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
        "streaming_laser_split",
        "the first release's 'streaming': B/4 anchors plus the most recent tokens (recursive)",
        selector="recency",
        compression_mode="recursive",
    )
    register(
        "snapkv_laser_split",
        "the first release's 'snapkv': query-agnostic scores from each block's last 64 tokens, pooled "
        "(kernel 5), per KV head, with LASER-KV's split (B/4 anchors, B/4 local), recursive",
        **SNAPKV_LASER_SPLIT_FIELDS,
    )
    for name, (description, fields) in RIVALS.items():
        register(name, description, **{**FIXED_SLOTS, **fields})
    for press in PRESSES:
        press_fields: dict[str, object] = {"selector": "kvpress", "press": press, **FIXED_SLOTS}
        outside = f"kvpress {press}, the question outside the compression"
        register_unchecked(f"{KVPRESS_PREFIX}{press}", outside, dict(press_fields))
        inside = f"kvpress {press}, the question compressed with the context"
        register_unchecked(
            f"{KVPRESS_PREFIX}{press}{QUERY_AWARE_SUFFIX}", inside, {**press_fields, "query_aware": True}
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


def split_summary(config: MethodConfig) -> str:
    """How the method shares its budget out, in words (``-`` for the full cache)."""
    engine = config.engine
    if not config.selector.evicts:
        return "-"
    if config.selector.prefill != "blocks":
        return "the press's own"
    if engine.protection_divisor is not None:
        n = engine.protection_divisor
        return f"B/{n} anchors, B/{n} local, rest global"
    parts = []
    if engine.anchor_tokens:
        parts.append(f"{engine.anchor_tokens} anchors")
    local = [str(engine.local_tokens)] if engine.local_tokens else []
    if engine.local_fraction:
        local.append(f"{engine.local_fraction:g}B")
    if local:
        parts.append(" + ".join(local) + " local")
    return ", ".join([*parts, "rest global"]) if parts else "all global"


LISTING_COLUMNS = (
    "method", "selector", "protocol", "budget split", "mode", "default budget", "config hash", "source",
    "what it is",
)  # fmt: skip


def method_listing() -> list[tuple[str, ...]]:
    """One row (``LISTING_COLUMNS``) per registered method. A kvpress method whose package is
    not installed is listed with the set-up command instead of its settings."""
    rows: list[tuple[str, ...]] = []
    for name in METHODS:
        try:
            config = METHODS[name]()
        except MissingPackageError as error:
            rows.append((name, "kvpress", "-", "-", "-", "-", "-", str(error), DESCRIPTIONS[name]))
            continue
        mode = (
            config.engine.compression_mode
            if config.selector.evicts and config.selector.prefill == "blocks"
            else "-"
        )
        rows.append(
            (
                name,
                config.selector.summary(),
                config.selector.protocol if config.selector.evicts else "-",
                split_summary(config),
                mode,
                _budget_cell(config),
                config.config_hash,
                config.selector.source or "-",
                DESCRIPTIONS[name],
            )
        )
    return rows
