"""laserkv: LASER-KV / BMRT block-wise KV-cache compression.

Functional API (the model is loaded once by the caller)::

    from laserkv import answer, get_method, load_model_and_tokenizer
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct")
    result = answer(model, tokenizer, context, question, get_method("laser", budget=1024))

Object API (as in the original README)::

    from laserkv import RecursiveCompressionEngine
    engine = RecursiveCompressionEngine(model_path=..., budget=1024)
    engine(prompt_context=..., prompt_query=...)["text"][0]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from laserkv.api import RecursiveCompressionEngine
    from laserkv.budget import BudgetSplit, budget_from_ratio, split_budget
    from laserkv.config import EngineConfig, GenerationConfig, MethodConfig
    from laserkv.engine import EngineResult, answer, answer_ids, answer_texts
    from laserkv.errors import ConfigError, LaserKVError, ModelNotAvailableError, UnsupportedModelError
    from laserkv.methods import METHODS, build_method, get_method
    from laserkv.modeling import load_model_and_tokenizer
    from laserkv.state import CompressedKV
    from laserkv.stats import CallStats

_EXPORTS = {
    "RecursiveCompressionEngine": "laserkv.api",
    "BudgetSplit": "laserkv.budget",
    "budget_from_ratio": "laserkv.budget",
    "split_budget": "laserkv.budget",
    "EngineConfig": "laserkv.config",
    "GenerationConfig": "laserkv.config",
    "MethodConfig": "laserkv.config",
    "EngineResult": "laserkv.engine",
    "answer": "laserkv.engine",
    "answer_ids": "laserkv.engine",
    "answer_texts": "laserkv.engine",
    "ConfigError": "laserkv.errors",
    "LaserKVError": "laserkv.errors",
    "ModelNotAvailableError": "laserkv.errors",
    "UnsupportedModelError": "laserkv.errors",
    "METHODS": "laserkv.methods",
    "build_method": "laserkv.methods",
    "get_method": "laserkv.methods",
    "load_model_and_tokenizer": "laserkv.modeling",
    "CompressedKV": "laserkv.state",
    "CallStats": "laserkv.stats",
}
"""Public names and their modules, imported on first use: ``import laserkv.errors`` (and so the
results layer) loads neither torch nor transformers."""


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "hooks":
        return importlib.import_module("laserkv.hooks")
    raise AttributeError(f"module 'laserkv' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BudgetSplit",
    "CallStats",
    "CompressedKV",
    "ConfigError",
    "EngineConfig",
    "EngineResult",
    "GenerationConfig",
    "LaserKVError",
    "MethodConfig",
    "ModelNotAvailableError",
    "RecursiveCompressionEngine",
    "UnsupportedModelError",
    "__version__",
    "answer",
    "answer_ids",
    "answer_texts",
    "budget_from_ratio",
    "build_method",
    "get_method",
    "load_model_and_tokenizer",
    "split_budget",
]
