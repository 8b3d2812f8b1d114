"""The method seams: a selector added from outside the engine runs through the unchanged block
loop (its declared needs drive the forward); a method declares its own fixed slots; a score
request that no layer receives raises instead of silently keeping the earliest candidates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

from laserkv import GenerationConfig, answer_ids, build_method, hooks
from laserkv.backends import ScoreChannelError, ScoreRequest
from laserkv.engine import forward_block
from laserkv.prompting import encode_context, encode_question
from laserkv.selectors import SELECTORS, BlockEvidence, ForwardNeeds, Selector
from laserkv.state import CompressedKV
from tests.reference import eager_forward
from tests.tiny import sentence

ONE_TOKEN = GenerationConfig(max_new_tokens=1)


@dataclass(frozen=True)
class LeastAttendedSelector(Selector):
    """A selector written outside laserkv: the candidates the question attends to least."""

    kind = "least_attended"
    description = "test plugin: the lowest exact attention mass"
    query_source: str = "question"

    def needs(self) -> ForwardNeeds:
        return ForwardNeeds(self.query_source, attention="token")

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        mass, offsets = evidence.attention_mass()
        scores = -mass.reshape(-1)[offsets][subset]
        order = torch.sort(scores, descending=True, stable=True).indices[:n_keep]
        return subset[torch.sort(order).values]


def sample(tokenizer: Any) -> tuple[list[int], list[int]]:
    return encode_context(tokenizer, sentence(32, 21)), encode_question(tokenizer, sentence(6, 22))


def test_a_selector_registered_from_outside_runs_through_the_engine(
    tiny: Any, tiny_model_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SELECTORS, LeastAttendedSelector.kind, LeastAttendedSelector)
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    method = build_method(selector="least_attended", budget=24, block_size=32)  # anchors 6, local 6
    kept = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN).kept_positions
    attentions = eager_forward(tiny_model_dir, context, 0, question, 32)[0].attentions
    mass = sum(layer[0, :, -len(question) :, :].double().sum((0, 1)) for layer in attentions)
    candidates = list(range(6, 26))
    lowest = sorted(sorted(candidates, key=lambda i: (float(mass[i]), i))[:12])
    assert kept.tolist() == list(range(6)) + lowest + list(range(26, 32))
    assert method.params()["selector"] == "least_attended" and method.config_hash


def test_a_method_declares_its_own_fixed_slots(tiny: Any) -> None:
    """StreamingLLM-style: 4 sink tokens and a recent window, no B/n anchors."""
    model, tokenizer = tiny
    context = encode_context(tokenizer, sentence(150, 11))
    question = encode_question(tokenizer, sentence(6, 12))
    method = build_method(
        selector="recency", compression_mode="recursive", budget=32, block_size=32,
        protection_divisor=None, anchor_tokens=4,
    )  # fmt: skip
    result = answer_ids(model, tokenizer, context, question, method, ONE_TOKEN)
    assert result.kept_positions.tolist() == list(range(4)) + list(range(150 - 28, 150))
    assert result.stats.cache_length_per_block == [32, 32, 32, 32, 32]
    laser_split = build_method(budget=32).split_for(150)
    assert (laser_split.anchors, laser_split.local, laser_split.global_) == (8, 8, 16)  # type: ignore[union-attr]


def test_a_score_request_no_layer_receives_raises(tiny: Any) -> None:
    model, tokenizer = tiny
    context, question = sample(tokenizer)
    request = ScoreRequest("flash", len(question), 0, torch.zeros(1, 1, 32))
    block, asked = torch.tensor(context), (torch.tensor(question), 32)
    with torch.no_grad(), pytest.raises(ScoreChannelError, match=r"layers \[0, 1\] never reported"):
        # outside laserkv_attention the model's own SDPA ignores the request: nothing reports
        forward_block(model, CompressedKV.empty(), block, 0, asked, request)
    fresh = ScoreRequest("flash", len(question), 0, torch.zeros(1, 1, 32))
    with torch.no_grad(), hooks.laserkv_attention(model):
        forward_block(model, CompressedKV.empty(), block, 0, asked, fresh)
    assert fresh.reported_layers == {0, 1} and fresh.totals.sum() > 0
