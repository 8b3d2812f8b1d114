"""Bad configs raise errors that name the field, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from laserkv import MethodConfig, get_method
from laserkv.config import GenerationConfig
from laserkv.errors import ConfigError, UnsupportedModelError
from laserkv.modeling import load_model_and_tokenizer
from tests.tiny import build_tokenizer


@pytest.mark.parametrize(
    ("changes", "field", "value", "allowed"),
    [
        ({"protection_divisor": 2}, "protection_divisor", "2", ">= 3"),
        ({"budget": 0}, "budget", "0", "positive"),
        ({"budget": -1}, "budget", "-1", "positive"),
        ({"block_size": 0}, "block_size", "0", ">= 1"),
        ({"compression_mode": "rolling"}, "compression_mode", "'rolling'", "accumulate, recursive"),
        ({"selector": "lsh2"}, "selector", "'lsh2'", "exact, recency, none"),
        ({"backend": "cuda"}, "backend", "'cuda'", "eager"),
        ({"selector": "none"}, "budget", "1024", "None with selector 'none'"),
        ({"budget": None}, "budget", "None", "positive integer"),
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


def test_unknown_method_names_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"did you mean exact_recursive.*registered methods: full"):
        get_method("exact_recursiv")


def test_override_field_by_field() -> None:
    method = get_method("exact", budget=2048, block_size=512)
    assert (method.name, method.budget, method.block_size, method.selector) == ("exact", 2048, 512, "exact")
    with pytest.raises(ConfigError, match="override='budgte'"):
        get_method("exact", budgte=10)


def test_config_hash_is_stable_and_field_sensitive() -> None:
    assert get_method("exact").config_hash == get_method("exact").config_hash
    assert get_method("exact").config_hash != get_method("exact", budget=2048).config_hash
    assert MethodConfig(name="a").config_hash == MethodConfig(name="b").config_hash


def test_model_without_rotary_positions_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)).save_pretrained(tmp_path)
    build_tokenizer(tmp_path)
    with pytest.raises(UnsupportedModelError, match="GPT2LMHeadModel has no rotary position embeddings"):
        load_model_and_tokenizer(str(tmp_path), device="cpu")
