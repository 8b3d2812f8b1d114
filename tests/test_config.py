"""Bad configs raise errors that name the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from laserkv import build_method
from laserkv.config import GenerationConfig
from laserkv.errors import ConfigError, UnsupportedModelError
from laserkv.modeling import load_model_and_tokenizer
from laserkv.selectors.exact import ExactSelector
from laserkv.selectors.hybrid import HybridSelector
from laserkv.selectors.lsh import LshSelector
from tests.tiny import build_tokenizer


@pytest.mark.parametrize(
    ("changes", "field", "value", "allowed"),
    [
        ({"protection_divisor": 2}, "protection_divisor", "2", ">= 3"),
        ({"budget": 0}, "budget", "0", ">= 1"),
        ({"budget": -1}, "budget", "-1", ">= 1"),
        ({"budget": 32.0}, "budget", "32.0", "an integer"),
        ({"protection_divisor": 4.0}, "protection_divisor", "4.0", "an integer >= 3"),
        ({"selector": "hybrid", "hybrid_ratio": "0.5"}, "hybrid_ratio", "'0.5'", "[0, 1]"),
        ({"selector": "lsh", "lsh_seed": 2**64}, "lsh_seed", str(2**64), "below 2**63"),
        ({"selector": "lsh", "lsh_mode": "magicpig_baseline", "lsh_tables": 1}, "lsh_tables", "1", ">= 2"),
        ({"block_size": 0}, "block_size", "0", ">= 1"),
        ({"compression_mode": "rolling"}, "compression_mode", "'rolling'", "accumulate, recursive"),
        ({"budget_rule": "matched"}, "budget_rule", "'matched'", "one of original, exact"),
        (
            {"selector": "lsh2"},
            "selector",
            "'lsh2'",
            "exact, lsh, hybrid, recency, snapkv, h2o, tova, kvpress, none",
        ),
        ({"backend": "cuda"}, "backend", "'cuda'", "eager"),
        ({"selector": "none"}, "budget", "1024", "None with selector 'none'"),
        ({"budget": None}, "budget", "None", "exactly one of budget and compression_ratio"),
        ({"compression_ratio": 0.5}, "budget", "1024", "exactly one of budget and compression_ratio"),
        ({"budget": None, "compression_ratio": 0.0}, "compression_ratio", "0.0", "in (0, 1]"),
        ({"budget": None, "compression_ratio": 1.5}, "compression_ratio", "1.5", "in (0, 1]"),
        (
            {"budget": None, "compression_ratio": 0.5, "protection_divisor": 2},
            "protection_divisor",
            "2",
            ">= 3",
        ),
        ({"selector": "none", "budget": None, "compression_ratio": 0.5}, "compression_ratio", "0.5", "None"),
        ({"granularity": "block"}, "granularity", "'block'", "token, layer, head"),
        ({"selector": "lsh", "granularity": "head"}, "granularity", "'head'", "a parameter of selector 'lsh"),
        ({"query_source": "prompt"}, "query_source", "'prompt'", "question, window"),
        ({"observation_window": 0}, "observation_window", "0", ">= 1"),
        ({"score_pooling": 4}, "score_pooling", "4", "odd integer"),
        ({"selector": "lsh", "score_pooling": 5}, "score_pooling", "5", "a parameter of selector 'lsh"),
        ({"selector": "hybrid", "granularity": "head"}, "granularity", "'head'", "'token' inside a hybrid"),
        (
            {"selector": "lsh", "lsh_mode": "magicpig"},
            "lsh_mode",
            "'magicpig'",
            "frequency_rank, magicpig_baseline",
        ),
        ({"selector": "lsh", "lsh_bits": 0}, "lsh_bits", "0", ">= 1"),
        ({"selector": "lsh", "lsh_bits": 31}, "lsh_bits", "31", "at most 30"),
        ({"selector": "lsh", "lsh_tables": 0}, "lsh_tables", "0", ">= 1"),
        ({"selector": "lsh", "lsh_seed": -1}, "lsh_seed", "-1", ">= 0"),
        ({"selector": "lsh", "tie_break": "cosine"}, "tie_break", "'cosine'", "l2, max_sim, mahalanobis"),
        (
            {"selector": "hybrid", "hybrid_primary": "kvpress"},
            "hybrid_primary",
            "'kvpress'",
            "exact, lsh, recency, snapkv, h2o, tova",
        ),
        ({"selector": "hybrid", "hybrid_ratio": 1.2}, "hybrid_ratio", "1.2", "[0, 1]"),
        ({"selector": "hybrid", "hybrid_secondary": "exact"}, "hybrid_secondary", "'exact'", "other than"),
    ],
)
def test_bad_method_config(changes: dict[str, object], field: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_method(**changes)  # type: ignore[arg-type]
    message = str(error.value)
    assert error.value.field == field
    assert message.startswith(f"{field}={value}")
    assert allowed in message


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"protection_divisor": None, "anchor_tokens": -1}, "anchor_tokens", ">= 0"),
        ({"protection_divisor": None, "local_fraction": 1.0}, "local_fraction", "[0, 1)"),
        ({"anchor_tokens": 4}, "protection_divisor", "None when anchor/local tokens are fixed"),
        (
            {"protection_divisor": None, "anchor_tokens": 4, "local_tokens": 8, "budget": 10},
            "budget",
            "fixed slots",
        ),
        (
            {"selector": "hybrid", "hybrid_secondary": "hybrid"},
            "hybrid_secondary",
            "one of exact, lsh, recency",
        ),
        (
            {"selector": "hybrid", "hybrid_secondary": "none"},
            "hybrid_secondary",
            "one of exact, lsh, recency",
        ),
        ({"budgte": 10}, "override", "did you mean budget"),
        (
            {"selector": "recency", "lsh_bits": 3},
            "lsh_bits",
            "a parameter of selector 'recency' or the engine",
        ),
    ],
)
def test_bad_split_part_or_parameter(changes: dict[str, object], field: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        build_method(**changes)
    assert error.value.field == field and allowed in str(error.value)


def test_a_hybrids_parts_must_score_with_the_same_rows() -> None:
    window = ExactSelector(query_source="window", observation_window=3)
    with pytest.raises(ConfigError, match="the same scoring rows"):
        HybridSelector(window, LshSelector(query_source="question"))
    with pytest.raises(ConfigError, match="the same scoring rows"):
        HybridSelector(window, LshSelector(query_source="window", observation_window=5))
    mixed = build_method(selector="hybrid", query_source="window", observation_window=3)
    assert mixed.selector.needs().rows_key() == ("window", 3)


def test_fixed_slots_split_the_budget_as_declared() -> None:
    method = build_method(selector="recency", protection_divisor=None, anchor_tokens=4, local_fraction=0.25)
    split = method.split_for(10_000)
    assert (split.total, split.anchors, split.local, split.global_) == (1024, 4, 256, 764)  # type: ignore[union-attr]
    none_global = build_method(
        selector="recency", protection_divisor=None, anchor_tokens=4, local_tokens=1020
    )
    assert none_global.split_for(50).global_ == 0  # type: ignore[union-attr]


def test_bad_generation_config() -> None:
    with pytest.raises(ConfigError, match=r"max_new_tokens=0 .*>= 1"):
        GenerationConfig(max_new_tokens=0)


def test_ratio_budget_is_resolved_per_context() -> None:
    method = build_method(budget=None, compression_ratio=0.5, compression_mode="recursive")
    assert method.budget_for(1000) == 500 and method.split_for(1000).anchors == 125  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"compression_ratio=0.5 .*this 1-token context \(it gives B=0\)"):
        method.budget_for(1)
    assert build_method(budget=64).budget_for(10**6) == 64
    assert build_method(selector="none", budget=None).split_for(100) is None


def test_model_without_rotary_positions_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)).save_pretrained(tmp_path)
    build_tokenizer(tmp_path)
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel has no rotary position embeddings"):
        load_model_and_tokenizer(str(tmp_path), device="cpu")
