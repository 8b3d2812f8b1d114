"""``RecursiveCompressionEngine``: the original's object API as a thin shell over the functional
engine (``laserkv.engine.answer``), which takes an already loaded model."""

from __future__ import annotations

from typing import Any

from laserkv.config import GenerationConfig
from laserkv.engine import EngineResult, answer
from laserkv.methods import method_from_params
from laserkv.modeling import load_model_and_tokenizer


class RecursiveCompressionEngine:
    """Load a model once, then compress-and-answer many (context, question) pairs.

    The positional parameters are the original's. ``selector_type`` is ``exact``, ``lsh`` or
    ``hybrid`` (plus ``recency`` and ``none`` for the streaming and full-cache baselines);
    ``lsh_mode`` and ``hybrid_*`` apply to the ``lsh`` / ``hybrid`` selectors. Keyword-only
    extras: ``compression_ratio`` instead of ``budget``, the LSH ``num_bits`` (K),
    ``num_tables`` (L), tie-break ``mode`` and ``lsh_seed``, and the model loading options.
    The backend defaults to ``flash`` (the original defaulted to ``eager``; both give the same
    scores here, flash without the attention matrix).
    """

    def __init__(
        self,
        model_path: str,
        selector_type: str = "exact",
        lsh_mode: str = "frequency_rank",
        compression_mode: str = "accumulate",
        backend: str = "flash",
        budget: int | None = 4096,
        protection_divisor: int = 4,
        block_size: int = 4096,
        max_new_tokens: int = 100,
        hybrid_primary: str = "exact",
        hybrid_secondary: str = "lsh",
        hybrid_ratio: float = 0.5,
        *,
        compression_ratio: float | None = None,
        num_bits: int = 10,
        num_tables: int = 8,
        mode: str = "l2",
        lsh_seed: int = 0,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        options: dict[str, object] = dict(
            selector=selector_type,
            compression_mode=compression_mode,
            backend=backend,
            budget=None if compression_ratio is not None or selector_type == "none" else budget,
            compression_ratio=compression_ratio,
            protection_divisor=protection_divisor,
            block_size=block_size,
            lsh_mode=lsh_mode,
            lsh_bits=num_bits,
            lsh_tables=num_tables,
            lsh_seed=lsh_seed,
            tie_break=mode,
            hybrid_primary=hybrid_primary,
            hybrid_secondary=hybrid_secondary,
            hybrid_ratio=hybrid_ratio,
        )
        self.method = method_from_params(selector_type, options, lenient=True)
        self.generation = GenerationConfig(max_new_tokens=max_new_tokens)
        self.model, self.tokenizer = load_model_and_tokenizer(
            model_path, device=device, dtype=dtype, trust_remote_code=trust_remote_code
        )
        self.last_result: EngineResult | None = None

    def __call__(self, prompt_context: str, prompt_query: str) -> dict[str, Any]:
        """Answer one sample; returns ``{"text": [answer], "stats": CallStats}``."""
        result = answer(
            self.model, self.tokenizer, prompt_context, prompt_query, self.method, self.generation
        )
        self.last_result = result
        return {"text": [result.text], "stats": result.stats}
