"""The selector plugin protocol.

A selector kind is one frozen dataclass: its fields are its own typed parameters (validated in
``__post_init__``), ``needs()`` declares what a block forward must collect for it, and
``select_within`` turns that evidence into kept candidate indices. The engine runs the forward
the declared needs ask for and never looks at the selector's kind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from laserkv.checks import check_choice, check_int
from laserkv.errors import ConfigError, LaserKVError
from laserkv.protocol import QUERY_AGNOSTIC, QUERY_AWARE

ROW_SOURCES = ("question", "window", "block")
"""question: the question appended to each block that must drop tokens (query-aware);
window: the block's own last ``observation_window`` tokens (query-agnostic);
block: every token of the block (query-agnostic; H2O's accumulated attention)."""
GRANULARITIES = ("token", "layer", "head")
"""token: one kept set for every layer and KV head; layer: one per layer; head: one per layer and
KV head. Every set has the same size, so caches stay rectangular."""


@dataclass(frozen=True)
class ForwardNeeds:
    """What one block forward must collect for a selector.

    Attributes:
        scoring_rows: ``None`` (no scoring rows: nothing is scored), or where they come from
            (``ROW_SOURCES``).
        observation_window: the number of rows when ``scoring_rows="window"``.
        attention: ``None``, or the granularity (``GRANULARITIES``) of the scoring rows' exact
            attention mass over the candidates, summed over layers and heads it does not split.
        last_layer_keys: the last layer's head-mean keys of the scoring rows and candidates.
        question_rows: with ``scoring_rows="question"``: only the question's last
            ``question_rows`` tokens score (TOVA: its last token); ``None`` = all of them.
        carry_scores: the attention mass is accumulated over blocks (H2O): every block is
            scored, over every slot, and each kept slot carries its total into the next block.
    """

    scoring_rows: str | None = None
    observation_window: int = 64
    attention: str | None = None
    last_layer_keys: bool = False
    question_rows: int | None = None
    carry_scores: bool = False

    def __post_init__(self) -> None:
        if self.scoring_rows is not None:
            check_choice("query_source", self.scoring_rows, ROW_SOURCES)
        if self.attention is not None:
            check_choice("granularity", self.attention, GRANULARITIES)
        if (self.attention is not None or self.last_layer_keys) and self.scoring_rows is None:
            raise ConfigError("scoring_rows", None, "a row source for scores or keys")
        if self.question_rows is not None:
            check_int("question_rows", self.question_rows, 1)
        if self.carry_scores and self.attention is None:
            raise ConfigError("carry_scores", True, "attention mass to carry (needs().attention)")

    def merge(self, other: ForwardNeeds) -> ForwardNeeds:
        """Both selectors' needs from one forward (a hybrid's parts share their scoring rows).

        Raises:
            ConfigError: the two ask for different scoring rows or attention granularities.
        """
        rows = {self.rows_key(), other.rows_key()} - {None}
        if len(rows) > 1:
            raise ConfigError("query_source", sorted(map(str, rows)), "the same scoring rows for both parts")
        granularity = {item for item in (self.attention, other.attention) if item is not None}
        if len(granularity) > 1:
            raise ConfigError("granularity", sorted(granularity), "one attention granularity")
        if self.carry_scores != other.carry_scores and self.attention and other.attention:
            both = [self.carry_scores, other.carry_scores]
            raise ConfigError("carry_scores", both, "the same for both parts")
        source = self if self.scoring_rows is not None else other
        return ForwardNeeds(
            source.scoring_rows,
            source.observation_window,
            self.attention or other.attention,
            self.last_layer_keys or other.last_layer_keys,
            source.question_rows,
            self.carry_scores or other.carry_scores,
        )

    def rows_key(self) -> tuple[str, int | None] | tuple[str] | None:
        """The scoring rows as a comparable key (the window size counts only for ``window``, the
        question rows only for ``question``)."""
        if self.scoring_rows is None:
            return None
        if self.scoring_rows == "window":
            return ("window", self.observation_window)
        if self.scoring_rows == "question":
            return ("question", self.question_rows)
        return (self.scoring_rows,)


class MissingEvidenceError(LaserKVError):
    """A selector read evidence that its declared needs did not ask the forward for."""


@dataclass(frozen=True)
class BlockEvidence:
    """What one block forward collected about its ``n_candidates`` candidates.

    Attributes:
        n_candidates: how many candidates compete.
        cache_shape: (layers, kv_heads) of the cache, for per-layer / per-head sets.
        window_mass: (layers or 1, kv_heads or 1, w) fp32 exact attention mass of the scoring
            rows over the slots of the scored window, or None if not asked for.
        candidate_offsets: (n,) each candidate's slot relative to the scored window's start.
        query_keys: (rows, d) last-layer head-mean keys of the scoring rows, or None.
        candidate_keys: (n, d) last-layer head-mean keys of the candidates, or None.
        candidate_positions: (n,) or (layers, kv_heads, n) context positions of the candidates.
        rows_end: the position after the last context token forwarded so far (the block's end).
    """

    n_candidates: int
    cache_shape: tuple[int, int] = (1, 1)
    window_mass: Tensor | None = None
    candidate_offsets: Tensor | None = None
    query_keys: Tensor | None = None
    candidate_keys: Tensor | None = None
    candidate_positions: Tensor | None = None
    rows_end: int = 0

    def attention_mass(self) -> tuple[Tensor, Tensor]:
        """``(window_mass, candidate_offsets)``.

        Raises:
            MissingEvidenceError: the selector's needs did not ask for attention mass.
        """
        if self.window_mass is None or self.candidate_offsets is None:
            raise MissingEvidenceError("attention mass was not collected: declare needs().attention")
        return self.window_mass, self.candidate_offsets

    def last_layer_keys(self) -> tuple[Tensor, Tensor]:
        """``(query_keys, candidate_keys)``.

        Raises:
            MissingEvidenceError: the selector's needs did not ask for last-layer keys.
        """
        if self.query_keys is None or self.candidate_keys is None:
            raise MissingEvidenceError("last-layer keys were not collected: declare needs().last_layer_keys")
        return self.query_keys, self.candidate_keys


@dataclass(frozen=True)
class Selector:
    """Base of every selector kind (a frozen dataclass whose fields are its parameters).

    Class attributes:
        kind: the registered name.
        description: one line for listings.
        evicts: False only for the selector that keeps everything (no budget then).
        prefill: how the context is prefilled: ``blocks`` (the block engine, which builds the
            evidence ``needs()`` declares) or another entry of ``engine.PREFILLS``.
        source: the published method and reference code it follows (listings).
    """

    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    evicts: ClassVar[bool] = True
    prefill: ClassVar[str] = "blocks"
    source: ClassVar[str] = ""

    def needs(self) -> ForwardNeeds:
        """What a block forward must collect for this selector (default: nothing)."""
        return ForwardNeeds()

    @property
    def protocol(self) -> str:
        """``query-aware`` when the question's rows may score the context, else ``query-agnostic``
        (the protocol a comparison must state)."""
        return QUERY_AWARE if self.needs().scoring_rows == "question" else QUERY_AGNOSTIC

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The flat parameter names this kind declares (its dataclass fields)."""
        return tuple(item.name for item in dataclasses.fields(cls))

    @classmethod
    def from_params(cls, params: dict[str, object]) -> tuple[Selector, set[str]]:
        """A selector of this kind from the flat parameters it declares.

        Returns:
            ``(selector, used)``: ``used`` names the parameters it took.
        """
        own = {name: params[name] for name in cls.param_names() if name in params}
        return cls(**own), set(own)

    @property
    def selects_one_set(self) -> bool:
        """Whether it keeps one set for every layer and head (so it can be a hybrid's part)."""
        return True

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        """The ``n_keep`` kept members of ``subset`` (ascending candidate indices), ascending."""
        raise NotImplementedError(f"selector {self.kind!r} cannot select within a subset")

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        """The kept candidates, as indices into the candidate list (CPU int64).

        Returns:
            (n_select,) ascending, or (layers, kv_heads, n_select) ascending along the last
            dimension for selectors that keep one set per layer / head.
        """
        return self.select_within(evidence, torch.arange(evidence.n_candidates), n_select)

    def flat_params(self) -> dict[str, object]:
        """Its parameters by name (a hybrid adds its parts')."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def flat_defaults(self) -> dict[str, object]:
        """The default of each parameter ``flat_params`` returns."""
        return {field.name: _default(field) for field in dataclasses.fields(self)}

    def summary(self) -> str:
        """A short description for tables, e.g. ``lsh magicpig_baseline``."""
        return self.kind


def _default(field: dataclasses.Field[object]) -> object:
    """A dataclass field's default value (made by its factory where it has one)."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def rows_params(query_source: object, observation_window: object) -> None:
    """Validate the scoring-row parameters shared by selectors that score with rows (the
    question or a window; ``block`` rows are H2O's own)."""
    check_choice("query_source", query_source, ("question", "window"))
    check_int("observation_window", observation_window, 1)
