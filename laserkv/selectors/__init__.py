"""Selector plugins: the registry (kind -> class) and building a selector from flat parameters.

Adding a selector kind = one module with a frozen ``Selector`` dataclass (its parameters, its
``needs()`` and ``select_within``), one entry in ``SELECTORS`` below, and its brute-force test.
Nothing outside this registry switches on selector names.
"""

from __future__ import annotations

import difflib

from laserkv.errors import ConfigError
from laserkv.selectors.base import (
    QUERY_AGNOSTIC,
    QUERY_AWARE,
    BlockEvidence,
    ForwardNeeds,
    MissingEvidenceError,
    Selector,
)
from laserkv.selectors.exact import ExactSelector
from laserkv.selectors.full import FullSelector
from laserkv.selectors.h2o import H2OSelector
from laserkv.selectors.hybrid import HybridSelector
from laserkv.selectors.kvpress import PRESS_PREFIX, KVPressSelector
from laserkv.selectors.lsh import LshSelector
from laserkv.selectors.recency import RecencySelector
from laserkv.selectors.snapkv import SnapKVSelector
from laserkv.selectors.tova import TovaSelector

SELECTORS: dict[str, type[Selector]] = {
    cls.kind: cls
    for cls in (
        ExactSelector,
        LshSelector,
        HybridSelector,
        RecencySelector,
        SnapKVSelector,
        H2OSelector,
        TovaSelector,
        KVPressSelector,
        FullSelector,
    )
}
PART_KEYS = ("hybrid_primary", "hybrid_secondary")

__all__ = [
    "QUERY_AGNOSTIC",
    "QUERY_AWARE",
    "SELECTORS",
    "BlockEvidence",
    "ForwardNeeds",
    "MissingEvidenceError",
    "Selector",
    "build_selector",
    "selector_param_names",
]


def selector_class(kind: object, role: str = "selector") -> type[Selector]:
    """The registered class of ``kind`` (a hybrid's part when ``role`` names one).

    Raises:
        ConfigError: unknown kind, or a part that cannot be one (the message names the closest
            and every allowed kind).
    """
    allowed = [name for name, cls in SELECTORS.items() if role == "selector" or can_be_part(cls)]
    if not isinstance(kind, str) or kind not in allowed:
        close = difflib.get_close_matches(str(kind), allowed, n=2, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(role, kind, f"one of {', '.join(allowed)}{hint}")
    return SELECTORS[kind]


def can_be_part(cls: type[Selector]) -> bool:
    """Whether a kind may be a hybrid's part (a basic block-engine selector that evicts)."""
    return cls.evicts and cls is not HybridSelector and cls.prefill == "blocks"


def selector_param_names() -> set[str]:
    """Every parameter name some selector declares (hybrid: its ratio, flag and part kinds)."""
    names = {name for cls in SELECTORS.values() if cls is not HybridSelector for name in cls.param_names()}
    return names | {"hybrid_ratio", "faithful_hybrid", *PART_KEYS}


def is_press_param(name: str) -> bool:
    """A kvpress press's own parameter (``press.<field>``), declared by the press, not here."""
    return name.startswith(PRESS_PREFIX)


def _basic(kind: object, params: dict[str, object], used: set[str], role: str = "selector") -> Selector:
    selector, own = selector_class(kind, role).from_params(params)
    used.update(own)
    return selector


def build_selector(kind: object, params: dict[str, object]) -> tuple[Selector, set[str]]:
    """A selector of ``kind`` from flat parameters (a hybrid's parts from ``hybrid_primary`` /
    ``hybrid_secondary`` and the parameters each part declares).

    Returns:
        ``(selector, used)``: ``used`` names the parameters it took.

    Raises:
        ConfigError: unknown kind or a bad parameter value.
    """
    used: set[str] = set()
    if selector_class(kind) is not HybridSelector:
        return _basic(kind, params, used), used
    primary = _basic(params.get("hybrid_primary", "exact"), params, used, "hybrid_primary")
    secondary = _basic(params.get("hybrid_secondary", "lsh"), params, used, "hybrid_secondary")
    own = {name: params[name] for name in ("hybrid_ratio", "faithful_hybrid") if name in params}
    used.update(own, {key for key in PART_KEYS if key in params})
    return HybridSelector(primary, secondary, **own), used  # type: ignore[arg-type]
