"""Bad configs raise errors that name the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from laserkv import MethodConfig
from laserkv.config import GenerationConfig
from laserkv.errors import ConfigError, UnsupportedModelError
from laserkv.modeling import load_model_and_tokenizer
from tests.tiny import build_tokenizer


@pytest.mark.parametrize(
    ("changes", "field", "value", "allowed"),
    [
        ({"protection_divisor": 2}, "protection_divisor", "2", ">= 3"),
        ({"budget": 0}, "budget", "0", ">= 1"),
        ({"budget": -1}, "budget", "-1", ">= 1"),
        ({"budget": 32.0}, "budget", "32.0", "an integer"),
        ({"protection_divisor": 4.0}, "protection_divisor", "4.0", "an integer >= 3"),
        ({"hybrid_ratio": "0.5"}, "hybrid_ratio", "'0.5'", "[0, 1]"),
        ({"lsh_seed": 2**64}, "lsh_seed", str(2**64), "below 2**63"),
        ({"selector": "lsh", "lsh_mode": "magicpig_baseline", "lsh_tables": 1}, "lsh_tables", "1", ">= 2"),
        ({"block_size": 0}, "block_size", "0", ">= 1"),
        ({"compression_mode": "rolling"}, "compression_mode", "'rolling'", "accumulate, recursive"),
        ({"selector": "lsh2"}, "selector", "'lsh2'", "exact, lsh, hybrid, recency, none"),
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
        ({"selector": "lsh", "granularity": "head"}, "granularity", "'head'", "'token' with selector 'lsh'"),
        ({"query_source": "prompt"}, "query_source", "'prompt'", "question, window"),
        ({"observation_window": 0}, "observation_window", "0", ">= 1"),
        ({"score_pooling": 4}, "score_pooling", "4", "odd integer"),
        ({"selector": "lsh", "score_pooling": 5}, "score_pooling", "5", "unless exact scores"),
        ({"lsh_mode": "magicpig"}, "lsh_mode", "'magicpig'", "frequency_rank, magicpig_baseline"),
        ({"lsh_bits": 0}, "lsh_bits", "0", ">= 1"),
        ({"lsh_bits": 31}, "lsh_bits", "31", "at most 30"),
        ({"lsh_tables": 0}, "lsh_tables", "0", ">= 1"),
        ({"lsh_seed": -1}, "lsh_seed", "-1", ">= 0"),
        ({"tie_break": "cosine"}, "tie_break", "'cosine'", "l2, max_sim, mahalanobis"),
        ({"hybrid_primary": "snapkv"}, "hybrid_primary", "'snapkv'", "exact, lsh, recency"),
        ({"hybrid_ratio": 1.2}, "hybrid_ratio", "1.2", "[0, 1]"),
        ({"selector": "hybrid", "hybrid_secondary": "exact"}, "hybrid_secondary", "'exact'", "other than"),
    ],
)
def test_bad_method_config(changes: dict[str, object], field: str, value: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        MethodConfig(**changes)  # type: ignore[arg-type]
    message = str(error.value)
    assert error.value.field == field
    assert message.startswith(f"{field}={value}")
    assert allowed in message


def test_bad_generation_config() -> None:
    with pytest.raises(ConfigError, match=r"max_new_tokens=0 .*>= 1"):
        GenerationConfig(max_new_tokens=0)


def test_ratio_budget_is_resolved_per_context() -> None:
    method = MethodConfig(budget=None, compression_ratio=0.5, compression_mode="recursive")
    assert method.budget_for(1000) == 500 and method.split_for(1000).anchors == 125  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"compression_ratio=0.5 .*this 1-token context \(it gives B=0\)"):
        method.budget_for(1)
    assert MethodConfig(budget=64).budget_for(10**6) == 64
    assert MethodConfig(selector="none", budget=None).split_for(100) is None


def test_model_without_rotary_positions_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)).save_pretrained(tmp_path)
    build_tokenizer(tmp_path)
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel has no rotary position embeddings"):
        load_model_and_tokenizer(str(tmp_path), device="cpu")
