"""Frozen configs passed down whole: ``MethodConfig`` (what compression runs) and
``GenerationConfig`` (how the answer is decoded). Validation happens once, in ``__post_init__``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from laserkv.budget import BudgetSplit, budget_from_ratio, split_budget
from laserkv.errors import ConfigError
from laserkv.scorers.lsh import TIE_BREAKS

SELECTORS = ("exact", "lsh", "hybrid", "recency", "none")
"""exact: attention mass from the scoring rows; lsh: SimHash collisions of last-layer keys
(``lsh_mode``); hybrid: ``hybrid_primary`` then ``hybrid_secondary``; recency: the most recent
tokens (StreamingLLM); none: no eviction at all (the full cache)."""
HYBRID_PARTS = ("exact", "lsh", "recency")
LSH_MODES = ("frequency_rank", "magicpig_baseline")
COMPRESSION_MODES = ("accumulate", "recursive")
BACKENDS = ("eager", "flash")
SCORE_NORMS = ("all", "window")
GRANULARITIES = ("token", "layer", "head")
"""token: one kept set for every layer and KV head (the original); layer: one per layer; head:
one per layer and KV head. Every set has the same size, so caches stay rectangular."""
QUERY_SOURCES = ("question", "window")
"""question: score with the question appended to each block (LASER-KV, query-aware); window:
score with the block's own last ``observation_window`` tokens (query-agnostic, SnapKV-style)."""


def _check_choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(field, value, "one of " + ", ".join(allowed))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int(field: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(field, value, f"an integer >= {minimum}")


@dataclass(frozen=True)
class MethodConfig:
    """One compression method, fully specified.

    Attributes:
        name: label recorded with results (e.g. ``laser``, ``streaming``); not part of the hash.
        selector: how the global part is chosen (see ``SELECTORS``).
        compression_mode: ``accumulate`` (each block adds up to ``global`` tokens) or
            ``recursive`` (all non-anchor history is rescored each block; cache <= budget).
        backend: how exact scores are computed: ``eager`` materialises each layer's attention
            probabilities (the reference); ``flash`` runs SDPA and scores the question rows on the
            side with a streamed log-sum-exp (same scores, memory O(h * q * window)).
        score_norm: ``all`` (each row normalised over all keys it sees, eager semantics) or
            ``window`` (the original flash scorer: over its scored window only, i.e. held tail +
            block in accumulate mode, history + block in recursive mode; flash backend).
        budget: total token budget B. Give either ``budget`` or ``compression_ratio``; neither
            with selector ``none`` (no compression).
        compression_ratio: r, the fraction of the context's tokens to keep; B is derived per
            sample from its token count (``budget.budget_from_ratio``).
        protection_divisor: n >= 3; anchors = local = floor(B/n).
        block_size: context tokens prefilled per block.
        boundary_smoothing: accumulate mode: the next block sees (and may keep) the previous
            block's held-back local tail. Off = the original's ``--no_boundary_smoothing``.
        granularity: exact scores only: ``token``, ``layer`` or ``head`` (see ``GRANULARITIES``).
        query_source: ``question`` or ``window`` (see ``QUERY_SOURCES``).
        observation_window: tokens scoring their block when ``query_source="window"``.
        score_pooling: odd kernel size of an average pooling of exact scores over neighbouring
            slots (SnapKV's smoothing); 1 = none.
        lsh_mode: ``frequency_rank`` or ``magicpig_baseline`` (selector ``lsh`` or a hybrid part).
        lsh_bits: K, sign bits per table.
        lsh_tables: L, hash tables.
        lsh_seed: seed of the hyperplanes (same seed, same selection).
        tie_break: frequency_rank's tie-break distance (``l2``, ``max_sim``, ``mahalanobis``,
            ``partitioned_centroid``, ``none``); magicpig ignores it.
        hybrid_primary: selector that takes ``floor(G * hybrid_ratio)`` of the global part G.
        hybrid_secondary: selector that takes the rest from the remaining candidates.
        hybrid_ratio: rho in [0, 1].
        faithful_hybrid: leave the primary's unused slots empty, as the original does. Default:
            they go to the secondary.
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
    backend: str = "flash"
    score_norm: str = "all"
    budget: int | None = 1024
    compression_ratio: float | None = None
    protection_divisor: int = 4
    block_size: int = 4096
    boundary_smoothing: bool = True
    granularity: str = "token"
    query_source: str = "question"
    observation_window: int = 64
    score_pooling: int = 1
    lsh_mode: str = "frequency_rank"
    lsh_bits: int = 10
    lsh_tables: int = 8
    lsh_seed: int = 0
    tie_break: str = "l2"
    hybrid_primary: str = "exact"
    hybrid_secondary: str = "lsh"
    hybrid_ratio: float = 0.5
    faithful_hybrid: bool = False
    faithful_empty_block: bool = False
    faithful_recursive_budget: bool = False

    def __post_init__(self) -> None:
        _check_choice("selector", self.selector, SELECTORS)
        _check_choice("compression_mode", self.compression_mode, COMPRESSION_MODES)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("score_norm", self.score_norm, SCORE_NORMS)
        if self.score_norm == "window" and self.backend != "flash":
            raise ConfigError("score_norm", self.score_norm, "'all' unless backend='flash'")
        _check_choice("granularity", self.granularity, GRANULARITIES)
        _check_choice("query_source", self.query_source, QUERY_SOURCES)
        _check_choice("lsh_mode", self.lsh_mode, LSH_MODES)
        _check_choice("tie_break", self.tie_break, TIE_BREAKS)
        _check_choice("hybrid_primary", self.hybrid_primary, HYBRID_PARTS)
        _check_choice("hybrid_secondary", self.hybrid_secondary, HYBRID_PARTS)
        _check_int("block_size", self.block_size, 1)
        _check_int("protection_divisor", self.protection_divisor, 3)
        _check_int("observation_window", self.observation_window, 1)
        _check_int("lsh_bits", self.lsh_bits, 1)
        _check_int("lsh_tables", self.lsh_tables, 1)
        _check_int("lsh_seed", self.lsh_seed, 0)
        if self.lsh_seed >= 2**63:
            raise ConfigError("lsh_seed", self.lsh_seed, "below 2**63")
        if self.lsh_bits > 30:
            raise ConfigError("lsh_bits", self.lsh_bits, "at most 30 (bucket ids are 2**K per table)")
        if not isinstance(self.score_pooling, int) or self.score_pooling < 1 or self.score_pooling % 2 == 0:
            raise ConfigError("score_pooling", self.score_pooling, "an odd integer >= 1 (1 = no pooling)")
        if not _is_number(self.hybrid_ratio) or not 0.0 <= self.hybrid_ratio <= 1.0:
            raise ConfigError("hybrid_ratio", self.hybrid_ratio, "a number in [0, 1]")
        if self.selector == "hybrid" and self.hybrid_primary == self.hybrid_secondary:
            raise ConfigError("hybrid_secondary", self.hybrid_secondary, "a selector other than the primary")
        self._check_budget()
        if self.granularity != "token" and self.selector != "exact":
            raise ConfigError(
                "granularity",
                self.granularity,
                f"'token' with selector {self.selector!r} (layer/head: exact)",
            )
        if self.score_pooling > 1 and "exact" not in self.parts:
            raise ConfigError("score_pooling", self.score_pooling, "1 unless exact scores are used")
        if self.uses_lsh and self.lsh_mode == "magicpig_baseline" and self.lsh_tables < 2:
            raise ConfigError(
                "lsh_tables", self.lsh_tables, ">= 2 for magicpig_baseline (it keeps >= 2 collisions)"
            )

    def _check_budget(self) -> None:
        if self.selector == "none":
            for field in ("budget", "compression_ratio"):
                if getattr(self, field) is not None:
                    raise ConfigError(
                        field, getattr(self, field), "None with selector 'none' (the full cache)"
                    )
            return
        if (self.budget is None) == (self.compression_ratio is None):
            raise ConfigError(
                "budget",
                self.budget,
                f"exactly one of budget and compression_ratio with selector {self.selector!r} "
                f"(compression_ratio={self.compression_ratio})",
            )
        if self.budget is not None:
            _check_int("budget", self.budget, 1)
            split_budget(self.budget, self.protection_divisor)
        else:
            ratio = self.compression_ratio
            if not _is_number(ratio) or not 0.0 < ratio <= 1.0:  # type: ignore[operator]
                raise ConfigError("compression_ratio", ratio, "a fraction of context tokens kept, in (0, 1]")
            split_budget(1, self.protection_divisor)  # the divisor is checked before any sample is seen

    @property
    def parts(self) -> tuple[str, ...]:
        """The basic selectors this method runs (both parts for a hybrid)."""
        if self.selector == "hybrid":
            return (self.hybrid_primary, self.hybrid_secondary)
        return (self.selector,)

    @property
    def uses_attention_scores(self) -> bool:
        """Whether block forwards must accumulate exact attention mass."""
        return "exact" in self.parts

    @property
    def uses_lsh(self) -> bool:
        """Whether selection hashes last-layer keys."""
        return "lsh" in self.parts

    @property
    def needs_scoring_rows(self) -> bool:
        """Whether a block forward needs scoring rows (the question or the observation window)."""
        return self.uses_attention_scores or self.uses_lsh

    @property
    def appends_question(self) -> bool:
        """Whether blocks that must drop tokens are forwarded with the question appended."""
        return self.needs_scoring_rows and self.query_source == "question"

    def budget_for(self, context_tokens: int) -> int | None:
        """The budget B for a context of ``context_tokens`` tokens (``None``: the full cache).

        Raises:
            ConfigError: a compression ratio that leaves no token for this context.
        """
        if self.budget is not None or self.compression_ratio is None:
            return self.budget
        return budget_from_ratio(
            self.compression_ratio,
            context_tokens,
            self.compression_mode,
            self.block_size,
            self.protection_divisor,
        )

    def split_for(self, context_tokens: int) -> BudgetSplit | None:
        """The budget split for a context of ``context_tokens`` tokens (``None``: the full cache)."""
        budget = self.budget_for(context_tokens)
        return None if budget is None else split_budget(budget, self.protection_divisor)

    def replace(self, **changes: object) -> MethodConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """All fields as a plain dict (for result rows and manifests)."""
        return dataclasses.asdict(self)

    @property
    def config_hash(self) -> str:
        """A stable 16-hex-digit hash of every field except ``name`` (sha256 of sorted JSON)."""
        fields = {k: v for k, v in self.to_dict().items() if k != "name"}
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class GenerationConfig:
    """How the answer is decoded after the compressed prefill.

    Attributes:
        max_new_tokens: upper bound on generated tokens.
        stop_strings: the decoded answer is cut at the first occurrence of each.
        temperature: 0 = greedy (argmax); > 0 = sampling from softmax(logits / temperature)
            (LongBench v2's official runs use 0.1).
        seed: seed of the sampling generator (same seed, same answer).
    """

    max_new_tokens: int = 100
    stop_strings: tuple[str, ...] = ()
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_int("seed", self.seed, 0)
        if not _is_number(self.temperature) or self.temperature < 0:
            raise ConfigError("temperature", self.temperature, "a number >= 0 (0 = greedy)")
