"""Fused layers (``hooks.fuse_layers``: each decoder layer's RMSNorms and MLP compiled) change no
token: the full-cache equivalence tests and the decoding test of ``test_engine`` /
``test_decoding`` run unchanged on a tiny Qwen2 model whose layers are fused (fp32; the decoding
test also on CUDA where there is a GPU)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from laserkv import hooks
from laserkv.modeling import load_model_and_tokenizer
from tests import test_decoding, test_engine
from tests.tiny import build_model


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny Qwen2 model (and its tokenizer) with fused layers, compiled by a first forward."""
    directory: Path = tmp_path_factory.mktemp("tiny-fused")
    build_model(directory, "qwen2")
    model, tokenizer = load_model_and_tokenizer(str(directory), device="cpu", dtype="float32")
    layers = model.config.num_hidden_layers
    assert hooks.fuse_layers(model) == 3 * layers + 1  # two norms and the MLP per layer, the final norm
    return model, tokenizer


def test_fused_modules_compute_what_the_eager_ones_do(fused: Any) -> None:
    model, _ = fused
    assert hooks.engine_path(model) == {"block_kernel": "torch-cpu-flash", "fused_modules": 7}
    ids = torch.arange(3, 60).unsqueeze(0)
    with torch.no_grad():
        compiled = model(ids).logits
        with torch.compiler.set_stance("force_eager"):
            eager = model(ids).logits
    torch.testing.assert_close(compiled, eager, **test_engine.LOGIT_TOLERANCE)


@pytest.mark.parametrize("method", test_engine.FULL_CACHE_METHODS)
def test_full_cache_equivalence_unchanged(fused: Any, method: Any) -> None:
    test_engine.test_budget_at_least_context_reproduces_full_cache(fused, method)


@pytest.mark.parametrize("device", test_decoding.DEVICES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_decoding_unchanged(fused: Any, device: str, temperature: float) -> None:
    """On CUDA the fused step is also captured in the decoding loop's CUDA graph (a failed capture,
    which would decode eagerly with a warning, fails the test)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="decoding without CUDA graphs")
        test_decoding.test_buffer_decoding_equals_a_plain_loop(fused, device, temperature)


def test_fusing_needs_a_c_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Triton builds its kernels with a C compiler; without one a CUDA model loads unfused (with a
    warning) instead of failing at its first forward."""
    from laserkv.modeling import can_compile

    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not can_compile()
    compiler = tmp_path / "gcc"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    assert can_compile()


def test_cc_names_the_compiler_when_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Triton uses ``$CC`` when it is set: a missing one means no compiler, whatever else is on PATH."""
    from laserkv.modeling import can_compile

    compiler = tmp_path / "gcc"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-compiler")
    assert not can_compile()
    monkeypatch.setenv("CC", "gcc")
    assert can_compile()
