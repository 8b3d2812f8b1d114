"""The engine on a CUDA device (skipped without one): full-cache equivalence and peak memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from laserkv import METHODS, GenerationConfig, answer_ids, build_method, get_method
from laserkv.modeling import load_model_and_tokenizer
from laserkv.prompting import encode_context, encode_question
from tests.tiny import sentence

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("mode", ["accumulate", "recursive"])
def test_budget_at_least_context_on_cuda(tiny_llama_dir: Path, mode: str) -> None:
    model, tokenizer = load_model_and_tokenizer(str(tiny_llama_dir), device="cuda", dtype="float32")
    context = encode_context(tokenizer, sentence(300, 5))
    question = encode_question(tokenizer, sentence(6, 6))
    method = build_method(budget=300, block_size=64, compression_mode=mode)
    result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=10))
    ids = torch.tensor([context + question], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits[0, -1].float().cpu()
        generated = model.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=2, pad_token_id=0)
    tokens = generated[0, ids.shape[1] :].tolist()
    tokens = tokens[: tokens.index(2)] if 2 in tokens else tokens
    torch.testing.assert_close(result.first_token_logits, logits, rtol=1e-3, atol=1e-3)
    assert result.token_ids == tokens
    assert result.stats.peak_memory_bytes is not None and result.stats.peak_memory_bytes > 0


def test_compressed_run_on_cuda_bf16(tiny_llama_dir: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(str(tiny_llama_dir), device="cuda", dtype="bfloat16")
    context = encode_context(tokenizer, sentence(300, 5))
    question = encode_question(tokenizer, sentence(6, 6))
    result = answer_ids(
        model, tokenizer, context, question, build_method(budget=48, block_size=64), GenerationConfig()
    )
    assert result.stats.cache_length_per_block[0] == 48
    assert result.kept_positions.tolist() == sorted(result.kept_positions.tolist())


@pytest.mark.parametrize("name", [name for name in METHODS if not name.startswith("kvpress:")])
def test_every_method_on_cuda_bf16(tiny_llama_dir: Path, name: str) -> None:
    model, tokenizer = load_model_and_tokenizer(str(tiny_llama_dir), device="cuda", dtype="bfloat16")
    context = encode_context(tokenizer, sentence(300, 5))
    question = encode_question(tokenizer, sentence(6, 6))
    overrides: dict[str, object] = {"block_size": 64}
    if name != "full":
        overrides["budget"] = 48
        if "lsh_bits" in get_method(name).selector.flat_params():
            overrides["lsh_bits"] = 3
    method = get_method(name, **overrides)
    result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=4))
    lengths = result.stats.cache_length_per_block
    assert len(lengths) == 5 and result.stats.final_cache_length == lengths[-1]
    if method.engine.compression_mode == "recursive" and name != "full":
        assert lengths == [48] * 5
    split = method.split_for(len(context))
    anchors, local = (12, 12) if split is None else (split.anchors, split.local)
    kept = result.kept_positions.reshape(-1, lengths[-1])
    for row in kept.tolist():
        assert row[:anchors] == list(range(anchors))
        assert not local or row[-local:] == list(range(300 - local, 300))


def test_laser_on_cuda_keeps_what_it_keeps_on_cpu(tiny_llama_dir: Path) -> None:
    """fp32: the GPU run selects the same tokens as the CPU run (scores agree to float tolerance)."""
    method = get_method("laser", budget=48, block_size=64, lsh_bits=3)
    kept = []
    for device in ("cpu", "cuda"):
        model, tokenizer = load_model_and_tokenizer(str(tiny_llama_dir), device=device, dtype="float32")
        context = encode_context(tokenizer, sentence(300, 5))
        question = encode_question(tokenizer, sentence(6, 6))
        result = answer_ids(model, tokenizer, context, question, method, GenerationConfig(max_new_tokens=4))
        kept.append(result.kept_positions)
    assert torch.equal(kept[0], kept[1])


def test_flash_scores_match_eager_on_the_8b_architecture() -> None:
    """Llama-3.1-8B architecture, random bf16 weights: a 2048-token block + 64 question rows over
    a 4096-token cache, scored by both backends. bf16 attention outputs differ between SDPA and
    eager, so later layers' queries differ slightly: scores agree to 2% of the largest score and the
    top-1024 sets to 95% (measured on an H100: 97.1%; random weights make many near-ties)."""
    from benchmarks.models import random_llama31_8b
    from laserkv import hooks
    from laserkv.backends import ScoreRequest
    from laserkv.engine import forward_block
    from laserkv.state import CompressedKV

    model = random_llama31_8b()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 128000, (4096 + 2048 + 64,), generator=generator)
    with torch.inference_mode(), hooks.laserkv_attention(model):
        prefix = forward_block(model, CompressedKV.empty(), ids[:4096], 0, None, None)
        totals = {}
        for backend in ("eager", "flash"):
            request = ScoreRequest(backend, 64, 0, torch.zeros(1, 1, 4096 + 2048, device="cuda"))
            forward_block(model, prefix, ids[4096:6144], 4096, (ids[6144:], 6144), request)
            totals[backend] = request.totals[0, 0].cpu()
    eager, flash = totals["eager"], totals["flash"]
    relative = ((flash - eager).abs().max() / eager.abs().max()).item()
    print(f"8B architecture: max |flash - eager| / max eager = {relative:.2e}")
    assert relative < 2e-2
    top_eager = set(torch.topk(eager, 1024).indices.tolist())
    top_flash = set(torch.topk(flash, 1024).indices.tolist())
    overlap = len(top_eager & top_flash) / 1024
    print(f"8B architecture: top-1024 overlap {overlap:.3f}")
    assert overlap >= 0.95
    del model
    torch.cuda.empty_cache()


@pytest.mark.parametrize("n_context", [8192, 32768])
def test_laser_flash_runs_long_contexts_on_the_8b_architecture(n_context: int) -> None:
    from benchmarks.models import random_llama31_8b
    from laserkv.engine import compress_and_generate

    model = random_llama31_8b()
    generator = torch.Generator().manual_seed(1)
    context = torch.randint(0, 128000, (n_context,), generator=generator).tolist()
    question = torch.randint(0, 128000, (64,), generator=generator).tolist()
    method = get_method("laser", compression_ratio=0.75)
    result = compress_and_generate(
        model, context, question, method, GenerationConfig(max_new_tokens=4), frozenset()
    )
    stats = result.stats
    assert stats.budget == int(2 * 0.75 * 4096 * n_context / (4096 + n_context))
    assert abs(stats.final_cache_length - 0.75 * n_context) <= stats.budget  # r of the context kept
    assert stats.peak_memory_bytes is not None and len(result.token_ids) == 4
    del model
    torch.cuda.empty_cache()


@pytest.mark.parametrize("kernel", ["torch", "fa3"])
def test_flash_kernel_output_and_lse_on_the_8b_shapes(kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each CUDA kernel through ``kernels.block_attention`` (PyTorch's flash kernel, and
    FlashAttention-3 where ``fa3-fwd`` runs): 32 query heads over 8 KV heads as they are, a
    4096-token block + 64 question rows over a 4096-slot cache (views of a larger buffer),
    bottom-right causal: output and log-sum-exp against the fp32 reference."""
    from laserkv.kernels import (
        BLOCK_KERNEL_ENV,
        _reference_attention,
        block_attention,
        bottom_right_allowed,
        uses_cuda_flash,
        uses_fa3,
    )

    monkeypatch.setenv(BLOCK_KERNEL_ENV, kernel)

    generator = torch.Generator(device="cuda").manual_seed(0)
    rows, keys = 4160, 8256
    query = torch.randn(1, 32, rows, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    store = torch.randn(2, 1, 8, keys + 512, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    key, value = store[0, :, :, :keys], store[1, :, :, :keys]
    if kernel == "fa3" and not uses_fa3(query):
        pytest.skip("fa3-fwd is not installed, does not load, or this GPU is not a Hopper")
    assert uses_cuda_flash(query) and uses_fa3(query) == (kernel == "fa3")
    output, lse = block_attention(query, key, value, 128**-0.5)
    allowed = bottom_right_allowed(rows, keys, query.device)
    expected_output, expected_lse = _reference_attention(query, key, value, 128**-0.5, allowed)
    print(f"flash lse max error {(lse - expected_lse).abs().max().item():.2e}")
    assert (lse - expected_lse).abs().max().item() < 1e-3
    torch.testing.assert_close(output.float(), expected_output.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_graph_decoding_gives_the_eager_steps_tokens_on_the_8b_architecture(
    temperature: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replaying the captured step runs the same kernels as the eager step: identical tokens and
    logits, greedy and sampled (a 6k-token context, ``laser`` at B = 2048, 24 new tokens)."""
    from benchmarks.models import random_llama31_8b
    from laserkv.engine import compress_and_generate

    model = random_llama31_8b()
    generator = torch.Generator().manual_seed(1)
    context = torch.randint(0, 128000, (6000,), generator=generator).tolist()
    question = torch.randint(0, 128000, (40,), generator=generator).tolist()
    generation = GenerationConfig(max_new_tokens=24, temperature=temperature, seed=3)
    method = get_method("laser", budget=2048)
    runs = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("LASERKV_CUDA_GRAPHS", graphs)
        runs[graphs] = compress_and_generate(model, context, question, method, generation, frozenset())
    assert runs["1"].token_ids == runs["0"].token_ids and len(runs["1"].token_ids) == 24
    assert torch.equal(runs["1"].kept_positions, runs["0"].kept_positions)
    del model
    torch.cuda.empty_cache()


@pytest.mark.parametrize(
    ("rows", "n_keys", "window_start", "window"),
    [(64, 8256, 0, 8192), (64, 30000, 100, 4001), (1, 700, 0, 699), (300, 2000, 0, 2000)],
)
def test_triton_window_mass_equals_the_torch_reference(
    rows: int, n_keys: int, window_start: int, window: int
) -> None:
    """The Triton kernel against ``window_row_mass`` (itself tested against brute force on CPU), on
    bf16 tensors of the 8B shapes (32 query heads over 8 KV heads), the log-sum-exp from the flash
    kernel."""
    from laserkv.kernels import block_attention
    from laserkv.scorers import window_mass_triton
    from laserkv.scorers.exact import window_row_mass

    generator = torch.Generator(device="cuda").manual_seed(rows)
    query = torch.randn(1, 32, rows, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    key = torch.randn(1, 8, n_keys, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    _, lse = block_attention(query, key, key, 128**-0.5)
    assert window_mass_triton.available(query)
    fast = window_mass_triton.window_mass(query, key, lse, 128**-0.5, window_start, window)
    reference = window_row_mass(query, key, lse, 128**-0.5, window_start, window).reshape(8, 4, window).sum(1)
    torch.testing.assert_close(fast, reference, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(("n_slots", "n_visible"), [(4608, 4100), (131584, 131100), (1024, 1)])
def test_triton_decoding_attention_equals_the_torch_reference(
    n_slots: int, n_visible: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The split-KV Triton kernel against ``kernels.decode_attention``'s torch path (tested against
    brute force on CPU): 32 query heads over 8 KV heads, bf16, the visible slots a prefix."""
    from laserkv import decode_triton
    from laserkv.kernels import decode_attention

    generator = torch.Generator(device="cuda").manual_seed(n_slots)
    query = torch.randn(1, 32, 1, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    key, value = torch.randn(2, 1, 8, n_slots, 128, device="cuda", generator=generator, dtype=torch.bfloat16)
    visible = torch.zeros(n_slots, dtype=torch.bool, device="cuda")
    visible[:n_visible] = True
    assert decode_triton.available(query)
    fast = decode_attention(query, key, value, visible, 128**-0.5)
    monkeypatch.setenv(decode_triton.TRITON_ENV, "0")
    reference = decode_attention(query, key, value, visible, 128**-0.5)
    torch.testing.assert_close(fast.float(), reference.float(), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(("n_rows", "n_keys"), [(1, 8193), (50, 16434)])
def test_ragged_attention_on_cuda_bf16_equals_its_fp32_cpu_result(n_rows: int, n_keys: int) -> None:
    """The kvpress bridge's ragged attention (tested against brute force on CPU) in bf16 on CUDA,
    whichever SDPA backend takes the boolean mask there, against fp32 on the CPU: 14 query heads
    over 2 KV heads (Qwen2.5-0.5B), about 3/4 of the prefix hidden per head."""
    from laserkv.kernels import ragged_attention

    generator = torch.Generator().manual_seed(n_keys)
    query = torch.randn(1, 14, n_rows, 64, generator=generator)
    key, value = torch.randn(2, 1, 2, n_keys, 64, generator=generator)
    hidden = torch.rand(2, n_keys - n_rows, generator=generator) < 0.75
    reference = ragged_attention(query, key, value, hidden, 0.125)
    on_gpu = ragged_attention(
        *(tensor.to("cuda", torch.bfloat16) for tensor in (query, key, value)), hidden.cuda(), 0.125
    )
    error = (on_gpu.float().cpu() - reference).norm() / reference.norm()
    assert error < 2e-2  # bf16 rounding; a wrong mask would be off by about the output's size
