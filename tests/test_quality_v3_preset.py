"""The ``quality-v3`` sweep preset (issue 36): 33 distinct configurations with the pre-registered
labels, protocols and block sizes, LASER-KV as the original code shipped it, and the same config
hashes as ``quality-v2`` for the configurations both studies run (cross-study pairing)."""

from __future__ import annotations

import pytest

from cluster.presets import SWEEP_PRESETS, sweep_methods
from laserkv.config import MethodConfig
from laserkv.errors import ConfigError

MAIN = (
    "laser",
    "exact",
    "snapkv",
    "kvpress:snapkv_query_aware",
    "kvpress:expected_attention_query_aware",
    "kvpress:snapkv",
    "streaming",
    "laser[{r},score_pooling=7]",
    "laser[{r},faithful_empty_block=True,faithful_hybrid=True,score_norm=window]",
)
"""The entries at both main budgets; a name alone is labelled ``name[{r}]``."""
AS_SHIPPED = (
    "laser[compression_ratio={ratio},faithful_empty_block=True,faithful_hybrid=True,score_norm=window]"
)
EXPECTED_LABELS = (
    "full",
    *(
        (entry if "[" in entry else entry + "[{r}]").format(r=f"compression_ratio={ratio}")
        for entry in MAIN
        for ratio in (0.25, 0.125)
    ),
    *(f"{name}[compression_ratio={ratio}]" for name in ("laser", "snapkv") for ratio in (0.5, 0.0625)),
    "laser[block_size=1024,compression_ratio=0.25]",
    "snapkv[block_size=1024,compression_ratio=0.25]",
    *(f"laser[budget_rule=exact,compression_ratio={ratio}]" for ratio in (0.25, 0.125, 0.5, 0.0625)),
    *(f"laser[block_size=131072,budget_rule=exact,compression_ratio={ratio}]" for ratio in (0.25, 0.125)),
    "snapkv[block_size=131072,compression_ratio=0.25]",
    "laser[block_size=1024,budget_rule=exact,compression_ratio=0.25]",
)
QUERY_AGNOSTIC = ("kvpress:snapkv[", "streaming[")
SHARED_WITH_V2 = (
    "full",
    "laser[compression_ratio=0.25]",
    "laser[compression_ratio=0.125]",
    "laser[compression_ratio=0.25,score_pooling=7]",
    "laser[compression_ratio=0.125,score_pooling=7]",
    "exact[compression_ratio=0.25]",
    "exact[compression_ratio=0.125]",
    "snapkv[compression_ratio=0.25]",
    "snapkv[compression_ratio=0.125]",
    "kvpress:snapkv[compression_ratio=0.25]",
    "kvpress:snapkv[compression_ratio=0.125]",
    "streaming[compression_ratio=0.25]",
    "streaming[compression_ratio=0.125]",
)
"""Every configuration of ``quality-v3`` that ``quality-v2`` also ran."""


@pytest.fixture(scope="module")
def methods() -> dict[str, MethodConfig]:
    built = sweep_methods("quality-v3", {})
    by_label = {method.name: method for method in built}
    assert len(by_label) == len(built)
    return by_label


def test_the_preset_expands_to_33_distinct_configurations_with_the_expected_labels(
    methods: dict[str, MethodConfig],
) -> None:
    assert "quality-v3" in SWEEP_PRESETS
    assert sorted(methods) == sorted(EXPECTED_LABELS)
    assert len(methods) == 33
    assert len({method.config_hash for method in methods.values()}) == 33


def test_budgets_protocols_and_block_sizes(methods: dict[str, MethodConfig]) -> None:
    for label, method in methods.items():
        engine = method.engine
        if label == "full":
            assert not method.selector.evicts
            assert engine.budget is None and engine.compression_ratio is None
            continue
        assert engine.budget is None
        assert engine.compression_ratio in (0.5, 0.25, 0.125, 0.0625), label
        block = 1024 if "block_size=1024" in label else 131072 if "block_size=131072" in label else 4096
        assert engine.block_size == block, label
        assert engine.budget_rule == ("exact" if "budget_rule=exact" in label else "original"), label
        expected = "query-agnostic" if label.startswith(QUERY_AGNOSTIC) else "query-aware"
        assert method.selector.protocol == expected, label
    assert methods["full"].engine.block_size == 4096


def test_laser_as_the_original_code_shipped_it(methods: dict[str, MethodConfig]) -> None:
    for ratio in (0.25, 0.125):
        shipped = methods[AS_SHIPPED.format(ratio=ratio)]
        params = shipped.params()
        assert shipped.engine.score_norm == "window"
        assert shipped.engine.faithful_empty_block is True
        assert params["faithful_hybrid"] is True
        assert shipped.engine.backend == "flash"
        plain = methods[f"laser[compression_ratio={ratio}]"]
        changed = {key for key, value in params.items() if plain.params().get(key) != value}
        assert changed == {"score_norm", "faithful_empty_block", "faithful_hybrid"}


def test_configurations_shared_with_quality_v2_keep_their_hashes(methods: dict[str, MethodConfig]) -> None:
    """quality-v2 ran with ``--block-size 4096`` (docs/quality.md); the engine's default is the same."""
    for overrides in ({"block_size": 4096}, {}):
        v2 = {method.name: method.config_hash for method in sweep_methods("quality-v2", overrides)}
        shared = sorted(set(v2) & set(methods))
        assert shared == sorted(SHARED_WITH_V2)
        for label in shared:
            assert methods[label].config_hash == v2[label], label


def test_block_size_is_refused_on_the_command_line() -> None:
    with pytest.raises(ConfigError, match="no --block-size override"):
        sweep_methods("quality-v3", {"block_size": 4096})


def test_a_new_registration_changes_no_published_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    from laserkv import methods

    before = {grid: [method.name for method in sweep_methods(grid, {})] for grid in SWEEP_PRESETS}
    monkeypatch.setitem(methods.RIVALS, "newcomer", ("a rival registered later", {"selector": "recency"}))
    monkeypatch.setitem(methods.METHODS, "newcomer", methods.METHODS["streaming"])
    after = {grid: [method.name for method in sweep_methods(grid, {})] for grid in SWEEP_PRESETS}
    assert after == before
    monkeypatch.setitem(methods.METHODS, "exact_newcomer", methods.METHODS["exact"])
    assert {grid: [method.name for method in sweep_methods(grid, {})] for grid in SWEEP_PRESETS} == before
