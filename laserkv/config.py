"""Frozen configs passed down whole: ``MethodConfig`` (what compression runs: engine settings +
a selector plugin) and ``GenerationConfig`` (how the answer is decoded). Validation happens once,
in ``__post_init__``.

A method's parameters also have a flat form (``MethodConfig.params()``: engine fields, the
selector's kind as ``selector`` and its parameters by name), which is what result rows store,
what overrides and sweep grids name, and what the config hash covers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from laserkv.budget import (
    BUDGET_RULES,
    BudgetSplit,
    budget_for_target,
    budget_from_ratio,
    budget_from_ratio_fixed,
    exact_target,
    split_budget,
    split_fixed,
)
from laserkv.checks import check_bool, check_choice, check_fraction, check_int, is_number
from laserkv.errors import ConfigError
from laserkv.selectors import ExactSelector, Selector

COMPRESSION_MODES = ("accumulate", "recursive")
BACKENDS = ("eager", "flash")
SCORE_NORMS = ("all", "window")

HASH_V1_DEFAULTS: dict[str, object] = {
    "selector": "exact",
    "compression_mode": "accumulate",
    "backend": "flash",
    "score_norm": "all",
    "budget": 1024,
    "compression_ratio": None,
    "protection_divisor": 4,
    "block_size": 4096,
    "boundary_smoothing": True,
    "granularity": "token",
    "query_source": "question",
    "observation_window": 64,
    "score_pooling": 1,
    "lsh_mode": "frequency_rank",
    "lsh_bits": 10,
    "lsh_tables": 8,
    "lsh_seed": 0,
    "tie_break": "l2",
    "hybrid_primary": "exact",
    "hybrid_secondary": "lsh",
    "hybrid_ratio": 0.5,
    "faithful_hybrid": False,
    "faithful_empty_block": False,
    "faithful_recursive_budget": False,
}
"""The parameters of the first release's flat ``MethodConfig``, with their defaults then. The
hash always covers these (a method that lacks one counts it at this default), so every hash of
that release is unchanged; any later parameter counts only when it differs from its default, so
adding a parameter with a default changes no existing hash."""


@dataclass(frozen=True)
class EngineConfig:
    """How the block loop runs, whatever the selector.

    Attributes:
        compression_mode: ``accumulate`` (each block adds up to ``global`` tokens) or
            ``recursive`` (all non-anchor history is rescored each block; cache <= budget).
        backend: how exact scores are computed: ``eager`` materialises each layer's attention
            probabilities (the reference); ``flash`` runs SDPA and scores the rows on the side
            with a streamed log-sum-exp (same scores, memory O(h * q * window)).
        score_norm: ``all`` (each row normalised over all keys it sees, eager semantics) or
            ``window`` (the original flash scorer: over its scored window only; flash backend).
        budget: total token budget B. Give either ``budget`` or ``compression_ratio``; neither
            with a selector that keeps everything.
        compression_ratio: r, the fraction of the context's tokens to keep; B is derived per
            sample from its token count (``budget.budget_from_ratio``).
        protection_divisor: the budget split: n >= 3 gives anchors = local = floor(B/n)
            (LASER-KV's); ``None`` gives fixed slots (the three fields below).
        anchor_tokens: fixed slots only: the first context tokens always kept.
        local_tokens: fixed slots only: each block's last tokens always kept ...
        local_fraction: ... plus ``floor(local_fraction * B)`` more.
        block_size: context tokens prefilled per block.
        boundary_smoothing: accumulate mode: the next block sees (and may keep) the previous
            block's held-back local tail. Off = the original's ``--no_boundary_smoothing``.
        faithful_empty_block: reproduce the original's skip of the whole selection step when a
            block has no candidates of its own (drops the held tail / history). Default: fixed.
        faithful_recursive_budget: recursive mode: select exactly ``global`` candidates per block,
            as the original does, even when the local window or the anchors are not full. Default:
            the selection fills ``budget - fixed slots``, so a budget >= the context keeps all.
        budget_rule: how many tokens the final cache holds: ``original`` (each block keeps the
            split's global part; in accumulate mode the ratio's B comes from the original's
            formula, which keeps a little more than ``r T``) or ``exact`` (exactly ``floor(r T)``
            tokens for a ratio, B for a budget, whenever the context is longer: in accumulate mode
            the split comes from the budget that keeps about that many over the ``ceil(T / b)``
            blocks that run (the target itself for one block) and the target minus the anchors
            and the last local tail is shared over those blocks in proportion to their
            candidates; in recursive mode every block fills ``target - fixed slots`` whatever
            ``faithful_recursive_budget`` and ``faithful_empty_block`` say; in accumulate mode the
            empty-block skip drops what the original drops and the other blocks make up for it).
            See ``budget.budget_for_target``, ``budget.share_out``, ``modes.block_globals``.
    """

    compression_mode: str = "accumulate"
    backend: str = "flash"
    score_norm: str = "all"
    budget: int | None = 1024
    compression_ratio: float | None = None
    protection_divisor: int | None = 4
    anchor_tokens: int = 0
    local_tokens: int = 0
    local_fraction: float = 0.0
    block_size: int = 4096
    boundary_smoothing: bool = True
    faithful_empty_block: bool = False
    faithful_recursive_budget: bool = False
    budget_rule: str = "original"

    def __post_init__(self) -> None:
        check_choice("compression_mode", self.compression_mode, COMPRESSION_MODES)
        check_choice("budget_rule", self.budget_rule, BUDGET_RULES)
        check_choice("backend", self.backend, BACKENDS)
        check_choice("score_norm", self.score_norm, SCORE_NORMS)
        if self.score_norm == "window" and self.backend != "flash":
            raise ConfigError("score_norm", self.score_norm, "'all' unless backend='flash'")
        check_int("block_size", self.block_size, 1)
        for flag in ("boundary_smoothing", "faithful_empty_block", "faithful_recursive_budget"):
            check_bool(flag, getattr(self, flag))
        if self.protection_divisor is not None:
            check_int("protection_divisor", self.protection_divisor, 3)
        check_int("anchor_tokens", self.anchor_tokens, 0)
        check_int("local_tokens", self.local_tokens, 0)
        check_fraction("local_fraction", self.local_fraction, 0.0, 1.0, closed_high=False)
        if self.protection_divisor is not None and (
            self.anchor_tokens,
            self.local_tokens,
            self.local_fraction,
        ) != (0, 0, 0):
            raise ConfigError(
                "protection_divisor", self.protection_divisor, "None when anchor/local tokens are fixed"
            )
        if self.budget is not None:
            check_int("budget", self.budget, 1)
            self.split(self.budget)
        if self.compression_ratio is not None and (
            not is_number(self.compression_ratio) or not 0.0 < self.compression_ratio <= 1.0
        ):
            raise ConfigError(
                "compression_ratio", self.compression_ratio, "a fraction of context tokens kept, in (0, 1]"
            )

    def split(self, budget_tokens: int) -> BudgetSplit:
        """The split of a budget of ``budget_tokens`` by this method's rule."""
        if self.protection_divisor is not None:
            return split_budget(budget_tokens, self.protection_divisor)
        return split_fixed(budget_tokens, self.anchor_tokens, self.local_tokens, self.local_fraction)

    def budget_for(self, context_tokens: int) -> int | None:
        """The budget B for a context of ``context_tokens`` tokens (``None``: the full cache), the
        one its split is made from (``budget_rule="exact"``: ``budget.budget_for_target``).

        Raises:
            ConfigError: a compression ratio that leaves no token for this context.
        """
        mode, block = self.compression_mode, self.block_size
        target = self.target_for(context_tokens)
        if target is not None:
            fixed = (self.anchor_tokens, self.local_tokens, self.local_fraction)
            return budget_for_target(target, context_tokens, mode, block, self.protection_divisor, fixed)
        if self.budget is not None or self.compression_ratio is None:
            return self.budget
        if self.protection_divisor is not None:
            return budget_from_ratio(
                self.compression_ratio, context_tokens, mode, block, self.protection_divisor
            )
        fixed = (self.anchor_tokens, self.local_tokens, self.local_fraction)
        return budget_from_ratio_fixed(self.compression_ratio, context_tokens, mode, block, fixed)

    def target_for(self, context_tokens: int) -> int | None:
        """The exact final cache length for a context of ``context_tokens`` tokens
        (``budget_rule="exact"``: ``floor(r T)`` or B), or None (the original rule, or the full cache).

        Raises:
            ConfigError: a compression ratio that leaves no token for this context.
        """
        if self.budget_rule != "exact":
            return None
        return exact_target(self.budget, self.compression_ratio, context_tokens)

    def split_for(self, context_tokens: int) -> BudgetSplit | None:
        """The budget split for a context of ``context_tokens`` tokens, with the exact rule's
        target (``None``: the full cache)."""
        budget = self.budget_for(context_tokens)
        if budget is None:
            return None
        split = self.split(budget)
        target = self.target_for(context_tokens)
        return split if target is None else dataclasses.replace(split, target=target)


ENGINE_FIELDS = tuple(field.name for field in dataclasses.fields(EngineConfig))


@dataclass(frozen=True)
class MethodConfig:
    """One compression method, fully specified: engine settings and a selector plugin.

    Attributes:
        name: label recorded with results (e.g. ``laser``, ``streaming``); not part of the hash.
        selector: the selector (its own parameters inside), see ``laserkv.selectors``.
        engine: the block loop's settings.
    """

    name: str = "custom"
    selector: Selector = field(default_factory=ExactSelector)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.selector, Selector):
            raise ConfigError("selector", self.selector, "a Selector (see laserkv.selectors.SELECTORS)")
        engine = self.engine
        if not self.selector.evicts:
            for field in ("budget", "compression_ratio"):
                if getattr(engine, field) is not None:
                    raise ConfigError(
                        field,
                        getattr(engine, field),
                        f"None with selector {self.selector.kind!r} (the full cache)",
                    )
            return
        if self.selector.needs().carry_scores and engine.score_norm == "window":
            raise ConfigError(
                "score_norm",
                "window",
                f"'all' with selector {self.selector.kind!r} (it carries mass over blocks)",
            )
        if (engine.budget is None) == (engine.compression_ratio is None):
            raise ConfigError(
                "budget",
                engine.budget,
                f"exactly one of budget and compression_ratio with selector {self.selector.kind!r} "
                f"(compression_ratio={engine.compression_ratio})",
            )

    @property
    def kind(self) -> str:
        """The selector's registered kind."""
        return self.selector.kind

    def budget_for(self, context_tokens: int) -> int | None:
        """The budget B for a context of ``context_tokens`` tokens (``None``: the full cache)."""
        return self.engine.budget_for(context_tokens)

    def split_for(self, context_tokens: int) -> BudgetSplit | None:
        """The budget split for a context of ``context_tokens`` tokens (``None``: the full cache;
        ``target`` set under ``budget_rule="exact"``)."""
        return self.engine.split_for(context_tokens)

    def params(self) -> dict[str, object]:
        """The flat parameters: ``selector`` (its kind), the engine fields, the selector's own."""
        return {
            "selector": self.selector.kind,
            **dataclasses.asdict(self.engine),
            **self.selector.flat_params(),
        }

    def param_defaults(self) -> dict[str, object]:
        """The default of each flat parameter (for the hash rule)."""
        engine = {item.name: item.default for item in dataclasses.fields(EngineConfig)}
        return {"selector": "exact", **engine, **self.selector.flat_defaults()}

    def to_dict(self) -> dict[str, object]:
        """``name`` and the flat parameters (for manifests)."""
        return {"name": self.name, **self.params()}

    def renamed(self, name: str) -> MethodConfig:
        """The same method under another label."""
        return dataclasses.replace(self, name=name)

    @property
    def config_hash(self) -> str:
        """A stable 16-hex-digit hash of what determines the computation: sha256 of the sorted
        JSON of the first release's parameters plus every later one not at its default."""
        return params_hash(self.params(), self.param_defaults())


def params_hash(params: dict[str, object], defaults: dict[str, object]) -> str:
    """The hash rule of ``MethodConfig.config_hash`` over flat parameters (see ``HASH_V1_DEFAULTS``)."""
    key = dict(HASH_V1_DEFAULTS)
    for name, value in params.items():
        if name in HASH_V1_DEFAULTS or value != defaults.get(name):
            key[name] = value
    blob = json.dumps(key, sort_keys=True).encode()
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
        check_int("max_new_tokens", self.max_new_tokens, 1)
        check_int("seed", self.seed, 0)
        if not is_number(self.temperature) or self.temperature < 0:
            raise ConfigError("temperature", self.temperature, "a number >= 0 (0 = greedy)")
