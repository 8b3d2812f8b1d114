"""A unit's diagnostics, the row's ``diagnostics`` JSON: where the sample's answer sits in the
prompt the engine saw and which share of it the final cache kept (every sample whose benchmark
locates its answer, ``EvalSample.answers``), and, when the run asks for it, the attention recall
per layer (``laserkv.diagnostics.attention_recall``: one extra full-cache forward).

Layout (keys absent where there is nothing to say)::

    {"answers": [{"target": ..., "positions": [...], "depth": 37.21, "kept": 1.0}, ...],
     "answer_tokens": 5, "answer_kept": 0.8, "answer_kept_class": "partial",
     "answer_kept_by_layer": [...], "attention_recall_by_layer": [...], "seconds_recall": 1.9}

- ``positions``: the answer's token positions in the context (the tokens whose characters overlap
  the span, from the tokenizer's offsets); ``depth``: the first one's position in percent of the
  context tokens (chat prefix included); ``kept``: the share of its tokens the final cache kept,
  averaged over layers and KV heads.
- ``answer_kept``: the same over all the sample's answer tokens (rounded to 4 decimals);
  ``answer_kept_class``: ``all`` (every layer and head kept every answer token), ``none`` (none kept
  any) or ``partial``, decided on the exact counts; ``answer_kept_by_layer``: per layer (mean over
  KV heads), where the method keeps per layer or head.
- ``attention_recall_by_layer``: per layer, the share of the full-cache attention mass of the
  question rows on the context that falls on the kept tokens (mean over KV heads); the question
  rows are the whole question part the engine appends (the rest of the message, the template's end
  of turn and generation prompt); ``seconds_recall``: what that forward cost (not in the unit's
  ``seconds_total``); ``recall_error``: why it failed instead (out of memory, say), the unit's
  answer and its row kept.

A tokenizer without offsets (not a fast one) locates no answer: the row records none.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from evals.chat import EngineTexts
from evals.sample import EvalSample
from laserkv.diagnostics import attention_recall, kept_class, kept_mask, kept_share, token_positions
from laserkv.engine import EngineResult
from laserkv.prompting import encode_text

DIGITS = 4
"""Decimals kept of a share (1e-4 = one token in 10,000)."""


def context_offsets(tokenizer: Any, context_text: str) -> list[tuple[int, int]] | None:
    """The character offsets of the context's tokens, as the engine tokenised it
    (``prompting.encode_text``); None for a tokenizer without offsets (not a fast one) or one
    whose offsets call tokenises differently."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    encoded = tokenizer(context_text, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != encode_text(tokenizer, context_text):
        return None
    return [(int(first), int(last)) for first, last in encoded["offset_mapping"]]


def answer_positions(tokenizer: Any, texts: EngineTexts, sample: EvalSample) -> list[list[int]] | None:
    """Each answer span's token positions in the context, or None when the sample locates no
    answer, the tokenizer gives no offsets, or a span left the prompt (a template trimmed it)."""
    if not sample.answers:
        return None
    offsets = context_offsets(tokenizer, texts.context_text)
    if offsets is None:
        return None
    found = []
    for span in sample.answers:
        positions = token_positions(offsets, texts.message_start + span.start, texts.message_start + span.end)
        if not positions:
            return None
        found.append(positions)
    return found


def unit_diagnostics(
    model: Any,
    tokenizer: Any,
    texts: EngineTexts,
    sample: EvalSample,
    result: EngineResult,
    recall: bool = False,
) -> dict[str, Any] | None:
    """The row's ``diagnostics`` (see the module), or None when there is nothing to record."""
    context_len = result.stats.context_tokens
    positions = answer_positions(tokenizer, texts, sample)
    if context_len == 0 or (positions is None and not recall):
        return None
    mask = kept_mask(result.kept_positions, context_len)
    found: dict[str, Any] = {}
    if positions is not None:
        every = sorted({position for span in positions for position in span})
        share = kept_share(mask, every)
        found["answers"] = [
            {
                "target": span.target,
                "positions": span_positions,
                "depth": round(100 * span_positions[0] / context_len, 2),
                "kept": round(float(kept_share(mask, span_positions).mean()), DIGITS),
            }
            for span, span_positions in zip(sample.answers, positions, strict=True)
        ]
        found["answer_tokens"] = len(every)
        found["answer_kept"] = round(float(share.mean()), DIGITS)
        found["answer_kept_class"] = kept_class(mask, every)
        if result.kept_positions.dim() == 3:
            found["answer_kept_by_layer"] = [round(float(value), DIGITS) for value in share.mean(dim=-1)]
    if recall:
        found.update(recall_record(model, tokenizer, texts, mask))
    return found


def recall_record(model: Any, tokenizer: Any, texts: EngineTexts, mask: Any) -> dict[str, Any]:
    """``attention_recall_by_layer`` and ``seconds_recall``, or ``recall_error`` when the extra
    forward fails (out of memory at a long context, say): the unit keeps its answer either way."""
    start = time.perf_counter()
    try:
        context_ids = encode_text(tokenizer, texts.context_text)
        question_ids = encode_text(tokenizer, texts.question_text)
        by_layer = attention_recall(model, context_ids, question_ids, mask)
    except Exception as error:  # a diagnostic never costs the unit its answer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"recall_error": f"{type(error).__name__}: {error}"[:500]}
    return {
        "attention_recall_by_layer": [round(value, DIGITS) for value in by_layer],
        "seconds_recall": round(time.perf_counter() - start, 3),
    }
