"""``lsh``: SimHash collisions between the scoring rows' and the candidates' last-layer keys
(method.md section 4): ``frequency_rank`` or ``magicpig_baseline``."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from torch import Tensor

from laserkv.checks import check_choice, check_int
from laserkv.errors import ConfigError
from laserkv.scorers.lsh import TIE_BREAKS, hyperplanes, select_frequency_rank, select_magicpig
from laserkv.selectors.base import BlockEvidence, ForwardNeeds, Selector, rows_params

LSH_MODES = ("frequency_rank", "magicpig_baseline")


@functools.lru_cache(maxsize=16)
def call_hyperplanes(dim: int, n_bits: int, n_tables: int, seed: int) -> Tensor:
    """The CPU hyperplanes of a seed (drawn once, the same for every block of every call)."""
    return hyperplanes(dim, n_bits, n_tables, seed)


@dataclass(frozen=True)
class LshSelector(Selector):
    """LSH ranking of last-layer head-mean keys; each subset is centred by its own mean.

    Attributes:
        query_source, observation_window: the scoring rows (as for ``exact``).
        lsh_mode: ``frequency_rank`` or ``magicpig_baseline``.
        lsh_bits: K, sign bits per table (at most 30).
        lsh_tables: L, hash tables (>= 2 for magicpig, which keeps >= 2 collisions).
        lsh_seed: seed of the hyperplanes (same seed, same selection).
        tie_break: frequency_rank's tie-break distance (``TIE_BREAKS``); magicpig ignores it.
    """

    kind = "lsh"
    description = "SimHash collisions of last-layer keys with the scoring rows"
    source = "MagicPIG, Chen et al. 2024 (arXiv:2410.16179); LASER-KV reference code"

    query_source: str = "question"
    observation_window: int = 64
    lsh_mode: str = "frequency_rank"
    lsh_bits: int = 10
    lsh_tables: int = 8
    lsh_seed: int = 0
    tie_break: str = "l2"

    def __post_init__(self) -> None:
        rows_params(self.query_source, self.observation_window)
        check_choice("lsh_mode", self.lsh_mode, LSH_MODES)
        check_choice("tie_break", self.tie_break, TIE_BREAKS)
        check_int("lsh_bits", self.lsh_bits, 1)
        check_int("lsh_tables", self.lsh_tables, 1)
        check_int("lsh_seed", self.lsh_seed, 0)
        if self.lsh_seed >= 2**63:
            raise ConfigError("lsh_seed", self.lsh_seed, "below 2**63")
        if self.lsh_bits > 30:
            raise ConfigError("lsh_bits", self.lsh_bits, "at most 30 (bucket ids are 2**K per table)")
        if self.lsh_mode == "magicpig_baseline" and self.lsh_tables < 2:
            raise ConfigError(
                "lsh_tables", self.lsh_tables, ">= 2 for magicpig_baseline (it keeps >= 2 collisions)"
            )

    def needs(self) -> ForwardNeeds:
        return ForwardNeeds(self.query_source, self.observation_window, last_layer_keys=True)

    def select_within(self, evidence: BlockEvidence, subset: Tensor, n_keep: int) -> Tensor:
        query_keys, candidate_keys = evidence.last_layer_keys()
        planes = call_hyperplanes(candidate_keys.shape[-1], self.lsh_bits, self.lsh_tables, self.lsh_seed)
        planes = planes.to(candidate_keys.device)
        keys = candidate_keys[subset.to(candidate_keys.device)]
        if self.lsh_mode == "magicpig_baseline":
            kept = select_magicpig(query_keys, keys, n_keep, planes, self.lsh_bits)
        else:
            kept = select_frequency_rank(query_keys, keys, n_keep, planes, self.lsh_bits, self.tie_break)
        return subset[kept.cpu()]

    def summary(self) -> str:
        return f"lsh {self.lsh_mode}"
