"""TPP on a planted dictionary: one latent per class, so ablating class i's latent blinds probe i only."""

from __future__ import annotations

import pytest
import torch

from evals.saebench.tpp import top_n, tpp_scores

CLASSES, ITEMS, D = ["a", "b", "c"], 30, 12


def _data(seed: int = 0):
    """x = 3 e_class + noise on the other axes (never on the class axes), labels by class."""
    g = torch.Generator().manual_seed(seed)
    xs, labels = [], []
    for i in range(len(CLASSES) * ITEMS):
        c = i % len(CLASSES)
        x = torch.zeros(D)
        x[len(CLASSES) :] = torch.randn(D - len(CLASSES), generator=g).abs()
        x[c] = 3.0
        xs.append(x)
        labels.append(CLASSES[c])
    n = len(labels)
    train, test = list(range(0, int(0.7 * n))), list(range(int(0.7 * n), n))
    return torch.stack(xs), labels, train, test


def _identity_sae(W: torch.Tensor):
    """Codes relu(x W^T) decoded by f W: exact for x in the positive span of orthonormal rows W."""
    return (lambda x: torch.relu(x @ W.T)), (lambda f: f @ W)


def test_top_n_skips_zero_effects():
    assert top_n(torch.tensor([0.0, 3.0, 0.0, 1.0, -2.0]), 4).tolist() == [1, 3, 4]


def test_planted_dictionary_perturbs_only_the_targeted_probe():
    x, labels, train, test = _data()
    encode, decode = _identity_sae(torch.eye(D))  # latent c is class c's axis
    overall, per_class, clean = tpp_scores(x, labels, train, test, CLASSES, encode, decode, [1], 0)
    assert all(a == 1.0 for a in clean.values())
    for c in CLASSES:
        assert per_class[c]["tpp_threshold_1_intended_diff_only"] >= 0.4  # probe c falls to about chance
        assert per_class[c]["tpp_threshold_1_unintended_diff_only"] == pytest.approx(0.0, abs=0.05)
    assert overall["tpp_threshold_1_total_metric"] >= 0.4

    # a rotated dictionary mixes every class into every latent: ablating one latent is no targeted removal
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(5)))
    encode, decode = _identity_sae(q.T)
    mixed, _, _ = tpp_scores(x, labels, train, test, CLASSES, encode, decode, [1], 0)
    assert mixed["tpp_threshold_1_total_metric"] < overall["tpp_threshold_1_total_metric"] - 0.2
