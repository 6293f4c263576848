"""Probes and sparse probing on planted data: the optimum of sklearn's objective, top-k by mean
difference, and a dictionary whose latent 0 is the concept scoring ~1 at k = 1."""

from __future__ import annotations

import random

import pytest
import torch

from evals.saebench.concepts import ConceptData, Item
from evals.saebench.config import SparseProbingSettings
from evals.saebench.probes import f1, fit_l1_ranking, fit_logistic, top_k_mean_diff
from evals.saebench.sparse_probing import balanced, dataset_scores


def test_logistic_is_sklearns_optimum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    y = ((x[:, 0] - 0.5 * x[:, 1] + 0.3 * torch.randn(200, generator=g, dtype=torch.float64)) > 0).long()
    for C in (0.1, 1.0):
        p = fit_logistic(x, y, C=C)
        # stationarity of 0.5||w||^2 + C sum log(1 + exp(-t (x w + b))): w = C X^T (y - sigmoid), sum(y - sigmoid) = 0
        resid = y.double() - torch.sigmoid(x @ p.w + p.b)
        assert torch.allclose(p.w, C * x.T @ resid, atol=1e-5)
        assert float(resid.sum()) == pytest.approx(0.0, abs=1e-5)
    assert p.w[0] > 0 > p.w[1]


def test_balanced_weights_match_duplicating_the_minority():
    """class_weight="balanced" with 1 positive in 4 rows weighs it 2 and each negative 2/3; the same optimum
    as the unweighted problem on 3 copies of the positive and 1 of each negative, with C scaled by 2/3."""
    x = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, -1.0], [-1.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([1, 0, 0, 0])
    balanced = fit_logistic(x, y, C=1.0, balanced=True)
    copies = fit_logistic(torch.cat([x[:1], x[:1], x]), torch.tensor([1, 1, 1, 0, 0, 0]), C=2 / 3)
    assert torch.allclose(balanced.w, copies.w, atol=1e-6) and balanced.b == pytest.approx(copies.b, abs=1e-6)


def test_top_k_mean_diff_and_f1_by_hand():
    x = torch.tensor([[1.0, 5.0, 0.0], [3.0, 5.0, -4.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    y = torch.tensor([1, 1, 0, 0])
    # |mean diff| = (2, 4, 2): dimension 1, then the tie 0 before 2 (stable order)
    assert top_k_mean_diff(x, y, 2).tolist() == [1, 0]
    assert f1(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 0, 1])) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))


def test_l1_ranking_finds_the_informative_input():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 20, generator=g).abs()
    y = (x[:, 7] > 0.8).long()
    w = fit_l1_ranking(x, y, l1=0.01)
    assert int(w.argmax()) == 7 and (w == 0).sum() > 10  # the L1 term zeroes most uninformative weights


def test_balanced_negatives_come_evenly_from_other_classes():
    labels = ["a"] * 6 + ["b"] * 10 + ["c"] * 10
    rows, ys = balanced(labels, list(range(26)), "a", random.Random(0))
    negs = [labels[r] for r, t in zip(rows, ys, strict=True) if t == 0]
    assert sum(ys) == 6 and negs.count("b") == 3 and negs.count("c") == 3


def _planted(n_items: int = 40, per: int = 5, d: int = 16, seed: int = 0):
    """Items of two classes; x = noise + 5 v for class 'yes', v a random unit direction (not an axis)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    items, xs = [], []
    for i in range(n_items):
        label = "yes" if i % 2 else "no"
        for _ in range(per):
            items.append(Item([0], f"w{i}", label))
            xs.append(torch.randn(d, generator=g) + (5 * v if label == "yes" else 0))
    data = ConceptData("planted", items, ["yes", "no"], {f"w{i}" for i in range(0, n_items, 4)} | {"w1", "w5"})
    return data, torch.stack(xs), v


def test_planted_latent_gives_top1_accuracy_near_one():
    data, x, v = _planted()
    g = torch.Generator().manual_seed(3)
    random_dirs = torch.nn.functional.normalize(torch.randn(31, x.shape[1], generator=g), dim=1)
    enc = torch.cat([v[None], random_dirs])  # latent 0 is the concept
    codes = torch.relu(x @ enc.T)
    settings = SparseProbingSettings(k_values=[1, 2])
    sae = dataset_scores(data, codes, settings, 0)
    control = dataset_scores(data, torch.relu(x @ random_dirs.T), settings, 0)
    llm = dataset_scores(data, x, settings, 0)
    assert sae["top_1_test_accuracy"] > 0.95
    assert control["top_1_test_accuracy"] < sae["top_1_test_accuracy"] - 0.1
    assert llm["top_1_test_accuracy"] < sae["top_1_test_accuracy"]  # the concept is no single axis of x
    assert llm["test_accuracy"] > 0.95  # but a full probe on x finds it
