"""Session fixtures: tiny Llama and Qwen2 (GQA) models saved with save_pretrained and loaded
through the real loading path."""

from __future__ import annotations

import os
from pathlib import Path

# No hub is reachable here: fail fast instead of retrying (datasets reads these at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# Ray binds and connects to 127.0.0.1 only (read once, when ray is first imported).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import pytest

from laserkv.modeling import load_model_and_tokenizer
from tests.tiny import build_byte_tokenizer, build_model


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Generated data (the demo set) goes to a per-session cache, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LASERKV_CACHE", str(tmp_path_factory.mktemp("laserkv-cache")))
        yield


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


@pytest.fixture(scope="session")
def byte_tokenizer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real byte-level tokenizer (any text round-trips; ``encode`` adds BOS)."""
    return build_byte_tokenizer(tmp_path_factory.mktemp("byte-tokenizer"))
