"""The block engine's kernels and buffer against brute force on CPU tensors: one attention call's
output and log-sum-exp, scores from that log-sum-exp, the fixed-shape decoding attention, and
in-place compaction."""

from __future__ import annotations

import pytest
import torch

from laserkv.backends import ScoreRequest, flash_row_scores
from laserkv.kernels import (
    _reference_attention,
    block_attention,
    bottom_right_allowed,
    decode_attention,
    ragged_attention,
)
from laserkv.kv_buffer import KVBuffer
from laserkv.scorers.exact import attention_probabilities, window_row_mass


def brute_force(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor):
    """fp64 softmax attention with GQA expansion: ((1, q, h, d) output, (h, q) log-sum-exp)."""
    group = query.shape[1] // key.shape[1]
    keys = key.double().repeat_interleave(group, 1)
    values = value.double().repeat_interleave(group, 1)
    logits = (query.double() @ keys.transpose(-1, -2)) * query.shape[-1] ** -0.5
    logits = logits.masked_fill(~allowed, float("-inf"))
    output = torch.softmax(logits, -1) @ values
    return output.transpose(1, 2), torch.logsumexp(logits, -1)[0]


def random_qkv(heads: int, kv_heads: int, rows: int, keys: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(1, heads, rows, 16, generator=generator)
    key = torch.randn(1, kv_heads, keys, 16, generator=generator)
    value = torch.randn(1, kv_heads, keys, 16, generator=generator)
    return query, key, value


def test_bottom_right_allowed_is_the_engine_mask() -> None:
    allowed = bottom_right_allowed(3, 5, torch.device("cpu"))
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(allowed, expected)


@pytest.mark.parametrize(("heads", "kv_heads"), [(4, 2), (6, 1), (4, 4)])
@pytest.mark.parametrize(("rows", "keys"), [(5, 5), (5, 23), (1, 9)])
def test_block_attention_output_and_lse_equal_brute_force(
    heads: int, kv_heads: int, rows: int, keys: int
) -> None:
    query, key, value = random_qkv(heads, kv_heads, rows, keys)
    allowed = bottom_right_allowed(rows, keys, torch.device("cpu"))
    expected_output, expected_lse = brute_force(query, key, value, allowed)
    for output, lse in (
        block_attention(query, key, value, 16**-0.5),
        _reference_attention(query, key, value, 16**-0.5, allowed),
    ):
        assert output.shape == (1, rows, heads, 16) and lse.shape == (heads, rows)
        torch.testing.assert_close(output.double(), expected_output, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(lse.double(), expected_lse, rtol=1e-5, atol=1e-5)


def test_block_attention_reads_views_of_a_larger_buffer() -> None:
    query, key, value = random_qkv(4, 2, 3, 11, seed=1)
    store_k, store_v = torch.zeros(1, 2, 40, 16), torch.zeros(1, 2, 40, 16)
    store_k[:, :, :11], store_v[:, :, :11] = key, value
    output, lse = block_attention(query, store_k[:, :, :11], store_v[:, :, :11], 16**-0.5)
    expected_output, expected_lse = brute_force(
        query, key, value, bottom_right_allowed(3, 11, torch.device("cpu"))
    )
    torch.testing.assert_close(output.double(), expected_output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lse.double(), expected_lse, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("max_elements", [7, 100, 1 << 26])
@pytest.mark.parametrize(("window_start", "window"), [(0, 23), (4, 12), (20, 3)])
def test_window_mass_from_the_lse_equals_the_probabilities(
    max_elements: int, window_start: int, window: int
) -> None:
    query, key, value = random_qkv(6, 2, 5, 23, seed=max_elements)
    _, lse = block_attention(query, key, value, 16**-0.5)
    probabilities = attention_probabilities(query, key, 16**-0.5, None)  # bottom-right causal
    rows = 3  # the last three rows score
    mass = window_row_mass(
        query[..., -rows:, :], key, lse[:, -rows:], 16**-0.5, window_start, window, max_elements
    )
    expected = probabilities[0, :, -rows:, window_start : window_start + window].sum(1)
    torch.testing.assert_close(mass, expected, rtol=1e-5, atol=1e-6)


def test_flash_row_scores_group_query_heads_by_kv_head() -> None:
    query, key, value = random_qkv(4, 2, 4, 9, seed=3)
    _, lse = block_attention(query, key, value, 16**-0.5)
    request = ScoreRequest("flash", 2, 1, torch.zeros(3, 2, 8))
    flash_row_scores(query, key, lse, 16**-0.5, request, layer_index=1)
    probabilities = attention_probabilities(query, key, 16**-0.5, None)[0, :, -2:, 1:9].sum(1)  # (4, 8)
    expected = probabilities.reshape(2, 2, 8).sum(1)
    torch.testing.assert_close(request.totals[1], expected, rtol=1e-5, atol=1e-6)
    assert not request.totals[0].any() and not request.totals[2].any()


def test_decode_attention_sees_only_the_visible_slots() -> None:
    query, key, value = random_qkv(8, 2, 1, 12, seed=4)
    visible = torch.zeros(12, dtype=torch.bool)
    visible[:7] = True
    visible[9] = True
    output = decode_attention(query, key, value, visible, 16**-0.5)
    expected, _ = brute_force(query, key, value, visible[None])
    torch.testing.assert_close(output.double(), expected, rtol=1e-5, atol=1e-5)


def filled_buffer(layers: int = 2, heads: int = 2, length: int = 10, capacity: int = 16) -> KVBuffer:
    buffer = KVBuffer.allocate(layers, heads, 4, capacity, torch.float32, torch.device("cpu"))
    for layer in range(layers):
        keys = (
            torch.arange(heads * length * 4, dtype=torch.float32).reshape(1, heads, length, 4) + 1000 * layer
        )
        buffer.write(layer, 0, keys, -keys)
    buffer.length = length
    return buffer


def test_compact_moves_the_kept_slots_left_like_a_gather() -> None:
    buffer = filled_buffer()
    before = [layer.clone() for layer in buffer.keys]
    slots = torch.tensor([0, 1, 2, 5, 7, 9])
    buffer.compact(slots)
    assert buffer.length == 6 and buffer.moved_slots == [3 * 2]  # slots 0-2 stay; 3 move per layer
    for layer, old in enumerate(before):
        keys, values = buffer.layer_view(layer, 6)
        torch.testing.assert_close(keys, old[:, :, :10].index_select(2, slots))
        torch.testing.assert_close(values, -old[:, :, :10].index_select(2, slots))


def test_compact_per_head_slots() -> None:
    buffer = filled_buffer()
    before = [layer.clone() for layer in buffer.keys]
    slots = torch.tensor([[[0, 1, 4, 8], [0, 2, 3, 9]], [[0, 1, 2, 3], [0, 1, 2, 5]]])  # (layers, heads, 4)
    buffer.compact(slots)
    for layer, old in enumerate(before):
        for head in range(2):
            kept = old[0, head].index_select(0, slots[layer, head])
            torch.testing.assert_close(buffer.keys[layer][0, head, :4], kept)
    assert buffer.moved_slots == [3 + 1]  # layer 0 from index 1 (head 1), layer 1 only its last slot


def test_first_moved_equals_a_brute_force_scan() -> None:
    """Per layer, the first index where some head's slot is not its own index (all layers at once)."""
    from laserkv.kv_buffer import _first_moved

    def scan(layer_slots: torch.Tensor) -> int:
        rows = layer_slots.reshape(-1, layer_slots.shape[-1]).tolist()
        return next((i for i in range(len(rows[0])) if any(row[i] != i for row in rows)), len(rows[0]))

    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        length, n_keep = 40, int(torch.randint(1, 40, (1,), generator=generator))
        sets = [torch.randperm(length, generator=generator)[:n_keep].sort().values for _ in range(3 * 2)]
        if int(torch.randint(0, 2, (1,), generator=generator)):  # often keep a prefix in place
            sets = [torch.arange(n_keep) if i % 3 else kept for i, kept in enumerate(sets)]
        slots = torch.stack(sets).reshape(3, 2, n_keep)
        assert _first_moved(slots, 3) == [scan(slots[layer]) for layer in range(3)]
        assert _first_moved(slots[0, 0], 3) == [scan(slots[0, 0])] * 3  # shared by every layer
    assert _first_moved(torch.arange(5), 2) == [5, 5] and _first_moved(
        torch.empty(0, dtype=torch.long), 2
    ) == [0, 0]


def test_compact_to_no_slots_empties_the_buffer() -> None:
    buffer = filled_buffer()
    buffer.compact(torch.empty(0, dtype=torch.long))
    assert buffer.length == 0 and buffer.moved_slots == [0]


def test_compact_in_place_keeps_everything_untouched() -> None:
    buffer = filled_buffer()
    buffer.compact(torch.arange(10))
    assert buffer.moved_slots == [0] and buffer.length == 10


def test_buffer_errors_and_reserve() -> None:
    buffer = filled_buffer(capacity=10)
    with pytest.raises(ValueError, match="beyond"):
        buffer.compact(torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="do not fit"):
        buffer.write(0, 8, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    old = buffer.keys[0][:, :, :10].clone()
    buffer.reserve(14)
    assert buffer.capacity == 14 and buffer.regrown == 1
    torch.testing.assert_close(buffer.keys[0][:, :, :10], old)


def test_decode_attention_split_into_partial_sums_equals_brute_force() -> None:
    from laserkv.kernels import DECODE_CHUNK

    query, key, value = random_qkv(8, 2, 1, 3 * DECODE_CHUNK, seed=5)
    visible = torch.rand(3 * DECODE_CHUNK, generator=torch.Generator().manual_seed(6)) > 0.5
    output = decode_attention(query, key, value, visible, 16**-0.5)
    expected, _ = brute_force(query, key, value, visible[None])
    torch.testing.assert_close(output.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("n_rows", "mask_elements"), [(1, 1 << 26), (5, 1 << 26), (5, 2 * 2 * 12)])
def test_ragged_attention_equals_brute_force_per_head_and_row(
    n_rows: int, mask_elements: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each query row attends to the keys up to its own (bottom-right causal over this layer's
    keys) except its KV head's hidden slots, with a plain softmax over exactly those; the same in
    row chunks (2 rows at a time)."""
    from laserkv import kernels

    monkeypatch.setattr(kernels, "RAGGED_MASK_ELEMENTS", mask_elements)
    generator = torch.Generator().manual_seed(7)
    heads, kv_heads, n_keys, dim, n_prefix = 4, 2, 12, 8, 9
    query = torch.randn(1, heads, n_rows, dim, generator=generator, dtype=torch.float64)
    key = torch.randn(1, kv_heads, n_keys, dim, generator=generator, dtype=torch.float64)
    value = torch.randn(1, kv_heads, n_keys, dim, generator=generator, dtype=torch.float64)
    hidden = torch.rand(kv_heads, n_prefix, generator=generator) < 0.4
    hidden[0, :4] = True  # some slots of only one head
    output = ragged_attention(query, key, value, hidden, 0.3)
    assert output.shape == (1, n_rows, heads, dim)
    for head in range(heads):
        kv_head = head // (heads // kv_heads)
        for row in range(n_rows):
            last = n_keys - n_rows + row
            seen = [j for j in range(last + 1) if not (j < n_prefix and hidden[kv_head, j])]
            weights = torch.softmax(query[0, head, row] @ key[0, kv_head, seen].T * 0.3, dim=-1)
            expected = weights @ value[0, kv_head, seen]
            torch.testing.assert_close(output[0, row, head], expected)


def test_the_kernel_name_is_the_kernel_block_attention_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``block_kernel_name`` (what a worker reports in the manifest) follows ``block_attention``'s
    own choice: FA3 or PyTorch's flash kernel on CUDA, the reference with the flash switch off."""
    from laserkv.kernels import FLASH_ENV, block_kernel_name, uses_cuda_flash, uses_fa3

    assert block_kernel_name(torch.empty(1, 2, 3, 64)) == "torch-cpu-flash"
    if torch.cuda.is_available():
        query = torch.empty(1, 2, 3, 128, dtype=torch.bfloat16, device="cuda")
        assert block_kernel_name(query) == ("fa3" if uses_fa3(query) else "torch-flash")
        assert uses_cuda_flash(query)
        monkeypatch.setenv(FLASH_ENV, "0")
        assert block_kernel_name(query) == "reference"
