"""Decoding in the call's buffer (fixed-shape steps; CUDA graphs where CUDA runs) against a plain
loop over the model's own cache, greedy and sampled; and the buffer each call allocates is the
size its plan needs (never regrown)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import DynamicCache

from laserkv import GenerationConfig, MethodConfig, build_method, get_method, hooks
from laserkv.budget import BudgetSplit
from laserkv.decoding import next_token
from laserkv.engine import compress_and_generate, prefill_blocks, prefill_slots
from laserkv.kernels import DECODE_CHUNK
from laserkv.prompting import encode_context, encode_question
from laserkv.stats import CallStats, PhaseTimer
from tests.tiny import sentence


def plain_loop(model: Any, ids: list[int], generation: GenerationConfig, eos: int) -> list[int]:
    """The model's own forward over a ``DynamicCache``, one token at a time, with the engine's
    token rule (greedy, or sampled from one seeded generator)."""
    device = model.device
    sampler = None
    if generation.temperature > 0:
        sampler = torch.Generator(device=device).manual_seed(generation.seed)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device), past_key_values=cache, use_cache=True).logits[
            0, -1
        ]
        tokens: list[int] = []
        while len(tokens) < generation.max_new_tokens:
            token = next_token(logits.float(), generation.temperature, sampler)
            if token == eos:
                break
            tokens.append(token)
            step = torch.tensor([[token]], device=device)
            logits = model(step, past_key_values=cache, use_cache=True).logits[0, -1]
    return tokens


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_buffer_decoding_equals_a_plain_loop(tiny: Any, device: str, temperature: float) -> None:
    model, tokenizer = tiny
    model = model.to(device)
    try:
        context = encode_context(tokenizer, sentence(120, 3))
        question = encode_question(tokenizer, sentence(6, 4))
        generation = GenerationConfig(max_new_tokens=12, temperature=temperature, seed=5)
        method = build_method(budget=200, block_size=32)  # keeps everything: the full cache
        result = compress_and_generate(model, context, question, method, generation, frozenset({2}))
        assert result.token_ids == plain_loop(model, context + question, generation, eos=2)
        assert len(result.token_ids) >= 4
    finally:
        model.to("cpu")


def tight_methods() -> list[MethodConfig]:
    return [
        build_method(budget=48, block_size=32),
        build_method(budget=48, block_size=32, boundary_smoothing=False),
        build_method(budget=48, block_size=32, compression_mode="recursive"),
        build_method(budget=40, block_size=16, compression_mode="recursive", faithful_recursive_budget=True),
        build_method(budget=48, block_size=32, faithful_empty_block=True, protection_divisor=3),
        get_method("h2o", budget=40, block_size=32),
        get_method("snapkv", budget=40, block_size=32),
        get_method("laser", compression_ratio=0.5, block_size=32, lsh_bits=3),
        build_method(selector="none", budget=None, block_size=40),
    ]


@pytest.mark.parametrize("method", tight_methods(), ids=lambda method: method.name)
def test_the_buffer_is_sized_by_the_plan_and_never_regrown(tiny: Any, method: MethodConfig) -> None:
    model, tokenizer = tiny
    context = torch.tensor(encode_context(tokenizer, sentence(150, 8)))
    question = torch.tensor(encode_question(tokenizer, sentence(6, 9)))
    split: BudgetSplit | None = method.split_for(int(context.numel()))
    stats = CallStats()
    with torch.no_grad(), hooks.laserkv_attention(model):
        prefilled = prefill_blocks(
            model, context, question, method, split, PhaseTimer(stats, torch.device("cpu"))
        )
    capacity, final = prefill_slots(method, split, int(context.numel()), int(question.numel()))
    assert prefilled.buffer is not None and prefilled.buffer.regrown == 0
    assert prefilled.state.length == final == stats.cache_length_per_block[-1]
    widest = max([0, *stats.cache_length_per_block[:-1]]) + method.engine.block_size + int(question.numel())
    assert capacity % DECODE_CHUNK == 0
    assert capacity - DECODE_CHUNK < widest, "no more slots than the widest forward can use, rounded up"
