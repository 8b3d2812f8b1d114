"""Exact attention-mass scores from plain tensors (method.md section 3).

score(key j) = sum over query heads (GQA expanded) and question rows i of softmax_i(j), the
probability from row i to key j normalised over all keys row i attends to. Layers are summed
by calling :func:`add_attention_mass` once per layer into the same fp32 buffer.
"""

from __future__ import annotations

import torch
from torch import Tensor


def expand_kv_heads(states: Tensor, n_query_heads: int) -> Tensor:
    """Repeat KV heads for grouped-query attention: (b, kv_h, n, d) -> (b, h, n, d)."""
    n_kv_heads = states.shape[1]
    if n_kv_heads == n_query_heads:
        return states
    return states.repeat_interleave(n_query_heads // n_kv_heads, dim=1)


def causal_allowed(n_rows: int, n_keys: int, device: torch.device) -> Tensor:
    """Bottom-right aligned causal pattern: row i sees keys ``<= n_keys - n_rows + i``.

    Returns:
        (n_rows, n_keys) bool, True where attention is allowed.
    """
    rows = torch.arange(n_rows, device=device)[:, None]
    keys = torch.arange(n_keys, device=device)[None, :]
    return keys <= rows + (n_keys - n_rows)


def attention_probabilities(queries: Tensor, keys: Tensor, scaling: float, allowed: Tensor | None) -> Tensor:
    """Softmax attention probabilities in fp32.

    Args:
        queries: (b, h, q, d) post-RoPE queries.
        keys: (b, kv_h, k, d) post-RoPE keys (expanded to h heads here).
        scaling: logit scale, usually ``head_dim ** -0.5``.
        allowed: bool mask broadcastable to (b, h, q, k), True = attend; ``None`` = the
            bottom-right causal pattern.

    Returns:
        (b, h, q, k) fp32 probabilities; each row sums to 1 over its allowed keys.
    """
    keys_expanded = expand_kv_heads(keys, queries.shape[1]).float()
    logits = torch.matmul(queries.float(), keys_expanded.transpose(-1, -2)) * scaling
    if allowed is None:
        allowed = causal_allowed(queries.shape[-2], keys.shape[-2], queries.device)
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1)


def add_attention_mass(totals: Tensor, probabilities: Tensor, window_start: int, layer_index: int) -> None:
    """Add one layer's attention mass of ``probabilities`` to ``totals`` (in place).

    Args:
        totals: (layers or 1, kv_heads or 1, w) fp32 running scores of keys
            ``[window_start, window_start + w)``. A first dimension of 1 sums over layers, a
            second of 1 over heads; otherwise query heads are summed within their KV head group.
        probabilities: (b, h, rows, k) probabilities of the scoring rows only.
        window_start: first key index that ``totals`` covers.
        layer_index: the layer these probabilities come from.
    """
    window_end = window_start + totals.shape[-1]
    mass = probabilities[..., window_start:window_end].sum(dim=(0, 2), dtype=torch.float32)  # (h, w)
    add_head_mass(totals, mass, layer_index)


def add_head_mass(totals: Tensor, mass: Tensor, layer_index: int) -> None:
    """Add (heads, w) mass, query heads grouped by KV head (contiguous groups), into ``totals``."""
    n_groups = totals.shape[1]
    grouped = mass.reshape(n_groups, mass.shape[0] // n_groups, -1).sum(1)  # (kv_heads or 1, w)
    row = layer_index if totals.shape[0] > 1 else 0
    totals[row].add_(grouped.to(totals.device))


def fp32_logits(queries: Tensor, keys: Tensor, scaling: float) -> Tensor:
    """(g, r, d) x (g, c, d) -> (g, r, c) scaled dot products in fp32.

    Half-precision CUDA inputs multiply on tensor cores with fp32 outputs; others are upcast.
    """
    return fp32_products(queries, keys.transpose(1, 2)) * scaling


def fp32_products(left: Tensor, right: Tensor) -> Tensor:
    """(g, r, k) x (g, k, c) -> (g, r, c) batched products in fp32 (half-precision CUDA inputs on
    tensor cores with fp32 outputs; others upcast)."""
    if left.is_cuda and left.dtype in (torch.bfloat16, torch.float16):
        try:
            return torch.bmm(left, right, out_dtype=torch.float32)
        except (TypeError, RuntimeError):  # a torch without bmm's out_dtype
            pass
    return torch.bmm(left.float(), right.float())


def _visible(row_limits: Tensor | None, allowed_rows: Tensor | None, start: int, stop: int) -> Tensor:
    """(r, c) bool: which keys ``[start, stop)`` each scoring row may attend to."""
    if allowed_rows is not None:
        return allowed_rows[:, start:stop]
    assert row_limits is not None
    keys = torch.arange(start, stop, device=row_limits.device)
    return keys[None, :] <= row_limits[:, None]


def streamed_row_mass(
    query_rows: Tensor,
    keys: Tensor,
    scaling: float,
    allowed_rows: Tensor | None,
    window_start: int,
    window: int,
    normalise_span: tuple[int, int] | None = None,
    chunk: int = 8192,
    row_chunk: int = 1024,
) -> Tensor:
    """Attention mass of the scoring rows on keys ``[window_start, window_start + window)``,
    without the rows' full probability matrix: exp(q.k * scaling - lse) with lse the rows'
    log-sum-exp over all the keys they attend to (``normalise_span=None``, eager semantics) or
    over the keys ``[start, stop)`` of ``normalise_span`` only (the original flash scorer's
    normalisation over its scored window).

    Args:
        query_rows: (1, h, r, d) post-RoPE queries of the scoring rows (the forward's last rows).
        keys: (1, kv_h, k, d) post-RoPE keys of every slot.
        allowed_rows: (r, k) bool visibility of those rows, or None for the bottom-right causal
            pattern (row i sees keys <= k - r + i).
        chunk: keys per step of the log-sum-exp pass (memory O(h * r * chunk)).
        row_chunk: scoring rows per pass (many rows, e.g. a whole block, go in slices).

    Returns:
        (h, window) fp32 mass per query head. Memory O(h * min(r, row_chunk) * window), transient.
    """
    rows, n_keys = query_rows.shape[2], keys.shape[2]
    row_limits = None
    if allowed_rows is None:
        row_limits = torch.arange(rows, device=keys.device) + (n_keys - rows)
    total = None
    for first in range(0, rows, row_chunk):
        last = min(first + row_chunk, rows)
        limits = None if row_limits is None else row_limits[first:last]
        allowed = None if allowed_rows is None else allowed_rows[first:last]
        mass = _row_slice_mass(
            query_rows[..., first:last, :], keys, scaling, limits, allowed, window_start, window,
            normalise_span, chunk,
        )  # fmt: skip
        total = mass if total is None else total + mass
    assert total is not None, "at least one scoring row"
    return total


def _row_slice_mass(
    query_rows: Tensor,
    keys: Tensor,
    scaling: float,
    row_limits: Tensor | None,
    allowed_rows: Tensor | None,
    window_start: int,
    window: int,
    normalise_span: tuple[int, int] | None,
    chunk: int,
) -> Tensor:
    """``streamed_row_mass`` for one slice of rows (visibility by ``row_limits`` or ``allowed_rows``)."""
    _, heads, rows, dim = query_rows.shape
    kv_heads, n_keys = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    grouped = query_rows[0].reshape(kv_heads, group * rows, dim)  # query heads h = kv * group + j
    window_end = window_start + window
    lse_start, lse_stop = (0, n_keys) if normalise_span is None else normalise_span
    lse = torch.full((kv_heads, group * rows), float("-inf"), device=keys.device)
    for start in range(lse_start, lse_stop, chunk):
        stop = min(start + chunk, lse_stop)
        logits = fp32_logits(grouped, keys[0, :, start:stop], scaling).view(kv_heads, group, rows, -1)
        logits = logits.masked_fill(~_visible(row_limits, allowed_rows, start, stop), float("-inf"))
        lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=-1).view(kv_heads, group * rows))
    logits = fp32_logits(grouped, keys[0, :, window_start:window_end], scaling).view(
        kv_heads, group, rows, -1
    )
    logits = logits.masked_fill(~_visible(row_limits, allowed_rows, window_start, window_end), float("-inf"))
    lse = lse.view(kv_heads, group, rows, 1)
    probabilities = torch.exp(logits - lse).masked_fill(
        torch.isneginf(lse), 0.0
    )  # a row seeing nothing adds 0
    return probabilities.sum(dim=2).reshape(heads, window)


def window_row_mass(
    query_rows: Tensor,
    keys: Tensor,
    lse: Tensor,
    scaling: float,
    window_start: int,
    window: int,
    max_elements: int = 1 << 26,
) -> Tensor:
    """Attention mass of the scoring rows on keys ``[window_start, window_start + window)``, given
    each row's log-sum-exp over all the keys it sees: exp(q.k * scaling - lse), bottom-right
    causal (row i of r sees keys ``<= k - r + i``).

    Args:
        query_rows: (1, h, r, d) post-RoPE queries of the scoring rows (the forward's last rows).
        keys: (1, kv_h, k, d) post-RoPE keys of every slot.
        lse: (h, r) fp32 log-sum-exp of each row (natural log).
        max_elements: fp32 logits per step (rows and keys go in slices below it).

    Returns:
        (h, window) fp32 mass per query head.
    """
    _, heads, rows, dim = query_rows.shape
    kv_heads, n_keys = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    row_step = max(1, min(rows, max_elements // (heads * max(window, 1))))
    key_step = max(1, min(window, max_elements // (heads * row_step)))
    total = torch.zeros(heads, window, device=keys.device)
    for first in range(0, rows, row_step):
        last = min(first + row_step, rows)
        grouped = query_rows[0, :, first:last].reshape(kv_heads, group * (last - first), dim)
        row_lse = lse[:, first:last].reshape(kv_heads, group, last - first, 1)
        limits = torch.arange(first, last, device=keys.device) + (n_keys - rows)
        for start in range(0, window, key_step):
            stop = min(start + key_step, window)
            slots = torch.arange(window_start + start, window_start + stop, device=keys.device)
            logits = fp32_logits(grouped, keys[0, :, window_start + start : window_start + stop], scaling)
            logits = logits.view(kv_heads, group, last - first, stop - start)
            probabilities = torch.exp(logits - row_lse).masked_fill(slots[None, :] > limits[:, None], 0.0)
            total[:, start:stop] += probabilities.sum(dim=2).reshape(heads, stop - start)
    return total


POOLINGS = ("avgpool", "maxpool")
"""SnapKV's two smoothings of the scores along the slots (its reference code offers both)."""


def pool_scores(scores: Tensor, kernel: int, pooling: str = "avgpool") -> Tensor:
    """Smooth each score with its neighbours along the last dimension (SnapKV's pooling).

    ``avgpool``: a window of ``kernel`` (odd) slots centred on each slot, zero-padded at both ends
    and always divided by ``kernel`` (``avg_pool1d`` with ``count_include_pad``, as kvpress and
    SnapKV do). ``maxpool``: the largest score in that window (padding never wins).
    """
    if kernel == 1:
        return scores
    flat = scores.reshape(-1, 1, scores.shape[-1])
    if pooling == "maxpool":
        pooled = torch.nn.functional.max_pool1d(flat, kernel, stride=1, padding=kernel // 2)
    else:
        pooled = torch.nn.functional.avg_pool1d(flat, kernel, stride=1, padding=kernel // 2)
    return pooled.reshape(scores.shape)


def candidate_attention_mass(
    totals: Tensor, window_slots: Tensor, pooling: int, pooling_kind: str = "avgpool"
) -> Tensor:
    """The accumulated (optionally pooled) attention mass of each candidate.

    Args:
        totals: (layers or 1, kv_heads or 1, w) fp32 attention mass per window slot.
        window_slots: (n,) int64 candidate slots, relative to the window start.
        pooling: odd pooling kernel (1 = none).
        pooling_kind: ``avgpool`` or ``maxpool`` (``POOLINGS``).

    Returns:
        (layers or 1, kv_heads or 1, n) fp32 scores.
    """
    return pool_scores(totals, pooling, pooling_kind)[..., window_slots.to(totals.device)]
