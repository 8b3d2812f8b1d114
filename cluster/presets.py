"""Method lists for runs: registered methods with parameter overrides and sweep grids (a preset
or a YAML file). The embedded default run is in ``cluster.run_options``."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from cluster.labels import sweep_label
from cluster.options import OPTIONS, load_yaml, refused
from laserkv.config import MethodConfig
from laserkv.errors import ConfigError
from laserkv.methods import KVPRESS_PREFIX, QUERY_AWARE_SUFFIX, get_method

QUALITY_METHODS = (
    "laser", "laser_recursive", "exact", "lsh_frequency_rank", "lsh_magicpig", "streaming_laser_split",
    "snapkv_laser_split",
)  # fmt: skip
"""Issue 8's study (its rivals are the first release's ``streaming`` / ``snapkv``, renamed)."""
PUBLISHED_RIVALS = ("snapkv", "snapkv_agnostic", "streaming", "h2o", "tova", "tova_agnostic")
"""The native rivals of the published ``rivals`` and ``quality-v2`` grids, fixed: registering a new
rival (``laserkv.methods.RIVALS``) does not change a grid that results were published for."""
RIVAL_PRESSES = (
    "snapkv", "pyramidkv", "adakv_snapkv", "expected_attention", "knorm", "tova", "streaming_llm",
)  # fmt: skip
"""kvpress presses in the ``rivals`` grid, each with the question outside and inside."""
RIVAL_METHODS = (
    "laser",
    "laser_recursive",
    *PUBLISHED_RIVALS,
    *(f"{KVPRESS_PREFIX}{press}{suffix}" for press in RIVAL_PRESSES for suffix in ("", QUERY_AWARE_SUFFIX)),
)
QUALITY_BUDGETS = (256, 512, 1024, 2048)
QUALITY_V2_RATIOS = (0.25, 0.125)
"""Issue 20's budgets: the fraction of each context kept (the original's RULER settings)."""
QUALITY_V2_PRESSES = ("snapkv", "pyramidkv", "expected_attention", "tova")
QUALITY_V2_ABLATION = ("exact", "lsh_magicpig")
"""LASER-KV's two selectors alone (its hybrid keeps 0.75 of the budget by exact scores, the rest by
magicpig LSH): issue 20's exact vs LSH vs hybrid ablation."""
QUALITY_V2_METHODS = (
    "laser",
    "laser_recursive",
    *QUALITY_V2_ABLATION,
    *PUBLISHED_RIVALS,
    *(f"{KVPRESS_PREFIX}{press}" for press in QUALITY_V2_PRESSES),
)
"""Issue 20's study: LASER-KV (accumulate, recursive, each selector alone), every native rival in
both protocols, four kvpress presses."""
QUALITY_V3_RATIOS = (0.25, 0.125)
"""Issue 36's main budgets: the fraction of each context kept, as in issue 20 (``quality-v2``)."""
QUALITY_V3_CURVE_RATIOS = (0.5, 0.0625)
"""Issue 36's curve: LASER-KV and SnapKV also at r = 0.5 and r = 0.0625."""
QUALITY_V3_REGIME_BLOCK = 1024
QUALITY_V3_ONE_SHOT_BLOCK = 131072
"""A block at least as long as every v3 context (16k, 32k): one prefill, one compression."""
QUALITY_V3_EQUAL_TOKENS: dict[str, object] = {"budget_rule": "exact"}
"""LASER-KV keeping exactly floor(r T) tokens, the rivals' count (issue 35's equal tokens)."""
"""Issue 36's regime control: LASER-KV and SnapKV at r = 0.25 with blocks of 1024 tokens (a 16k
context is then compressed over 16 blocks instead of 4)."""
QUALITY_V3_METHODS = (
    "laser",
    "exact",
    "snapkv",
    f"{KVPRESS_PREFIX}snapkv{QUERY_AWARE_SUFFIX}",
    f"{KVPRESS_PREFIX}expected_attention{QUERY_AWARE_SUFFIX}",
    f"{KVPRESS_PREFIX}snapkv",
    "streaming",
)
"""Issue 36's methods at both main budgets: LASER-KV, its exact selector alone, SnapKV natively
(query-aware), kvpress's SnapKV and Expected Attention with the question compressed with the
context (query-aware), kvpress's SnapKV with the question outside (query-agnostic, issue 20's
reference) and StreamingLLM."""
QUALITY_V3_AS_SHIPPED: dict[str, object] = {
    "score_norm": "window",
    "faithful_empty_block": True,
    "faithful_hybrid": True,
}
"""LASER-KV as the original code shipped it: the flash scorer normalised over its scored window
only, the whole selection skipped for a block with no candidates of its own, and the exact
selector's unused slots left empty in the hybrid."""
GridEntry = dict[str, Any]
MAX_GRID_CONFIGS = 10_000
"""The most configurations a grid expands to (counted before any is built): 300 times the largest
published grid (33), while a mistyped grid of millions is refused at once."""
FLAGS = {
    declared.option.method_param: declared.flag
    for declared in OPTIONS.values()
    if declared.option.method_param
}
"""The flag of each method parameter a run option overrides (``cluster.options``)."""
FIRST_RELEASE_BASELINES = ("full", "streaming_laser_split", "snapkv_laser_split")
"""The first release's baselines (``streaming`` / ``snapkv`` then; same hashes, so resuming a grid
of that release reruns nothing)."""
ABLATION_METHODS = (
    *(
        f"{selector}{mode}"
        for selector in ("exact", "lsh_frequency_rank", "lsh_magicpig")
        for mode in ("", "_recursive")
    ),
    *(
        f"hybrid_{lsh}_{ratio}{mode}"
        for lsh in ("frequency_rank", "magicpig")
        for ratio in ("0.5", "0.75")
        for mode in ("", "_recursive")
    ),
)
"""The original README's grid, fixed (exact / LSH / hybrid x modes)."""
SWEEP_PRESETS: dict[str, tuple[GridEntry, ...]] = {
    "ablation": tuple({"method": name} for name in (*ABLATION_METHODS, *FIRST_RELEASE_BASELINES)),
    "laser-budgets": tuple(
        {"method": name} for name in ("full", "laser", "laser_recursive", *FIRST_RELEASE_BASELINES[1:])
    ),
    "rivals": ({"method": "full"}, *({"method": name} for name in RIVAL_METHODS)),
    "quality": (
        {"method": "full"},
        *({"method": name, "budget": list(QUALITY_BUDGETS)} for name in QUALITY_METHODS),
    ),
    "quality-v2": (
        {"method": "full"},
        *({"method": name, "compression_ratio": list(QUALITY_V2_RATIOS)} for name in QUALITY_V2_METHODS),
        {"method": "laser", "score_pooling": 7, "compression_ratio": list(QUALITY_V2_RATIOS)},
    ),
    "quality-v3": (
        {"method": "full"},
        *({"method": name, "compression_ratio": list(QUALITY_V3_RATIOS)} for name in QUALITY_V3_METHODS),
        {"method": "laser", "score_pooling": 7, "compression_ratio": list(QUALITY_V3_RATIOS)},
        {"method": "laser", **QUALITY_V3_AS_SHIPPED, "compression_ratio": list(QUALITY_V3_RATIOS)},
        *(
            {"method": name, "compression_ratio": list(QUALITY_V3_CURVE_RATIOS)}
            for name in ("laser", "snapkv")
        ),
        *(
            {"method": name, "compression_ratio": 0.25, "block_size": QUALITY_V3_REGIME_BLOCK}
            for name in ("laser", "snapkv")
        ),
        # added with issue 35 (the plan's E1-E9, E12, E13): LASER-KV at the rivals' kept tokens
        {
            "method": "laser",
            **QUALITY_V3_EQUAL_TOKENS,
            "compression_ratio": [*QUALITY_V3_RATIOS, *QUALITY_V3_CURVE_RATIOS],
        },
        {
            "method": "laser",
            **QUALITY_V3_EQUAL_TOKENS,
            "block_size": QUALITY_V3_ONE_SHOT_BLOCK,
            "compression_ratio": list(QUALITY_V3_RATIOS),
        },
        {"method": "snapkv", "block_size": QUALITY_V3_ONE_SHOT_BLOCK, "compression_ratio": 0.25},
        {
            "method": "laser",
            **QUALITY_V3_EQUAL_TOKENS,
            "block_size": QUALITY_V3_REGIME_BLOCK,
            "compression_ratio": 0.25,
        },
    ),
}
"""Grids in the YAML files' form. ``ablation``: the original README's grid (exact / LSH / hybrid
x modes) plus the first release's baselines. ``laser-budgets``: LASER-KV against those baselines
at one budget.
``quality``: issue 8's benchmark, ``full`` plus seven methods at budgets 256-2048 (labels like
``laser[budget=1024]``; see ``benchmarks/quality.py``). ``rivals``: LASER-KV against every
native rival and kvpress's standard presses (both protocols) at one budget (the method default,
or ``--budget`` / ``--ratio`` for all of them). ``quality-v2``: issue 20's study, ``full`` and
LASER-KV (also with ``score_pooling=7``, recursive, and its exact and LSH selectors alone), the
native rivals in both protocols and four kvpress presses, each keeping r = 0.25 and r = 0.125 of
every context (labels like ``laser[compression_ratio=0.25]``). ``quality-v3``: issue 36's
pre-registered study, 25 configurations: ``full``; at r = 0.25 and 0.125 LASER-KV (also with
``score_pooling=7``, and as the original code shipped it: ``score_norm=window``,
``faithful_empty_block``, ``faithful_hybrid``), its exact selector alone, SnapKV natively and
through kvpress (query-aware, and kvpress's query-agnostic reference), kvpress's Expected
Attention (query-aware) and StreamingLLM; LASER-KV and SnapKV also at r = 0.5 and 0.0625 (the
curve) and at r = 0.25 with 1024-token blocks (the regime control); and the matched arms issue 35
made possible (33 configurations in all): LASER-KV with ``budget_rule=exact`` (exactly the
rivals' floor(r T) tokens) at all four r in 4096-token blocks, one-shot (blocks of 131,072 tokens,
longer than any v3 context) at r = 0.25 and 0.125, and in 1024-token blocks at r = 0.25, and
SnapKV one-shot at r = 0.25. Every other entry keeps the
engine's 4096-token blocks, so the configs it shares with ``quality-v2`` (run with
``--block-size 4096``) have the same hashes there."""


def method_with_overrides(name: str, overrides: dict[str, object], label: str | None = None) -> MethodConfig:
    """A registered method with parameter overrides; ``full`` ignores budget-like overrides (it
    keeps everything). ``label`` renames it (sweeps)."""
    changes = dict(overrides)
    if name == "full":
        for field in ("budget", "compression_ratio", "protection_divisor"):
            changes.pop(field, None)
    method = get_method(name, **changes)
    return method.renamed(label) if label else method


def methods_with_overrides(names: tuple[str, ...], overrides: dict[str, object]) -> tuple[MethodConfig, ...]:
    """Every named method with the same overrides (``None`` values are left out)."""
    given = {field: value for field, value in overrides.items() if value is not None}
    return tuple(method_with_overrides(name, given) for name in names)


def sweep_methods(grid: str, overrides: dict[str, object]) -> tuple[MethodConfig, ...]:
    """The methods of a sweep: a preset name (``SWEEP_PRESETS``) or a YAML file::

        methods:
          - method: laser
            budget: [256, 512, 1024]   # a list expands into one method per value
          - method: streaming
            budget: [256, 512]

    Raises:
        ConfigError: unknown preset, unreadable file, bad entries or duplicate configs.
    """
    given = {field: value for field, value in overrides.items() if value is not None}
    entries = SWEEP_PRESETS[grid] if grid in SWEEP_PRESETS else _grid_file(grid)
    _count_configs(grid, entries)
    methods = []
    for entry in entries:
        fields = {key: value for key, value in entry.items() if key != "method"}
        clash = sorted(set(given) & _budget_like(fields))
        if clash:
            raise ConfigError(
                "grid",
                grid,
                f"no {FLAGS.get(clash[0], clash[0])} override: the grid sets {', '.join(fields)} itself",
            )
        axes = {key: value if isinstance(value, list) else [value] for key, value in fields.items()}
        for values in itertools.product(*axes.values()):
            changes = dict(zip(axes, values, strict=True))
            methods.append(
                method_with_overrides(
                    entry["method"], {**given, **changes}, sweep_label(entry["method"], changes)
                )
            )
    return tuple(methods)


def _count_configs(grid: str, entries: Any) -> int:
    """The number of configurations ``entries`` expand to, counted before any is built.

    Raises:
        ConfigError: a malformed entry, an empty list of values, no configuration, or more than
            ``MAX_GRID_CONFIGS``.
    """
    total = 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
            raise refused("grid", entry, "entries like {method: laser, budget: [256, 512]}")
        sizes = [len(value) for value in entry.values() if isinstance(value, list)]
        if 0 in sizes:
            raise refused("grid", entry, "no empty list of values (each list gives one config per value)")
        total += math.prod(sizes)
    if total > MAX_GRID_CONFIGS:
        raise ConfigError("grid", grid, f"at most {MAX_GRID_CONFIGS:,} configurations (it has {total:,})")
    if total == 0:
        raise ConfigError("grid", grid, "at least one entry, like {method: laser, budget: [256, 512]}")
    return total


def _budget_like(fields: dict[str, Any]) -> set[str]:
    """The fields set, with budget and compression ratio as one (each replaces the other)."""
    names = set(fields)
    if names & {"budget", "compression_ratio"}:
        names |= {"budget", "compression_ratio"}
    return names


def _grid_file(grid: str) -> list[Any]:
    """The ``methods`` list of a YAML grid file (``cluster.options.load_yaml``: small, no aliases)."""
    if not Path(grid).expanduser().is_file():
        raise ConfigError("grid", grid, f"a preset ({', '.join(SWEEP_PRESETS)}) or a YAML file that exists")
    spec: Any = load_yaml(grid, "grid")
    if not isinstance(spec, dict) or not isinstance(spec.get("methods"), list):
        raise ConfigError("grid", grid, "a YAML mapping with a 'methods' list")
    return list(spec["methods"])
