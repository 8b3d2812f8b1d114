"""Token-importance scores for the global part, one function per selector.

``CANDIDATE_SCORERS[selector](block_scores, candidate_slots)`` returns one fp32 score per
candidate slot, higher = more worth keeping.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from laserkv.scorers.exact import candidate_attention_mass
from laserkv.scorers.recency import candidate_recency

CandidateScorer = Callable[[Tensor | None, Tensor], Tensor]

CANDIDATE_SCORERS: dict[str, CandidateScorer] = {
    "exact": candidate_attention_mass,
    "recency": candidate_recency,
}

__all__ = ["CANDIDATE_SCORERS", "CandidateScorer"]
