"""Tiny real models and a tiny tokenizer built from configs, for CPU tests."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

SPECIALS = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
TEXT_CHARS = list(string.ascii_letters + string.digits)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|user|>{{ message['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
VOCAB_SIZE = 99


def build_tokenizer(directory: Path) -> None:
    """A byte-level BPE without merges over 99 ids (one token per letter or digit) with a chat
    template. Byte-level, so model-specific tokenizer classes (Qwen2Tokenizer) load it unchanged."""
    alphabet = [char for char in sorted(pre_tokenizers.ByteLevel.alphabet()) if char not in TEXT_CHARS]
    tokens = SPECIALS + TEXT_CHARS + alphabet[: VOCAB_SIZE - len(SPECIALS) - len(TEXT_CHARS)]
    backend = Tokenizer(
        models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=[], unk_token="<unk>")
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)


TINY_CONFIG: dict[str, Any] = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
    initializer_range=0.3,
    tie_word_embeddings=False,
)
"""transformers' own test size (hidden 32, 4 heads; GQA with 2 KV heads), 2 layers."""


def build_model(directory: Path, family: str, seed: int = 0) -> None:
    """A tiny random Llama or Qwen2 model (``TINY_CONFIG``) plus the tiny tokenizer."""
    torch.manual_seed(seed)
    if family == "llama":
        model = LlamaForCausalLM(LlamaConfig(**TINY_CONFIG))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**TINY_CONFIG, use_sliding_window=False))
    model.save_pretrained(directory)
    build_tokenizer(directory)


def sentence(n_tokens: int, seed: int) -> str:
    """``n_tokens`` random letters and digits (each one token)."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(TEXT_CHARS), (n_tokens,), generator=generator)
    return "".join(TEXT_CHARS[int(index)] for index in picks)


def build_byte_tokenizer(directory: Path, chat_template: str = CHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """A real byte-level tokenizer over all 256 bytes (no merges: one token per byte), so any
    text round-trips; ``encode`` adds BOS like Llama's tokenizer; with a chat template."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = SPECIALS + alphabet
    backend = Tokenizer(
        models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=[], unk_token="<unk>")
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(directory)
    return tokenizer
