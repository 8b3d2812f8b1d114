"""One work unit, the same way everywhere: sample -> its official prompt through the model's chat
template -> the engine -> the benchmark's official score. The Ray worker and ``laserkv run``
both call ``run_unit``."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from cluster.diagnostics import unit_diagnostics
from cluster.presets import methods_with_overrides
from evals.benchmark import DataRequest, Scored
from evals.benchmarks import get_benchmark
from evals.chat import engine_texts
from evals.demo_set import MAX_SAMPLES_PER_CELL
from evals.errors import EvalError
from evals.sample import EvalSample
from evals.scoring import score_sample
from laserkv import GenerationConfig, answer_texts, load_model_and_tokenizer
from laserkv.config import MethodConfig
from laserkv.engine import EngineResult
from laserkv.errors import ConfigError
from laserkv.modeling import DTYPES, check_device


@dataclass(frozen=True)
class UnitOutcome:
    """What one unit produced.

    Attributes:
        result: the engine's answer and its costs.
        scored: the official judgement of the raw output (prediction, correct, score); shown by
            ``laserkv run``, not stored: result rows keep the raw output, scored when read.
        prompt_hash: sha256 (16 hex digits) of the chat-templated prompt.
        seconds: wall time of the whole unit (prompt, engine, scoring), diagnostics left out.
        diagnostics: what the answer's tokens and the attention recall say
            (``cluster.diagnostics``), or None.
    """

    result: EngineResult
    scored: Scored
    prompt_hash: str
    seconds: float
    diagnostics: dict[str, Any] | None = None


def run_unit(
    model: Any,
    tokenizer: Any,
    sample: EvalSample,
    method: MethodConfig,
    seed: int,
    attention_recall: bool = False,
) -> UnitOutcome:
    """Run ``method`` on ``sample`` with its benchmark's official decoding settings, score it and
    record its diagnostics (``cluster.diagnostics.unit_diagnostics``).

    Args:
        seed: the sampling seed (used when the sample's temperature is > 0).
        attention_recall: also run the full-cache forward of the attention recall.
    """
    start = time.perf_counter()
    texts = engine_texts(tokenizer, sample.parts)
    settings = sample.generation
    generation = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=seed
    )
    result = answer_texts(
        model, tokenizer, texts.context_text, texts.question_text, method, generation, texts.generation_prompt
    )
    scored = score_sample(sample, result.raw_text)
    prompt_hash = hashlib.sha256(texts.full_prompt.encode()).hexdigest()[:16]
    seconds = time.perf_counter() - start
    diagnostics = unit_diagnostics(model, tokenizer, texts, sample, result, attention_recall)
    return UnitOutcome(result, scored, prompt_hash, seconds, diagnostics)


@dataclass(frozen=True)
class SingleRun:
    """``laserkv run``: one sample of a benchmark under one method.

    Attributes:
        model / device / dtype: what to load.
        dataset / source: the benchmark (and a local copy of its data).
        length / task / index: which sample (the ``index``-th of its cell).
        method: the method to run.
        max_new_tokens: None = the benchmark's official answer length.
        attention_recall: also record the attention recall (``cluster.diagnostics``).
    """

    model: str
    dataset: str
    length: str
    task: str
    index: int
    method: MethodConfig
    source: str | None = None
    device: str | None = None
    dtype: str | None = None
    max_new_tokens: int | None = None
    attention_recall: bool = False

    def __post_init__(self) -> None:
        """The checks the input alone decides, before the model or any sample loads.

        Raises:
            EvalError, ConfigError: a sample index outside 0 to ``MAX_SAMPLES_PER_CELL`` - 1 (no
                cell holds more), an unknown dataset, length or task, a device this machine does
                not have, an unknown dtype, a non-positive answer length.
        """
        if not 0 <= self.index < MAX_SAMPLES_PER_CELL:
            raise EvalError(
                f"sample={self.index} is not allowed: an index from 0 to {MAX_SAMPLES_PER_CELL - 1:,} "
                f"(no cell holds more than {MAX_SAMPLES_PER_CELL:,} samples)"
            )
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ConfigError("dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "None or an integer >= 1")
        check_device(self.device)
        benchmark = get_benchmark(self.dataset)
        if not benchmark.cells:
            raise EvalError(f"dataset={self.dataset!r} has no (task, length) cells: use laserkv eval --limit")
        benchmark.check(self.request())

    def request(self) -> DataRequest:
        """The data request of the one cell (a generated set generates up to the sample)."""
        samples = max(self.index + 1, DataRequest().samples_per_cell)
        return DataRequest((self.length,), (self.task,), self.source, samples, model=self.model)


def run_method(
    name: str,
    budget: int | None = None,
    ratio: float | None = None,
    block_size: int | None = None,
    protection_divisor: int | None = None,
) -> MethodConfig:
    """The method ``laserkv run`` runs: built as ``laserkv eval`` builds it
    (``cluster.presets.methods_with_overrides``), the method's own defaults and split where a
    value is not given, so the same flags give the same config hash."""
    overrides: dict[str, object] = {
        "budget": budget,
        "compression_ratio": ratio,
        "block_size": block_size,
        "protection_divisor": protection_divisor,
    }
    return methods_with_overrides((name,), overrides)[0]


def run_single(run: SingleRun) -> tuple[EvalSample, UnitOutcome]:
    """Load the model and the sample, then ``run_unit`` it (seed 0).

    Raises:
        EvalError: the cell has fewer samples than ``run.index + 1``.
    """
    model, tokenizer = load_model_and_tokenizer(run.model, device=run.device, dtype=run.dtype)
    samples = list(get_benchmark(run.dataset).load(run.request(), tokenizer))
    if run.index >= len(samples):
        raise EvalError(f"sample={run.index} is not allowed: {run.length}/{run.task} has {len(samples)}")
    sample = samples[run.index]
    if run.max_new_tokens is not None:
        generation = dataclasses.replace(sample.generation, max_new_tokens=run.max_new_tokens)
        sample = dataclasses.replace(sample, generation=generation)
    return sample, run_unit(model, tokenizer, sample, run.method, 0, run.attention_recall)
