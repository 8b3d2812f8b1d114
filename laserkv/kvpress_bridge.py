"""The kvpress bridge: a ``kvpress`` method's prefill, with kvpress's own semantics.

As kvpress's pipeline does it (``KVPressTextGenerationPipeline._forward``): the whole context is
prefilled in one forward with the press's hooks, which compress each layer's cache after its
attention; the question then follows over the compressed cache at positions ``T..``. With
``query_aware`` the question is part of the compressed sequence (kvpress's evaluation appends it
to the context), all but the chat template's end of turn and generation prompt, which follow
over the compressed cache.

The budget: a method's B (given or derived from its ratio; the exact rule's target when it has
one) is the number of context tokens to keep, so the press's ``compression_ratio`` (the fraction
it removes) is set per sample to keep B of T tokens (B + q of T + q when the question is
compressed too; ``press_ratio``). Presses that size their own layers or heads (PyramidKV,
AdaKV, ...) decide the rest; what they kept is measured: the kept
positions are recovered by matching each kept key to the prefilled keys (exact integer
fingerprints), and presses that mask keys instead of dropping them (AdaKV's
``masked_key_indices``) have their masked positions removed.

After the prefill, a cache whose layers keep different numbers of slots, or whose press masked
keys, is answered under ``hooks.ragged_attention``: causal per layer, the masked keys given no
weight (kvpress instead overwrites them with a fake key searched at every forward), the
question in one forward.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from transformers import PreTrainedModel

from laserkv import hooks
from laserkv.budget import BudgetSplit
from laserkv.config import MethodConfig
from laserkv.selectors.kvpress import KVPressSelector, kvpress_module
from laserkv.state import CompressedKV, Prefilled
from laserkv.stats import PhaseTimer

MASK_ATTRIBUTE = "masked_key_indices"
INTEGER_VIEWS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def press_ratio(n_keep: int, n_tokens: int, rounds: bool = False) -> float:
    """kvpress's ``compression_ratio`` that keeps ``n_keep`` of ``n_tokens``; 0 (no compression)
    when everything fits.

    Most presses keep ``int(n_tokens * (1 - ratio))``, so the ratio aims half a token above
    ``n_keep`` to survive floating-point rounding. A press that rounds instead (``rounds``:
    PyramidKV, whose layer budgets are ``round(...)`` of a pyramid averaging ``n_tokens * (1 -
    ratio)``, and which falls back to ``round(n_tokens * (1 - ratio))``) is aimed at ``n_keep``
    itself, and exactly: the float ratio nearest ``1 - n_keep / n_tokens`` for which
    ``n_tokens * (1 - ratio)`` is ``n_keep`` in floating point. Half a token above kept
    ``n_keep + 1`` on about half of the lengths, and an aim a rounding error off ``n_keep`` can
    push a pyramid's two halves (``x.5`` and ``y.5``, PyramidKV's layer budgets on two layers)
    the same way. The layers' mean is then B, and so is the kept count the bridge records (the
    mean over layers and heads, rounded), with PyramidKV's default shape (beta 20); the layers'
    own rounding can move a much steeper pyramid's mean (beta 2) by half a token.
    """
    if n_keep >= n_tokens:
        return 0.0
    if not rounds:
        return 1.0 - (n_keep + 0.5) / n_tokens
    return exact_ratio(n_keep, n_tokens)


def exact_ratio(n_keep: int, n_tokens: int, tries: int = 64) -> float:
    """The float ``ratio`` closest to ``1 - n_keep / n_tokens`` with ``n_tokens * (1 - ratio) ==
    n_keep`` in floating point (the nearest one itself when none within ``tries`` steps is)."""
    nearest = 1.0 - n_keep / n_tokens
    up = down = nearest
    for _ in range(tries):
        for ratio in (down, up):
            if n_tokens * (1 - ratio) == n_keep:
                return ratio
        down, up = math.nextafter(down, -math.inf), math.nextafter(up, math.inf)
    return nearest


def key_fingerprints(keys: Tensor, weights: Tensor) -> Tensor:
    """(1, kv_heads, n, d) keys -> (kv_heads, n) int64 fingerprints: the bit patterns of each key
    as integers, weighted and summed in int64 (exact, so equal keys always match)."""
    bits = keys[0].contiguous().view(INTEGER_VIEWS[keys.element_size()]).to(torch.int64)
    return (bits * weights.to(bits.device)).sum(-1)


def match_positions(full: Tensor, kept: Tensor) -> Tensor:
    """Where each kept key sat in the full sequence, per head.

    Equal keys at several positions (identical hidden states, e.g. a zero embedding) are matched in
    order: the j-th kept copy (in ``kept``'s order) takes the j-th of their positions (ascending).
    Equal keys carry equal values, so which copy sits where does not change attention; each kept
    copy gets its own position.

    Args:
        full: (kv_heads, n) fingerprints of the prefilled keys; kept: (kv_heads, k) of the kept.

    Raises:
        RuntimeError: a kept key that is not among the prefilled ones (or kept more often than
            the prefill produced it).

    Returns:
        (kv_heads, k) int64 positions (in ``kept``'s order).
    """
    positions, found = matched_positions(full, kept)
    if not bool(found):
        raise RuntimeError(NOT_PRODUCED)
    return positions


NOT_PRODUCED = "the press kept a key that the prefill did not produce"
MASKED_AND_REORDERED = "a press both masked keys and reordered its cache"  # masks index slots


def matched_positions(full: Tensor, kept: Tensor) -> tuple[Tensor, Tensor]:
    """``match_positions`` without its check, so nothing waits for the GPU: the positions (clamped
    where a key was not found) and a 0-dimensional bool tensor, whether every kept key was found."""
    order = torch.argsort(full, dim=-1, stable=True)
    ranked = torch.gather(full, -1, order)
    where = torch.searchsorted(ranked, kept) + copy_index(kept)
    inside = where < full.shape[-1]
    where = where.clamp(max=full.shape[-1] - 1)
    found = inside.all() & (torch.gather(ranked, -1, where) == kept).all()
    return torch.gather(order, -1, where), found


def copy_index(values: Tensor) -> Tensor:
    """(rows, k) -> (rows, k): for each entry, how many equal entries precede it in its row."""
    order = torch.argsort(values, dim=-1, stable=True)
    ranked = torch.gather(values, -1, order)
    index = torch.arange(values.shape[-1], device=values.device).expand_as(values)
    starts = torch.ones_like(ranked, dtype=torch.bool)
    starts[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    first = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=-1).values
    return torch.empty_like(index).scatter_(-1, order, index - first)


def _masked(
    mask: tuple[Tensor, Tensor, Tensor] | None, n_kv_heads: int, n_slots: int, device: torch.device
) -> Tensor:
    """(kv_heads, slots) bool: the slots a press masked (AdaKV's (batch, head, slot) indices)."""
    masked = torch.zeros(n_kv_heads, n_slots, dtype=torch.bool, device=device)
    if mask is not None:
        masked[mask[1].to(device), mask[2].to(device)] = True
    return masked


def _visible_positions(positions: Tensor, masked: Tensor, context_len: int) -> tuple[Tensor, Tensor]:
    """Per head: the ascending context positions not masked, -1 for the others sorted in front (as
    many as the slots; ``_trimmed`` drops the padding no head needs), and how many each head has."""
    visible = ~masked & (positions < context_len)
    keyed = torch.where(visible, positions, torch.full_like(positions, -1))
    return torch.sort(keyed, dim=-1).values, visible.sum(-1)


def _trimmed(keyed: Tensor, counts: Tensor) -> Tensor:
    """``_visible_positions``' sorted positions without the columns of -1 that every head has."""
    width = int(counts.max()) if counts.numel() else 0
    return keyed[..., keyed.shape[-1] - width :]


def _to_host(tensors: list[Tensor]) -> list[Tensor]:
    """Integer or bool device tensors as int64 CPU tensors of the same shapes, in one transfer (one
    wait for the GPU instead of one per tensor)."""
    flat = torch.cat([tensor.reshape(-1).to(torch.int64) for tensor in tensors]).cpu()
    pieces = flat.split([tensor.numel() for tensor in tensors])
    return [piece.reshape(tensor.shape) for piece, tensor in zip(pieces, tensors, strict=True)]


@contextmanager
def press_attention(model: PreTrainedModel, method: MethodConfig) -> Iterator[None]:
    """The attention the press needs (kvpress's patched ``sdpa``, or ``eager`` for presses that read
    the attention weights) for the whole call, prefill and decoding; the press's per-layer masks
    are removed on exit."""
    selector = method.selector
    assert isinstance(selector, KVPressSelector)
    kvpress_module()  # patches transformers' attention functions for head-wise masks
    try:
        with hooks.attention_implementation(model, selector.attention):
            yield
    finally:
        hooks.clear_module_attribute(model, MASK_ATTRIBUTE)


def prefill_with_press(
    model: PreTrainedModel,
    context_ids: Tensor,
    question_ids: Tensor,
    method: MethodConfig,
    split: BudgetSplit | None,
    timer: PhaseTimer,
    generation_prompt_tokens: int = 0,
    answer_slots: int = 0,
) -> Prefilled:
    """Prefill the context (and the question if query-aware) under the method's press.

    Args:
        answer_slots: unused (the press's cache grows as transformers' does).
        split: the sample's budget; its total is the context tokens to keep (None: keep all).
        generation_prompt_tokens: the question's last tokens that are the chat template's end of
            turn and generation prompt: a query-aware press compresses the question without
            them and they are forwarded over the compressed cache, as kvpress's evaluation does
            (it appends the question to the context and leaves the template's suffix out).
            0 (unknown): the whole question is compressed and the answer starts from that
            forward's logits.
    """
    selector = method.selector
    assert isinstance(selector, KVPressSelector)
    context_len, question_len = int(context_ids.numel()), int(question_ids.numel())
    in_state = question_len - generation_prompt_tokens if selector.query_aware else 0
    sequence = torch.cat([context_ids, question_ids[:in_state]])
    n_tokens = int(sequence.numel())
    extra = in_state
    kept_context = None if split is None else split.total if split.target is None else split.target
    n_keep = n_tokens if kept_context is None else kept_context + extra
    ratio = press_ratio(n_keep, n_tokens, selector.rounds)
    press = selector.build(ratio)
    device = hooks.model_device(model)

    def fingerprint(keys: Tensor) -> Tensor:
        generator = torch.Generator().manual_seed(0)
        return key_fingerprints(keys, torch.randint(-(2**62), 2**62, (keys.shape[-1],), generator=generator))

    cache = hooks.cache_from_kv(model, [], [])
    positions = torch.arange(n_tokens)[None].to(device)
    with (
        timer.phase("forward"),
        hooks.cache_position_restored(model),
        hooks.layer_key_probe(model, fingerprint) as before,  # before the press's hooks: all keys
        press(model),
        hooks.layer_key_probe(model, fingerprint) as after,  # after them: the kept keys
    ):
        hidden = hooks.forward_body(model, sequence[None].to(device), positions, cache)
    with timer.phase("gather"):
        keys, values = hooks.kv_from_cache(cache)
        masks = hooks.module_attribute(model, MASK_ATTRIBUTE)
        hooks.clear_module_attribute(model, MASK_ATTRIBUTE)  # from here on the hidden slots mask them
        kept_positions: list[Tensor] = []  # these five on the device
        keyed: list[Tensor] = []
        counts: list[Tensor] = []
        problems: list[Tensor] = []
        hidden_slots: list[Tensor] = []
        for layer in range(len(keys)):
            layer_positions, found = matched_positions(before[layer], after[layer])  # (kv_heads, k)
            order = torch.argsort(layer_positions, dim=-1)
            layer_positions = torch.gather(layer_positions, -1, order)
            index = order[None, :, :, None].expand(1, -1, -1, keys[layer].shape[-1])
            keys[layer] = torch.gather(keys[layer], 2, index)
            values[layer] = torch.gather(values[layer], 2, index)
            reordered = (order != torch.sort(order, dim=-1).values).any()
            masked = _masked(masks[layer], layer_positions.shape[0], int(order.shape[-1]), device)
            layer_keyed, count = _visible_positions(layer_positions, masked, context_len)
            kept_positions.append(layer_positions)
            keyed.append(layer_keyed)
            counts.append(count)
            problems.append(torch.stack([~found, reordered & (masks[layer] is not None)]))
            hidden_slots.append(masked)
        # one transfer, so one wait for the GPU for the whole gather, not several per layer
        host = _to_host([*kept_positions, *keyed, *counts, *problems])
        n_layers = len(keys)
        per_layer_positions, keyed, counts, problems = (
            host[start : start + n_layers] for start in range(0, 4 * n_layers, n_layers)
        )
        for not_found, masked_and_reordered in problems:  # the first layer with a problem, as a loop would
            if not_found or masked_and_reordered:
                raise RuntimeError(NOT_PRODUCED if not_found else MASKED_AND_REORDERED)
        visible = [_trimmed(layer_keyed, count) for layer_keyed, count in zip(keyed, counts, strict=True)]
    state = CompressedKV(tuple(keys), tuple(values), _stack_padded(per_layer_positions))
    whole_question = selector.query_aware and in_state == question_len
    first_logits = hooks.next_token_logits(model, hidden[:, -1])[0] if whole_question else None
    kept_tokens = round(float(torch.stack(counts).float().mean()))
    timer.stats.cache_length_per_block.append(kept_tokens)  # one compression, after the whole context
    timer.stats.compression_rounds = int(ratio > 0)
    timer.stats.one_shot = context_len > 0
    uneven = len({int(layer.shape[2]) for layer in keys}) > 1
    masked_keys = any(mask is not None for mask in masks)
    return Prefilled(
        state,
        _stack_padded(visible),
        kept_tokens,
        first_logits,
        hidden_slots=tuple(hidden_slots) if uneven or masked_keys else None,
        question_in_state=in_state,
    )


def _stack_padded(per_layer: list[Tensor]) -> Tensor:
    """Per-layer (kv_heads, n_i) positions as one (layers, kv_heads, max n_i), -1 padded in front."""
    width = max(int(item.shape[-1]) for item in per_layer)
    padded = [torch.nn.functional.pad(item, (width - int(item.shape[-1]), 0), value=-1) for item in per_layer]
    return torch.stack(padded)
