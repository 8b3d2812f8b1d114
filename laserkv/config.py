"""Frozen configs passed down whole: ``MethodConfig`` (what compression runs) and
``GenerationConfig`` (how the answer is decoded). Validation happens once, in ``__post_init__``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from laserkv.budget import BudgetSplit, split_budget
from laserkv.errors import ConfigError

SELECTORS = ("exact", "recency", "none")
"""exact: attention mass from the question rows; recency: most recent tokens (StreamingLLM);
none: no eviction at all (the full cache)."""
SCORED_SELECTORS = frozenset({"exact"})
COMPRESSION_MODES = ("accumulate", "recursive")
BACKENDS = ("eager",)


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(field, value, "one of " + ", ".join(allowed))


@dataclass(frozen=True)
class MethodConfig:
    """One compression method, fully specified.

    Attributes:
        name: label recorded with results (e.g. ``exact``, ``streaming``).
        selector: how the global part is chosen (see ``SELECTORS``).
        compression_mode: ``accumulate`` (each block adds up to ``global`` tokens) or
            ``recursive`` (all non-anchor history is rescored each block; cache <= budget).
        backend: how exact scores are computed; ``eager`` materialises the probabilities.
        budget: total token budget B; ``None`` only with selector ``none`` (no compression).
        protection_divisor: n >= 3; anchors = local = floor(B/n).
        block_size: context tokens prefilled per block.
        boundary_smoothing: accumulate mode: the next block sees (and may keep) the previous
            block's held-back local tail. Off = the original's ``--no_boundary_smoothing``.
        faithful_empty_block: reproduce the original's skip of the whole selection step when a
            block has no candidates of its own (drops the held tail / history). Default: fixed.
        faithful_recursive_budget: recursive mode: select exactly ``global`` candidates per block,
            as the original does, even when the block's local window or the anchors are not full
            (a short last block, blocks shorter than the window). Default: the selection fills the
            budget, ``budget - fixed slots``, so a budget >= the context keeps every token.
    """

    name: str = "custom"
    selector: str = "exact"
    compression_mode: str = "accumulate"
    backend: str = "eager"
    budget: int | None = 1024
    protection_divisor: int = 4
    block_size: int = 4096
    boundary_smoothing: bool = True
    faithful_empty_block: bool = False
    faithful_recursive_budget: bool = False

    def __post_init__(self) -> None:
        _check_choice("selector", self.selector, SELECTORS)
        _check_choice("compression_mode", self.compression_mode, COMPRESSION_MODES)
        _check_choice("backend", self.backend, BACKENDS)
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ConfigError("block_size", self.block_size, "an integer >= 1")
        if self.selector == "none" and self.budget is not None:
            raise ConfigError("budget", self.budget, "None with selector 'none' (the full cache)")
        if self.selector != "none":
            if self.budget is None:
                raise ConfigError("budget", None, f"a positive integer with selector {self.selector!r}")
            split_budget(self.budget, self.protection_divisor)

    @property
    def split(self) -> BudgetSplit | None:
        """The budget split, or ``None`` for the full cache."""
        if self.budget is None:
            return None
        return split_budget(self.budget, self.protection_divisor)

    @property
    def needs_question_rows(self) -> bool:
        """Whether each block is forwarded with the question appended (query-aware scoring)."""
        return self.selector in SCORED_SELECTORS

    def replace(self, **changes: object) -> MethodConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """All fields as a plain dict (for result rows and manifests)."""
        return dataclasses.asdict(self)

    @property
    def config_hash(self) -> str:
        """A stable 16-hex-digit hash of every field except ``name``."""
        fields = {k: v for k, v in self.to_dict().items() if k != "name"}
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class GenerationConfig:
    """How the answer is decoded after the compressed prefill (greedy).

    Attributes:
        max_new_tokens: upper bound on generated tokens.
        stop_strings: the decoded answer is cut at the first occurrence of each.
    """

    max_new_tokens: int = 100
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", self.max_new_tokens, "an integer >= 1")
