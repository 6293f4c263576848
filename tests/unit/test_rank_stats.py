"""ROC AUC and Spearman's ρ (scipy underneath) against hand counts, with ties.

The references here are written from the definitions, pair by pair and rank by rank, so they
share no code with scipy: a tie counts one half in the AUC, and tied values share the mean of
the ranks they span in ρ.
"""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from circuits.discrete_sae import spearman
from circuits.scoring import roc_auc


def _pairwise_auc(scores: dict, truth: set) -> float:
    pos = [s for k, s in scores.items() if k in truth]
    neg = [s for k, s in scores.items() if k not in truth]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def _midranks(xs: list[float]) -> list[float]:
    """1-based rank; a value tied with t others spans ranks below+1 .. below+t+1, mean below+(t+1)/2."""
    return [sum(y < x for y in xs) + (sum(y == x for y in xs) + 1) / 2 for x in xs]


def _spearman_by_hand(a: list[float], b: list[float]) -> float:
    return statistics.correlation(_midranks(a), _midranks(b))


def test_roc_auc_hand_computed_with_ties():
    # members {p1: 3, p2: 2}, non-members {n1: 2, n2: 2, n3: 0}:
    # p1 beats all three (3); p2 ties n1 and n2 (0.5 + 0.5) and beats n3 (1): 5 of 6 pairs
    scores = {"p1": 3, "p2": 2, "n1": 2, "n2": 2, "n3": 0}
    assert roc_auc(scores, {"p1", "p2"}) == 5 / 6
    assert roc_auc({"p": 1.0, "n": 1.0}, {"p"}) == 0.5  # one tie, nothing else


def test_spearman_hand_computed_with_ties():
    # a = [1, 2, 2, 3] → ranks [1, 2.5, 2.5, 4]; b = [10, 30, 20, 20] → ranks [1, 4, 2.5, 2.5]
    # centred: [-1.5, 0, 0, 1.5] and [-1.5, 1.5, 0, 0]; ρ = 2.25 / (√4.5 · √4.5) = 0.5
    a, b = torch.tensor([1.0, 2, 2, 3]), torch.tensor([10.0, 30, 20, 20])
    assert spearman(a, b) == pytest.approx(0.5, abs=1e-15)
    assert spearman(a, -a) == pytest.approx(-1.0, abs=1e-15)
    assert spearman(a, torch.ones(4)) == 0.0  # constant side: no ordering to correlate with
    assert spearman(torch.tensor([5.0]), torch.tensor([1.0])) == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_scipy_versions_equal_the_definitions_on_random_tied_inputs(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    levels = [0, 1, 2, 3, 4.5, -1]  # few levels: many ties
    scores = {i: rng.choice(levels) for i in range(n)}
    truth = set(rng.sample(range(n), rng.randint(1, n - 1)))
    assert roc_auc(scores, truth) == pytest.approx(_pairwise_auc(scores, truth), abs=1e-12)
    a = [float(rng.choice(levels)) for _ in range(n)]
    b = [float(rng.randint(0, 5)) for _ in range(n)]
    if len(set(a)) > 1 and len(set(b)) > 1:
        assert spearman(torch.tensor(a), torch.tensor(b)) == pytest.approx(_spearman_by_hand(a, b), abs=1e-12)
