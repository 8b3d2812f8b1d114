"""The method registry (grid, LASER-KV's settings, overrides, hashes, the table of docs/methods.md) and
the method matrix: every registered method end to end on the tiny models with the generic invariants."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from laserkv import GenerationConfig, answer_ids, get_method
from laserkv.errors import ConfigError
from laserkv.methods import METHODS
from laserkv.prompting import encode_context, encode_question
from laserkv.selectors.kvpress import PRESSES
from scripts.update_readme_methods import methods_block
from tests.tiny import sentence

METHODS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "methods.md"

GRID = [
    f"{selector}{suffix}"
    for selector in (
        "exact",
        "lsh_frequency_rank",
        "lsh_magicpig",
        "hybrid_magicpig_0.5",
        "hybrid_magicpig_0.75",
        "hybrid_frequency_rank_0.5",
        "hybrid_frequency_rank_0.75",
    )
    for suffix in ("", "_recursive")
]


RIVAL_NAMES = ["snapkv", "snapkv_agnostic", "streaming", "h2o", "tova", "tova_agnostic"]
KVPRESS_NAMES = [f"kvpress:{press}{suffix}" for press in PRESSES for suffix in ("", "_query_aware")]
FIRST_RELEASE_RIVALS = ["streaming_laser_split", "snapkv_laser_split"]


def test_registry_holds_laser_the_grid_and_the_baselines() -> None:
    assert set(METHODS) == {
        "laser", "laser_recursive", "laser_pooled", "laser_original", "full", *FIRST_RELEASE_RIVALS,
        *RIVAL_NAMES, *KVPRESS_NAMES, *GRID,
    }  # fmt: skip
    laser = get_method("laser")
    assert (
        laser.params()["selector"],
        laser.params()["hybrid_primary"],
        laser.params()["hybrid_secondary"],
        laser.params()["lsh_mode"],
    ) == (
        "hybrid",
        "exact",
        "lsh",
        "magicpig_baseline",
    )
    assert (
        laser.params()["hybrid_ratio"],
        laser.params()["compression_mode"],
        laser.params()["protection_divisor"],
        laser.params()["block_size"],
    ) == (
        0.75,
        "accumulate",
        4,
        4096,
    )
    assert (
        laser.params()["lsh_bits"],
        laser.params()["lsh_tables"],
        laser.params()["granularity"],
        laser.params()["query_source"],
    ) == (
        10,
        8,
        "token",
        "question",
    )
    assert laser.config_hash == get_method("hybrid_magicpig_0.75").config_hash  # same config, other name
    pooled = get_method("laser_pooled")  # quality v2's laser[score_pooling=7]: its rows are this config
    assert pooled.params() == {**laser.params(), "score_pooling": 7}
    assert pooled.config_hash == get_method("laser", score_pooling=7).config_hash
    # the hash of docs/quality/runs/*/'s laser[compression_ratio=0.25,score_pooling=7] rows
    assert get_method("laser_pooled", compression_ratio=0.25).config_hash == "9cb6fef9cf7bb51f"
    hybrid = get_method("hybrid_frequency_rank_0.5_recursive")
    assert (
        hybrid.params()["lsh_mode"],
        hybrid.params()["hybrid_ratio"],
        hybrid.params()["compression_mode"],
    ) == (
        "frequency_rank",
        0.5,
        "recursive",
    )
    snapkv = get_method("snapkv_laser_split")  # the first release's "snapkv": its hash is kept
    assert (
        snapkv.params()["query_source"],
        snapkv.params()["granularity"],
        snapkv.params()["score_pooling"],
    ) == ("window", "head", 5)
    assert snapkv.config_hash == "8d4ea23fe19ec7bb"
    assert get_method("streaming_laser_split").config_hash == "8377762318e6eaca"


def test_hashes_are_pinned() -> None:
    """A changed hash silently invalidates every stored result row; change these deliberately."""
    assert get_method("laser").config_hash == "b81fe6ba5f1a9672"
    assert get_method("full").config_hash == "232f70b2112ce03a"
    assert get_method("laser_pooled").config_hash == "6af0700287abdcff"
    aliases = {"laser", "laser_recursive"}  # = hybrid_magicpig_0.75 and its recursive twin
    assert (
        get_method("laser_recursive").config_hash == get_method("hybrid_magicpig_0.75_recursive").config_hash
    )
    hashes = [METHODS[name]().config_hash for name in METHODS if name not in aliases]
    assert len(set(hashes)) == len(hashes)


def test_overrides_field_by_field_and_budget_or_ratio() -> None:
    laser = get_method("laser", budget=2048)
    assert (
        laser.name,
        laser.params()["budget"],
        laser.params()["compression_ratio"],
        laser.params()["hybrid_ratio"],
    ) == (
        "laser",
        2048,
        None,
        0.75,
    )
    by_ratio = get_method("laser", compression_ratio=0.75)
    assert (by_ratio.params()["budget"], by_ratio.params()["compression_ratio"]) == (None, 0.75)
    assert get_method("laser", compression_ratio=0.75).config_hash != get_method("laser").config_hash
    with pytest.raises(ConfigError, match="override='budgte'"):
        get_method("laser", budgte=10)
    with pytest.raises(ConfigError, match="hybrid_ratio=2"):
        get_method("laser", hybrid_ratio=2)


def test_unknown_method_names_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"did you mean exact_recursive.*registered methods: laser"):
        get_method("exact_recursiv")
    with pytest.raises(ConfigError, match=r"did you mean lsh_magicpig"):
        get_method("lsh_magicpg")


def test_methods_page_lists_the_registry() -> None:
    """docs/methods.md holds the registry's listing, as scripts/update_readme_methods.py writes it."""
    text = METHODS_PAGE.read_text()
    block = re.search(r"<!-- methods:start -->\n(.*?)<!-- methods:end -->", text, re.S)
    assert block is not None, "docs/methods.md lacks the generated methods table"
    assert block.group(1) == methods_block(), (
        "docs/methods.md is stale: run python scripts/update_readme_methods.py"
    )
    assert all(len(line) <= 120 for line in block.group(1).splitlines())


def expected_lengths(
    name: str, seen: list[int], anchors: int, local: int, global_: int, budget: int
) -> list[int]:
    """Cache length after each block, from method.md section 2 (every block here has at least
    ``global_`` candidates, so each selection fills its share)."""
    if name == "full":
        return seen
    if get_method(name).engine.compression_mode == "recursive":
        return [min(budget, tokens) for tokens in seen]
    return [min(tokens, anchors + (index + 1) * global_ + local) for index, tokens in enumerate(seen)]


LASER_SPLIT = [name for name in METHODS if name not in RIVAL_NAMES + KVPRESS_NAMES]


@pytest.mark.parametrize("name", LASER_SPLIT)
def test_every_method_end_to_end(tiny: Any, name: str) -> None:
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(150, 11))
    question = encode_question(tokenizer, sentence(6, 12))
    overrides: dict[str, object] = {"block_size": 32}
    if name != "full":
        overrides.update(budget=32)  # anchors 8, local 8, global 16
    if "lsh_bits" in get_method(name).params():
        overrides.update(lsh_bits=3)  # 3 bits: collisions happen
    method = get_method(name, **overrides)
    result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=4))
    seen = [32, 64, 96, 128, 150]
    assert result.stats.cache_length_per_block == expected_lengths(name, seen, 8, 8, 16, 32)
    final = result.stats.cache_length_per_block[-1]
    assert result.stats.final_cache_length == final and result.stats.budget == (
        None if name == "full" else 32
    )
    kept = result.kept_positions.reshape(-1, final)  # one row per kept set (per layer / head)
    assert kept.shape[0] == (2 * 2 if method.params().get("granularity") == "head" else 1)
    for row in kept.tolist():
        assert row == sorted(set(row)) and row[-8:] == list(range(142, 150))  # local window kept
        assert row[:8] == list(range(8))  # anchors kept
    assert result.token_ids and torch.isfinite(result.first_token_logits).all()


@pytest.mark.parametrize("name", RIVAL_NAMES + KVPRESS_NAMES)
def test_every_rival_end_to_end(tiny: Any, name: str) -> None:
    """Every native rival (4 chunks of 32) and every kvpress press (one prefill) keeps at most about
    B context tokens, distinct and ascending per layer and head, and answers."""
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(128, 11))
    question = encode_question(tokenizer, sentence(6, 12))
    method = get_method(name, budget=48, block_size=32)
    result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=4))
    kept = result.kept_positions.reshape(-1, result.kept_positions.shape[-1])
    for row in kept.tolist():
        shown = [position for position in row if position >= 0]  # -1: a head that keeps fewer
        assert shown == sorted(set(shown)) and all(position < 128 for position in shown)
    assert result.stats.budget == 48 and 0 < result.stats.final_cache_length <= 48 + len(question)
    if not name.startswith("kvpress:"):
        assert result.stats.cache_length_per_block == [32, 48, 48, 48]
    assert method.selector.protocol == (
        "query-aware" if name in ("snapkv", "tova") or "query_aware" in name else "query-agnostic"
    )
    assert result.token_ids and torch.isfinite(result.first_token_logits).all()


def test_laser_as_the_original_shipped_it_is_registered_beside_laser() -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from laserkv.methods import ORIGINAL_FIELDS, get_method

    original, ours = get_method("laser_original").params(), get_method("laser").params()
    differs = {name: original[name] for name in original if original[name] != ours.get(name)}
    assert (
        differs
        == ORIGINAL_FIELDS
        == {"score_norm": "window", "faithful_empty_block": True, "faithful_hybrid": True}
    )
    listing = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "400"})
    assert listing.exit_code == 0 and "laser_original" in listing.output
