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

from laserkv.api import RecursiveCompressionEngine
from laserkv.budget import BudgetSplit, budget_from_ratio, split_budget
from laserkv.config import GenerationConfig, MethodConfig
from laserkv.engine import EngineResult, answer, answer_ids, answer_texts
from laserkv.errors import ConfigError, LaserKVError, ModelNotAvailableError, UnsupportedModelError
from laserkv.methods import METHODS, get_method
from laserkv.modeling import load_model_and_tokenizer
from laserkv.state import CompressedKV
from laserkv.stats import CallStats

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BudgetSplit",
    "CallStats",
    "CompressedKV",
    "ConfigError",
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
    "get_method",
    "load_model_and_tokenizer",
    "split_budget",
]
