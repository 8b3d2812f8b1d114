"""Session fixtures: tiny Llama and Qwen2 (GQA) models saved with save_pretrained and loaded
through the real loading path."""

from __future__ import annotations

from pathlib import Path

import pytest

from laserkv.modeling import load_model_and_tokenizer
from tests.tiny import build_model


@pytest.fixture(scope="session", params=["llama", "qwen2"])
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp(f"tiny-{request.param}")
    build_model(directory, request.param)
    return directory


@pytest.fixture(scope="session")
def tiny(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    """(model, tokenizer) loaded with ``from_pretrained`` on CPU in fp32."""
    return load_model_and_tokenizer(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-llama-only")
    build_model(directory, "llama")
    return directory
