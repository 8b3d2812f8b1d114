"""Why a method failed, on the engine's side: which context positions each layer and KV head kept
(``kept_mask``), which share of an answer's tokens that is (``kept_share``), and which share of
the full cache's attention from the question falls on the kept tokens (``attention_recall``, one
extra full-cache forward). Pure functions over kept positions, except the recall forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import PreTrainedModel

from laserkv import hooks
from laserkv.backends import ScoreRequest
from laserkv.engine import forward_into

RECALL_BLOCK = 4096
"""Context tokens per forward of the recall's full-cache prefill (bounds its activations)."""


def token_positions(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    """The tokens (by their ``(start, end)`` character offsets, a fast tokenizer's offset mapping)
    that overlap characters ``[start, end)``; tokens without characters (zero width) never do."""
    return [
        index for index, (first, last) in enumerate(offsets) if first < end and last > start and last > first
    ]


def kept_mask(kept_positions: Tensor, context_len: int) -> Tensor:
    """(layers, kv_heads, context_len) bool: the context positions each layer and KV head kept.

    Args:
        kept_positions: ``EngineResult.kept_positions``: (n,) kept by every layer and head (the
            mask is then (1, 1, context_len)), or (layers, kv_heads, n) with -1 padding.
    """
    kept = kept_positions.detach().to("cpu", torch.long)
    if kept.dim() == 1:
        kept = kept[None, None]
    mask = torch.zeros(*kept.shape[:2], context_len + 1, dtype=torch.bool)
    mask.scatter_(-1, torch.where(kept >= 0, kept, context_len), True)  # padding -> the spare column
    return mask[..., :context_len]


def kept_share(mask: Tensor, positions: Sequence[int]) -> Tensor:
    """(layers, kv_heads) fp64: the share of ``positions`` each layer and KV head kept."""
    return mask[..., list(positions)].double().mean(dim=-1)


def kept_class(mask: Tensor, positions: Sequence[int]) -> str:
    """``all`` when every layer and KV head kept every one of ``positions``, ``none`` when none kept
    any, else ``partial`` (on the exact entries, not a rounded share)."""
    entries = mask[..., list(positions)]
    return "all" if bool(entries.all()) else "partial" if bool(entries.any()) else "none"


@torch.inference_mode()
def attention_recall(
    model: PreTrainedModel, context_ids: Sequence[int], question_ids: Sequence[int], mask: Tensor
) -> list[float]:
    """Per layer, the share of the question rows' attention mass on the context that falls on the
    kept tokens, under the full cache: the context is prefilled uncompressed (in blocks of
    ``RECALL_BLOCK``), then the question is forwarded over it with every layer's attention mass of
    its rows collected per KV head (query heads summed within their group, each row normalised
    over all the keys it sees). Per layer and KV head: mass on kept context tokens / mass on all
    context tokens; the layer's value is the mean over its KV heads.

    Args:
        mask: ``kept_mask`` of the method's kept positions ((1, 1, T) broadcasts to every layer).

    Returns:
        One share per layer, in [0, 1].
    """
    hooks.check_supported(model)
    context_len, question_len = len(context_ids), len(question_ids)
    layers, kv_heads = hooks.n_layers(model), hooks.n_kv_heads(model)
    if context_len == 0 or question_len == 0:
        raise ValueError("attention recall needs a context and a question")
    device = hooks.model_device(model)
    buffer = hooks.allocate_buffer(model, context_len + question_len)
    context = torch.tensor(list(context_ids), dtype=torch.long)
    with hooks.laserkv_attention(model):
        for start in range(0, context_len, RECALL_BLOCK):
            block = context[start : start + RECALL_BLOCK]
            forward_into(model, buffer, block, torch.arange(start, start + block.numel()))
        totals = torch.zeros(layers, kv_heads, context_len, device=device)
        request = ScoreRequest("flash", question_len, 0, totals)
        question = torch.tensor(list(question_ids), dtype=torch.long)
        forward_into(model, buffer, question, torch.arange(context_len, context_len + question_len), request)
        request.check_reported(layers)
    mass = totals.cpu()
    on_kept = (mass * mask.expand(layers, kv_heads, context_len)).sum(dim=-1)
    return (on_kept / mass.sum(dim=-1)).mean(dim=-1).tolist()
