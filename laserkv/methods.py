"""Method registry: name -> factory of a fresh ``MethodConfig``.

Baselines run through the same engine as LASER-KV. Unknown names fail with the nearest valid
names. Any registered method can be overridden field by field.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from laserkv.config import MethodConfig
from laserkv.errors import ConfigError

METHODS: dict[str, Callable[[], MethodConfig]] = {
    "full": lambda: MethodConfig(name="full", selector="none", budget=None),
    "streaming": lambda: MethodConfig(name="streaming", selector="recency", compression_mode="recursive"),
    "exact": lambda: MethodConfig(name="exact", selector="exact", compression_mode="accumulate"),
    "exact_recursive": lambda: MethodConfig(
        name="exact_recursive", selector="exact", compression_mode="recursive"
    ),
}

DESCRIPTIONS: dict[str, str] = {
    "full": "no compression: the whole context stays in the cache",
    "streaming": "StreamingLLM: anchors plus the most recent tokens, budget B (recursive)",
    "exact": "exact question-attention scores, accumulate mode (LASER-KV's primary selector)",
    "exact_recursive": "exact question-attention scores, recursive mode (cache <= budget)",
}


def get_method(name: str, **overrides: object) -> MethodConfig:
    """A fresh config of the registered method ``name``, with fields overridden.

    Raises:
        ConfigError: unknown name (the message names the closest ones) or a bad override.
    """
    if name not in METHODS:
        close = difflib.get_close_matches(name, METHODS, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError("method", name, f"{hint}registered methods: {', '.join(METHODS)}")
    config = METHODS[name]()
    if not overrides:
        return config
    unknown = sorted(set(overrides) - set(config.to_dict()))
    if unknown:
        raise ConfigError("override", unknown[0], f"a MethodConfig field: {', '.join(config.to_dict())}")
    return config.replace(**overrides)
