"""``hybrid``: a primary selector takes ``floor(G * hybrid_ratio)`` of the global part G from all
candidates, a secondary the rest from the candidates the primary left (LASER-KV: exact + LSH)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from laserkv.checks import check_bool, check_fraction
from laserkv.errors import ConfigError
from laserkv.selectors.base import BlockEvidence, ForwardNeeds, Selector
from laserkv.selectors.exact import ExactSelector
from laserkv.selectors.lsh import LshSelector
from laserkv.topk import hybrid_select


@dataclass(frozen=True)
class HybridSelector(Selector):
    """Two selectors sharing one block forward's evidence.

    Attributes:
        primary: takes ``floor(n_select * hybrid_ratio)`` of all candidates.
        secondary: takes the rest of the budget from the candidates the primary left.
        hybrid_ratio: rho in [0, 1].
        faithful_hybrid: leave the primary's unused slots empty, as the original does. Default:
            they go to the secondary.
    """

    kind = "hybrid"
    description = "a primary selector takes rho of the global part, a secondary the rest"
    source = "LASER-KV (spec/method.md)"

    primary: Selector = field(default_factory=ExactSelector)
    secondary: Selector = field(default_factory=LshSelector)
    hybrid_ratio: float = 0.5
    faithful_hybrid: bool = False

    def __post_init__(self) -> None:
        check_fraction("hybrid_ratio", self.hybrid_ratio, 0.0, 1.0)
        check_bool("faithful_hybrid", self.faithful_hybrid)
        for role, part in (("hybrid_primary", self.primary), ("hybrid_secondary", self.secondary)):
            if not part.evicts or isinstance(part, HybridSelector):
                raise ConfigError(role, part.kind, "a basic selector that evicts (exact, lsh, recency, ...)")
            if not part.selects_one_set:
                granularity = getattr(part, "granularity", None)
                raise ConfigError("granularity", granularity, "'token' inside a hybrid")
        if self.primary.kind == self.secondary.kind:
            raise ConfigError("hybrid_secondary", self.secondary.kind, "a selector other than the primary")
        self.needs()  # the parts must agree on their scoring rows
        shared = self.primary.flat_params().keys() & self.secondary.flat_params().keys()
        for name in sorted(shared):
            first, second = self.primary.flat_params()[name], self.secondary.flat_params()[name]
            if first != second:
                raise ConfigError(name, [first, second], "the same value in both parts of a hybrid")

    def needs(self) -> ForwardNeeds:
        return self.primary.needs().merge(self.secondary.needs())

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        raise NotImplementedError("a hybrid selects over all candidates")

    def select(self, evidence: BlockEvidence, n_select: int) -> Tensor:
        def primary(subset: Tensor, n_keep: int) -> Tensor:
            return self.primary.select_within(evidence, subset, n_keep)

        def secondary(subset: Tensor, n_keep: int) -> Tensor:
            return self.secondary.select_within(evidence, subset, n_keep)

        return hybrid_select(
            primary, secondary, evidence.n_candidates, n_select, self.hybrid_ratio, not self.faithful_hybrid
        )

    def flat_params(self) -> dict[str, object]:
        return {
            "hybrid_primary": self.primary.kind,
            "hybrid_secondary": self.secondary.kind,
            "hybrid_ratio": self.hybrid_ratio,
            "faithful_hybrid": self.faithful_hybrid,
            **self.secondary.flat_params(),
            **self.primary.flat_params(),
        }

    def flat_defaults(self) -> dict[str, object]:
        return {
            "hybrid_primary": "exact",
            "hybrid_secondary": "lsh",
            "hybrid_ratio": 0.5,
            "faithful_hybrid": False,
            **self.secondary.flat_defaults(),
            **self.primary.flat_defaults(),
        }

    def summary(self) -> str:
        return f"hybrid {self.primary.summary()}+{self.secondary.summary()} rho {self.hybrid_ratio}"
