"""The simple reference every engine test compares with: the model's own eager forward, loaded
fresh with ``attn_implementation="eager"``, returning its attention probabilities and cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, DynamicCache


def eager_forward(
    model_dir: str | Path,
    block: list[int],
    block_start: int,
    question: list[int] | None,
    context_len: int,
    prefix_ids: list[int] | None = None,
    prefix_kv: Any = None,
) -> tuple[Any, DynamicCache]:
    """``[block | question]`` at true positions (block from ``block_start``, question at
    ``context_len``), over a cache of ``prefix_ids`` (forwarded here) or of ``prefix_kv`` (a
    ``CompressedKV``'s per-layer keys and values), with ``output_attentions``."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    cache = DynamicCache(config=model.config)
    question = question or []
    with torch.no_grad():
        if prefix_ids:
            model.model(input_ids=torch.tensor([prefix_ids]), past_key_values=cache, use_cache=True)
        if prefix_kv is not None:
            for layer, (keys, values) in enumerate(zip(prefix_kv.keys, prefix_kv.values, strict=True)):
                cache.update(keys, values, layer)
        positions = list(range(block_start, block_start + len(block)))
        positions += list(range(context_len, context_len + len(question)))
        out = model(
            input_ids=torch.tensor([block + question]),
            position_ids=torch.tensor([positions]),
            past_key_values=cache,
            use_cache=True,
            output_attentions=True,
        )
    return out, cache
