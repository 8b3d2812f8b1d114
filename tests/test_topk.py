"""select_top against a brute-force loop: sorted output, ties to the earlier index."""

from __future__ import annotations

import pytest
import torch

from laserkv.topk import select_top


def brute_force_top(scores: list[float], n_keep: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(min(max(n_keep, 0), len(scores))):
        best = None
        for index, score in enumerate(scores):
            if index in chosen:
                continue
            if best is None or score > scores[best]:  # strict: ties keep the earlier index
                best = index
        assert best is not None
        chosen.append(best)
    return sorted(chosen)


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_with_ties(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 40, (1,), generator=generator))
    scores = torch.randint(0, 5, (n,), generator=generator).float()  # many ties
    n_keep = int(torch.randint(-1, n + 3, (1,), generator=generator))
    assert select_top(scores, n_keep).tolist() == brute_force_top(scores.tolist(), n_keep)


def test_batched_rows_are_independent() -> None:
    scores = torch.tensor([[[0.1, 0.9, 0.5, 0.9]], [[3.0, 2.0, 1.0, 0.0]]])
    kept = select_top(scores, 2)
    assert kept.shape == (2, 1, 2)
    assert kept.tolist() == [[[1, 3]], [[0, 1]]]
