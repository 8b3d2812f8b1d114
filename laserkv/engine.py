"""The BMRT loop: ``State_N = Compress(State_{N-1} + Chunk_N)``, then the answer.

For each block of the context: forward ``[block | question]`` over the compressed cache at
true positions (question at ``T..``); score the candidates; select; compact the kept slots of
every layer in place; hold back the local tail. Then prefill the question over the final cache
and decode. Every call starts from an empty state in one buffer allocated for it (``KVBuffer``);
nothing is stored on the model.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedModel

from laserkv import hooks
from laserkv.backends import ScoreRequest
from laserkv.budget import BudgetSplit
from laserkv.config import EngineConfig, GenerationConfig, MethodConfig
from laserkv.decoding import BufferSteps, Step, cache_steps, decode_tokens, sdpa_without_cudnn
from laserkv.evidence import block_evidence
from laserkv.kernels import DECODE_CHUNK
from laserkv.kv_buffer import KVBuffer
from laserkv.kvpress_bridge import prefill_with_press, press_attention
from laserkv.modes import BlockPlan, block_globals, block_spans, forward_slots_needed, plan_block
from laserkv.prompting import encode_context, encode_question, encode_text
from laserkv.selectors import ForwardNeeds
from laserkv.state import CompressedKV, Prefilled, count_below, join_positions, take_slots
from laserkv.stats import CallStats, PhaseTimer, track_peak_memory


@dataclass(frozen=True)
class EngineResult:
    """The answer of one call and what it cost.

    Attributes:
        text: decoded answer (special tokens skipped, cut at stop strings, stripped).
        raw_text: the decoded answer before the stop-string cut and the strip (benchmarks whose
            official code tests the raw output, e.g. LongBench v2's skip of '' outputs).
        token_ids: generated ids, EOS excluded.
        first_token_logits: (vocab,) fp32 logits after the question prefill.
        kept_positions: context positions in the final cache, ascending: (n,), or
            (layers, kv_heads, n) with per-layer / per-head selection.
        stats: cache lengths, peak memory and seconds per phase.
    """

    text: str
    raw_text: str
    token_ids: list[int]
    first_token_logits: Tensor
    kept_positions: Tensor
    stats: CallStats


def forward_cache(model: PreTrainedModel, prefix: CompressedKV) -> Any:
    """A fresh transformers cache holding ``prefix``'s tensors (not copied: the forward appends
    by concatenation, so ``prefix`` itself is never modified). The kvpress bridge decodes over it."""
    return hooks.cache_from_kv(model, list(prefix.keys), list(prefix.values))


def _must_choose(plan: BlockPlan) -> bool:
    """Whether the selector has to drop some candidates (otherwise all or none are kept)."""
    return 0 < plan.n_select < int(plan.candidate_slots.numel())


def block_inputs(
    block_ids: Tensor, block_start: int, question: tuple[Tensor, int] | None
) -> tuple[Tensor, Tensor]:
    """``(ids, positions)`` of ``[block | question]``: the block at its true positions, the
    question ``(question_ids, context_len)`` at ``T..`` when given."""
    pieces = [block_ids]
    positions = [torch.arange(block_start, block_start + block_ids.numel())]
    if question is not None:
        question_ids, context_len = question
        pieces.append(question_ids)
        positions.append(torch.arange(context_len, context_len + question_ids.numel()))
    return torch.cat(pieces), torch.cat(positions)


def forward_into(
    model: PreTrainedModel,
    buffer: KVBuffer,
    ids: Tensor,
    positions: Tensor,
    request: ScoreRequest | None = None,
) -> Tensor:
    """Forward (n,) ``ids`` at ``positions`` over ``buffer``'s slots in use; their keys and values
    take the next n slots (``buffer.length`` grows by n).

    Returns:
        (1, n, hidden) final hidden states.
    """
    device = hooks.model_device(model)
    buffer.reserve(buffer.length + int(ids.numel()))
    cache = hooks.buffer_cache(buffer)
    hidden = hooks.forward_body(model, ids[None].to(device), positions[None].to(device), cache, request)
    buffer.length += int(ids.numel())
    return hidden


def forward_block(
    model: PreTrainedModel,
    prefix: CompressedKV,
    block_ids: Tensor,
    block_start: int,
    question: tuple[Tensor, int] | None,
    request: ScoreRequest | None,
) -> CompressedKV:
    """Forward ``[block | question]`` over ``prefix`` at true positions (into a buffer holding a
    copy of ``prefix``, which is not modified).

    Args:
        question: ``(question_ids, context_len)`` to append the question at ``T..``, or None.

    Returns:
        The KV of every forward-cache slot: prefix, block, then question.
    """
    ids, positions = block_inputs(block_ids, block_start, question)
    needed = prefix.length + int(ids.numel())
    if prefix.length:
        buffer = KVBuffer.holding(prefix.keys, prefix.values, needed)
    else:
        buffer = hooks.allocate_buffer(model, needed)
    forward_into(model, buffer, ids, positions, request)
    keys, values = buffer.view()
    return CompressedKV(keys, values, join_positions(prefix.positions, positions))


def original_flash_span(
    engine: EngineConfig, state_len: int, tail_len: int, plan: BlockPlan, block_end: int
) -> tuple[int, int]:
    """The key slots the original flash scorer normalised over (reference sections 3 and 4.2):
    accumulate: the held tail and the whole block (without smoothing still shifted back by the
    tail's length, into the state); recursive: all history and the whole block."""
    if engine.compression_mode == "recursive":
        return 0, block_end
    start = state_len if plan.prefix_has_tail else max(0, state_len - tail_len)
    return start, block_end


def _score_request(
    model: PreTrainedModel,
    engine: EngineConfig,
    granularity: str,
    window: tuple[int, int],
    n_scoring_rows: int,
    normalise_span: tuple[int, int] | None,
) -> ScoreRequest:
    """An fp32 buffer over the slots ``[start, stop)`` of ``window``, one row per layer and KV
    head where the granularity needs it."""
    window_start, window_stop = window
    rows = hooks.n_layers(model) if granularity != "token" else 1
    heads = hooks.n_kv_heads(model) if granularity == "head" else 1
    totals = torch.zeros(rows, heads, window_stop - window_start, device=hooks.model_device(model))
    return ScoreRequest(engine.backend, n_scoring_rows, window_start, totals, normalise_span)


def scored_window(needs: ForwardNeeds, plan: BlockPlan, forward_kv_len: int) -> tuple[int, int]:
    """The slots the scoring rows' mass is collected over: from the first to the last candidate,
    or every context slot of the forward when the selector carries scores over blocks."""
    if needs.carry_scores:
        return 0, forward_kv_len
    return int(plan.candidate_slots.min()), int(plan.candidate_slots.max()) + 1


def observation_rows(needs: ForwardNeeds, plan: BlockPlan, block_len: int) -> int:
    """Query-agnostic scoring rows: the block's last ``observation_window`` tokens, at most its
    local window (so no candidate scores itself); one row if the block has no local window."""
    return max(1, min(needs.observation_window, block_len, plan.local_len))


def scoring_row_count(needs: ForwardNeeds, plan: BlockPlan, block_len: int, question_len: int) -> int:
    """How many of the forward's last rows score: the question (or its last ``question_rows``
    tokens), the block's observation window, or the whole block."""
    if needs.scoring_rows == "question":
        return question_len if needs.question_rows is None else min(needs.question_rows, question_len)
    if needs.scoring_rows == "block":
        return block_len
    return observation_rows(needs, plan, block_len)


def carried_mass(request: ScoreRequest, prefix_scores: Tensor | None, cache_shape: tuple[int, int]) -> Tensor:
    """(layers, kv_heads, slots) the block's mass over every slot plus what the prefix's slots
    carried in from earlier blocks (``prefix_scores``: (layers, kv_heads, prefix) or None when
    there is no prefix)."""
    totals = request.totals.expand(*cache_shape, request.totals.shape[-1]).clone()
    if prefix_scores is not None and prefix_scores.shape[-1]:
        totals[..., : prefix_scores.shape[-1]] += prefix_scores.to(totals.device)
    return totals


def _expand_fixed(fixed_slots: Tensor, chosen: Tensor) -> Tensor:
    """The fixed slots in the shape of ``chosen``: (n,) or broadcast to (layers, kv_heads, n)."""
    if chosen.dim() == 1:
        return fixed_slots
    return fixed_slots.expand(chosen.shape[0], chosen.shape[1], fixed_slots.numel())


def prefill_compressed(
    model: PreTrainedModel,
    context_ids: Tensor,
    question_ids: Tensor,
    method: MethodConfig,
    split: BudgetSplit | None,
    timer: PhaseTimer,
    buffer: KVBuffer | None = None,
) -> CompressedKV:
    """Prefill the context block by block, compressing after each block.

    The cache lives in one ``KVBuffer`` laid out ``[state | held tail | block | question]``: each
    block is written after the prefix, and the kept slots are then compacted left in place.

    Args:
        context_ids: (T,) context token ids (no BOS).
        question_ids: (q,) chat-templated question ids, appended to a block when the selector
            scores with the question (its needs' ``scoring_rows="question"``).
        method: what to keep.
        split: this sample's budget split (``None``: the full cache).
        timer: receives per-phase seconds; ``timer.stats`` gets ``cache_length_per_block``,
            ``compression_rounds`` (blocks whose step dropped context tokens) and ``one_shot``
            (the whole context in one block: ``block_size >= T``).
        buffer: an empty buffer to prefill into (sized by ``prefill_slots``); None = one sized
            for the prefill alone.

    Returns:
        The final compressed cache (state plus the last held tail): views of ``buffer``'s slots.
    """
    context_len = int(context_ids.numel())
    cache_shape = (hooks.n_layers(model), hooks.n_kv_heads(model))
    engine, needs = method.engine, method.selector.needs()
    if buffer is None:
        buffer = hooks.allocate_buffer(
            model, prefill_slots(method, split, context_len, int(question_ids.numel()))[0]
        )
    positions = torch.empty(0, dtype=torch.long)  # of the buffer's slots in use
    scores: Tensor | None = None  # carried mass of the slots in use (carry_scores)
    state_len = 0  # the slots after the state are the held tail
    spans = block_spans(engine.block_size, context_len)
    shares = block_globals(engine, split, context_len)  # the exact rule's global parts (accumulate)
    timer.stats.one_shot = len(spans) == 1
    for index, (block_start, block_len) in enumerate(spans):
        block_ids = context_ids[block_start : block_start + block_len]
        tail_len = buffer.length - state_len
        held = buffer.length  # context slots before this block (state and held tail)
        state_anchors = count_below(positions[..., :state_len], split.anchors) if split is not None else 0
        n_global = None if shares is None else shares[index]
        plan = plan_block(engine, split, state_len, state_anchors, tail_len, block_start, block_len, n_global)
        prefix_len = state_len + (tail_len if plan.prefix_has_tail else 0)
        buffer.truncate(prefix_len)  # a tail the block does not see is dropped (reference semantics)
        positions = positions[..., :prefix_len]
        scores = None if scores is None else scores[..., :prefix_len]
        must_choose = _must_choose(plan)
        carry = needs.carry_scores and split is not None  # scored every block, to accumulate
        scored = (must_choose or carry) and needs.scoring_rows is not None
        with_question = scored and needs.scoring_rows == "question"
        n_scoring_rows = scoring_row_count(needs, plan, block_len, int(question_ids.numel()))
        request = None
        if scored and needs.attention is not None:
            span = None
            if engine.score_norm == "window":
                block_end = prefix_len + block_len
                span = original_flash_span(engine, state_len, tail_len, plan, block_end)
            window = scored_window(needs, plan, prefix_len + block_len)
            request = _score_request(model, engine, needs.attention, window, n_scoring_rows, span)
        with timer.phase("forward"):  # 1. forward the block (+ question) over the compressed cache
            question = (question_ids, context_len) if with_question else None
            ids, new_positions = block_inputs(block_ids, block_start, question)
            forward_into(model, buffer, ids, new_positions, request)
        keys, values = buffer.view()
        step = CompressedKV(keys, values, join_positions(positions, new_positions), scores)
        if carry and request is not None:
            step = step.with_scores(carried_mass(request, scores, cache_shape))
        chosen = plan.candidate_slots if plan.n_select > 0 else plan.candidate_slots[:0]
        if must_choose:
            with timer.phase("score"):  # 2. collect the scores the selector needs
                evidence = block_evidence(
                    needs, step, plan.candidate_slots, n_scoring_rows, request, cache_shape,
                    block_start + block_len,
                )  # fmt: skip
            with timer.phase("select"):  # 3. select the global part
                kept = method.selector.select(evidence, plan.n_select)
                chosen = plan.candidate_slots[kept]
        with timer.phase("gather"):  # 4. compact the kept slots left, the held tail after them
            keep = torch.sort(torch.cat([_expand_fixed(plan.fixed_slots, chosen), chosen], dim=-1)).values
            slots = torch.cat([keep, _expand_fixed(plan.tail_slots, keep)], dim=-1)
            buffer.compact(slots)
            positions = take_slots(step.positions, slots)
            scores = None if step.scores is None else take_slots(step.scores, slots)
            state_len = int(keep.shape[-1])
            del step, keys, values
        timer.stats.cache_length_per_block.append(buffer.length)  # 5. record
        timer.stats.compression_rounds += int(buffer.length < held + block_len)
    keys, values = buffer.view()
    return CompressedKV(keys, values, positions, scores)


def prefill_slots(
    method: MethodConfig,
    split: BudgetSplit | None,
    context_len: int,
    question_len: int,
    answer_slots: int = 0,
) -> tuple[int, int]:
    """``(capacity, final)``: the buffer slots a call needs (its largest block forward, or the
    final cache plus ``answer_slots`` for the question and the answer, rounded up to a multiple of
    ``kernels.DECODE_CHUNK`` for the decoding steps' partial sums) and the final cache."""
    needs = method.selector.needs()
    question_rows = question_len if needs.scoring_rows == "question" else 0
    most, final = forward_slots_needed(method.engine, split, context_len, question_rows)
    capacity = max(most, final + answer_slots, 1)
    return -(-capacity // DECODE_CHUNK) * DECODE_CHUNK, final


def generate_answer(
    model: PreTrainedModel,
    state: CompressedKV,
    question_ids: Tensor,
    context_len: int,
    generation: GenerationConfig,
    eos_ids: frozenset[int],
    prefilled: Prefilled | None = None,
) -> tuple[list[int], Tensor]:
    """Prefill the question at ``T..`` over ``state`` and decode at true positions (greedy, or
    sampled when ``generation.temperature > 0``).

    With ``prefilled.buffer`` (the block engine) the question and the answer go into that buffer
    and decode with fixed-shape steps (CUDA graphs on CUDA); otherwise over a transformers cache,
    under ``hooks.ragged_attention`` where the prefill left a ragged cache (``prefilled.hidden_slots``),
    with SDPA's cuDNN backend off where layers hold different numbers of keys
    (``decoding.sdpa_without_cudnn``).

    Args:
        prefilled: what the prefill left: the question tokens already in ``state`` (at ``T..``;
            the rest are forwarded here), its ``first_logits`` when all of them are, its
            ``hidden_slots``, its buffer.

    Returns:
        ``(token_ids, first_token_logits)``: ids without the EOS, and the (vocab,) fp32 logits
        after the question prefill.
    """
    device = hooks.model_device(model)
    n_question = int(question_ids.numel())
    if prefilled is not None and prefilled.buffer is not None:
        buffer = prefilled.buffer
        hidden = forward_into(
            model, buffer, question_ids, torch.arange(context_len, context_len + n_question)
        )
        logits = hooks.next_token_logits(model, hidden[:, -1])
        buffer.reserve(buffer.length + generation.max_new_tokens - 1)
        step: Step = BufferSteps(model, buffer)
        token_ids = decode_tokens(logits, step, context_len + n_question, generation, eos_ids, device)
        return token_ids, logits[0]
    hidden_slots = None if prefilled is None else prefilled.hidden_slots
    uneven = len({int(layer_keys.shape[2]) for layer_keys in state.keys}) > 1
    with (
        sdpa_without_cudnn() if uneven else nullcontext(),
        hooks.ragged_attention(model) if hidden_slots is not None else nullcontext(),
    ):
        cache = forward_cache(model, state)
        done = 0 if prefilled is None else prefilled.question_in_state
        if prefilled is not None and prefilled.first_logits is not None:
            logits = prefilled.first_logits[None].float()
        else:
            rest = question_ids[done:]
            positions = torch.arange(context_len + done, context_len + n_question)
            hidden = hooks.forward_body(
                model, rest[None].to(device), positions[None].to(device), cache, hidden_slots=hidden_slots
            )
            logits = hooks.next_token_logits(model, hidden[:, -1])
        step = cache_steps(model, cache, hidden_slots)
        token_ids = decode_tokens(logits, step, context_len + n_question, generation, eos_ids, device)
    return token_ids, logits[0]


def cut_at_stop_strings(text: str, stop_strings: tuple[str, ...]) -> str:
    """``text`` up to the first occurrence of any stop string, stripped."""
    for stop in stop_strings:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text.strip()


@dataclass(frozen=True)
class GeneratedIds:
    """What ``compress_and_generate`` returns (token level, no tokenizer involved)."""

    token_ids: list[int]
    first_token_logits: Tensor
    kept_positions: Tensor
    stats: CallStats


@torch.inference_mode()
def compress_and_generate(
    model: PreTrainedModel,
    context_ids: list[int],
    question_ids: list[int],
    method: MethodConfig,
    generation: GenerationConfig,
    eos_ids: frozenset[int],
    generation_prompt_tokens: int = 0,
) -> GeneratedIds:
    """Compress the context and generate the answer's ids, stopping at ``eos_ids``.

    Args:
        generation_prompt_tokens: how many of the question's last tokens are the chat template's
            end of turn and generation prompt (a query-aware kvpress press leaves them outside
            its compression, as kvpress's evaluation does); 0 = unknown.

    Raises:
        UnsupportedModelError: the model cannot be run exactly (see ``hooks.check_supported``).
        ConfigError: a compression ratio that leaves no token of this context.
    """
    hooks.check_supported(model)
    device = hooks.model_device(model)
    context = torch.tensor(context_ids, dtype=torch.long)
    question = torch.tensor(question_ids, dtype=torch.long)
    ratio_without_context = not context_ids and method.engine.compression_ratio is not None
    split = None if ratio_without_context else method.split_for(len(context_ids))
    stats = CallStats(
        context_tokens=len(context_ids),
        question_tokens=len(question_ids),
        budget=None if split is None else split.total if split.target is None else split.target,
        compression_ratio=method.engine.compression_ratio,
    )
    timer = PhaseTimer(stats, device)
    prefill = PREFILLS[method.selector.prefill]
    answer_slots = len(question_ids) + generation.max_new_tokens
    with prefill.attention(model, method), track_peak_memory(stats, device):
        prefilled = prefill.run(
            model, context, question, method, split, timer, generation_prompt_tokens, answer_slots
        )
        stats.final_cache_length = prefilled.kept_tokens
        with timer.phase("decode"):
            token_ids, first_logits = generate_answer(
                model, prefilled.state, question, len(context_ids), generation, eos_ids, prefilled
            )
    stats.generated_tokens = len(token_ids)
    return GeneratedIds(token_ids, first_logits.cpu(), prefilled.kept_positions, stats)


def prefill_blocks(
    model: PreTrainedModel,
    context_ids: Tensor,
    question_ids: Tensor,
    method: MethodConfig,
    split: BudgetSplit | None,
    timer: PhaseTimer,
    generation_prompt_tokens: int = 0,
    answer_slots: int = 0,
) -> Prefilled:
    """The block engine's prefill (``prefill_compressed``) as a ``Prefilled`` (the question is
    forwarded afterwards, whole), in a buffer with ``answer_slots`` to spare for the question and
    the answer."""
    capacity, _ = prefill_slots(
        method, split, int(context_ids.numel()), int(question_ids.numel()), answer_slots
    )
    buffer = hooks.allocate_buffer(model, capacity)
    state = prefill_compressed(model, context_ids, question_ids, method, split, timer, buffer)
    positions = state.positions
    if not method.selector.selects_one_set and positions.dim() == 1:  # nothing was dropped: one shape always
        positions = positions.expand(hooks.n_layers(model), hooks.n_kv_heads(model), positions.numel())
    return Prefilled(state, positions, state.length, buffer=buffer)


def _block_attention(model: PreTrainedModel, method: MethodConfig) -> Any:
    return hooks.laserkv_attention(model)


@dataclass(frozen=True)
class Prefill:
    """One way to prefill a context: the attention it runs under (prefill and decoding) and the
    prefill itself."""

    attention: Callable[[PreTrainedModel, MethodConfig], AbstractContextManager[None]]
    run: Callable[
        [PreTrainedModel, Tensor, Tensor, MethodConfig, BudgetSplit | None, PhaseTimer, int, int], Prefilled
    ]


PREFILLS: dict[str, Prefill] = {
    "blocks": Prefill(_block_attention, prefill_blocks),
    "kvpress": Prefill(press_attention, prefill_with_press),
}
"""``Selector.prefill`` -> how it runs: the block engine, or the kvpress bridge."""


def answer_ids(
    model: PreTrainedModel,
    tokenizer: Any,
    context_ids: list[int],
    question_ids: list[int],
    method: MethodConfig,
    generation: GenerationConfig,
    generation_prompt_tokens: int = 0,
) -> EngineResult:
    """Compress the context and answer the question (token-id level), decoded to text.

    Args:
        generation_prompt_tokens: see ``compress_and_generate``.

    Raises:
        UnsupportedModelError: the model cannot be run exactly (see ``hooks.check_supported``).
        ConfigError: a compression ratio that leaves no token of this context.
    """
    eos_ids = hooks.eos_token_ids(model, tokenizer)
    generated = compress_and_generate(
        model, context_ids, question_ids, method, generation, eos_ids, generation_prompt_tokens
    )
    raw_text = str(tokenizer.decode(generated.token_ids, skip_special_tokens=True))
    text = cut_at_stop_strings(raw_text, generation.stop_strings)
    return EngineResult(
        text,
        raw_text,
        generated.token_ids,
        generated.first_token_logits,
        generated.kept_positions,
        generated.stats,
    )


def answer(
    model: PreTrainedModel,
    tokenizer: Any,
    context: str,
    question: str,
    method: MethodConfig,
    generation: GenerationConfig | None = None,
) -> EngineResult:
    """Compress ``context`` and answer ``question`` with an already loaded model and tokenizer."""
    return answer_ids(
        model,
        tokenizer,
        encode_context(tokenizer, context),
        encode_question(tokenizer, question),
        method,
        generation or GenerationConfig(),
    )


def answer_texts(
    model: PreTrainedModel,
    tokenizer: Any,
    context_text: str,
    question_text: str,
    method: MethodConfig,
    generation: GenerationConfig | None = None,
    generation_prompt: str = "",
) -> EngineResult:
    """Compress and answer a prompt already rendered and cut in two (a benchmark's chat-templated
    prompt cut at the end of its document, e.g. ``evals.chat.engine_texts``): both parts are
    tokenised as they are, the question part is not templated again.

    Args:
        generation_prompt: the end of ``question_text`` that is the chat template's end of turn
            and generation prompt (``EngineTexts.generation_prompt``), if known.
    """
    question_ids = encode_text(tokenizer, question_text)
    return answer_ids(
        model,
        tokenizer,
        encode_text(tokenizer, context_text),
        question_ids,
        method,
        generation or GenerationConfig(),
        trailing_tokens(question_ids, encode_text(tokenizer, generation_prompt)),
    )


def trailing_tokens(ids: list[int], suffix_ids: list[int]) -> int:
    """How many of ``suffix_ids``' last tokens ``ids`` ends with (a suffix tokenised on its own
    may merge differently at its first token)."""
    for start in range(len(suffix_ids)):
        tail = suffix_ids[start:]
        if len(tail) <= len(ids) and ids[len(ids) - len(tail) :] == tail:
            return len(tail)
    return 0
