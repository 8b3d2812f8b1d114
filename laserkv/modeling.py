"""Loading a model and tokenizer through ``from_pretrained`` (local path, HF id or a packaged
offline model), with the supported-architecture check. ``trust_remote_code`` is off unless asked."""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from laserkv import hooks, switches
from laserkv.errors import ConfigError, ModelNotAvailableError
from laserkv.model_sources import resolve_model_path

FUSED_LAYERS_ENV = switches.FUSED_LAYERS_ENV
"""Set to ``0`` to load a CUDA model without fused layers (``hooks.fuse_layers``; a comparison switch)."""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str | None) -> None:
    """``device`` (None: ``default_device``) is one this machine has: ``cpu``, ``cuda`` or
    ``cuda:N`` with a visible GPU N, or ``mps`` where it is available.

    Raises:
        ConfigError: another name, or a device that is not here (one line, before any load).
    """
    if device is None or device == "cpu":
        return
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device", device, "cpu (mps is not available on this machine)")
        return
    name, _, index = device.partition(":")
    if name != "cuda" or (index and not index.isdigit()):
        raise ConfigError("device", device, "cpu, cuda, cuda:N or mps")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise ConfigError("device", device, "cpu (no CUDA GPU is visible on this machine)")
    if index and int(index) >= count:
        raise ConfigError("device", device, f"cuda:0 to cuda:{count - 1} ({count} GPUs visible)")


def default_dtype(device: str) -> str:
    """bf16 on GPU, fp32 on CPU."""
    return "bfloat16" if device.startswith("cuda") else "float32"


def load_tokenizer(model_id: str, *, trust_remote_code: bool = False) -> Any:
    """Only the tokenizer of ``model_id`` (for prompt truncation before any model is loaded).

    Raises:
        ModelNotAvailableError: the tokenizer cannot be found offline.
    """
    path = resolve_model_path(model_id)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise ModelNotAvailableError(f"cannot load the tokenizer of {model_id!r} offline: {error}") from error


def load_model_and_tokenizer(
    model_id: str,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, Any]:
    """Load a causal LM and its tokenizer, in eval mode, on one device.

    Args:
        model_id: a local directory, an HF id, or a packaged name (``smollm2-135m-instruct``).
        device: ``cpu``, ``cuda`` or ``cuda:N``; default: a GPU if there is one.
        dtype: ``float32``, ``bfloat16`` or ``float16``; default: bf16 on GPU, fp32 on CPU.
        trust_remote_code: allow code shipped with the checkpoint to run.

    On CUDA the decoder layers' element-wise modules are fused (``hooks.fuse_layers``; compiled at
    the first forward) unless ``LASERKV_FUSED_LAYERS=0``.

    Raises:
        ModelNotAvailableError: the model cannot be found offline.
        UnsupportedModelError: the architecture cannot be compressed exactly.
    """
    check_device(device)
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed: one of {', '.join(DTYPES)}")
    path = resolve_model_path(model_id)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code, attn_implementation="sdpa"
        )
    except OSError as error:
        raise ModelNotAvailableError(
            f"cannot load model {model_id!r} offline: {error}. Give a local directory, or one of the "
            "packaged models (see `laserkv run --help`)"
        ) from error
    model = model.to(device).eval()  # type: ignore[arg-type]
    hooks.check_supported(model)
    if device.startswith("cuda") and os.environ.get(FUSED_LAYERS_ENV, "1") != "0":
        if can_compile():
            hooks.fuse_layers(model)
        else:
            warnings.warn(
                "layers not fused: torch.compile's Triton kernels need a C compiler (set CC, or install "
                f"gcc); {FUSED_LAYERS_ENV}=0 silences this",
                stacklevel=2,
            )
    return model, tokenizer


def can_compile() -> bool:
    """Whether Triton can build its kernels here: it needs a C compiler, ``$CC`` when set (Triton
    uses it), else gcc, clang or cc."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"]) is not None
    return any(shutil.which(name) for name in ("gcc", "clang", "cc"))
