"""Core metrics against hand computations and numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evals.core.metrics import ReconstructionStats, density_histogram, explained_variance, underused_fraction
from evals.core.splice import ce_loss_recovered, kl_to_clean
from sae.architectures.base import Selection


def _stats(x, codes, x_hat, batches=1):
    st = ReconstructionStats(codes.shape[1])
    for xs, cs, hs in zip(x.chunk(batches), codes.chunk(batches), x_hat.chunk(batches), strict=True):
        st.update(xs, Selection.from_dense(cs), hs)
    return st


def test_hand_computed_tiny_case():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 5.0]])
    codes = torch.tensor([[0.5, 0.0, -1.0], [0.0, 0.0, 2.0]])
    r = _stats(x, codes, x_hat).result(dense_threshold=0.6)
    # errors: (0, 1) and (0, -1): E||x - x_hat||^2 = 1; E||x||^2 = (5 + 25)/2 = 15; ||E x||^2 = 2^2 + 3^2 = 13
    assert r["mse_per_token"] == pytest.approx(1.0)
    assert r["mse"] == pytest.approx(0.5)
    assert r["fvu"] == pytest.approx(1 / 2)
    assert r["explained_variance"] == pytest.approx(1 / 2)
    assert r["l0"] == pytest.approx(1.5)  # non-zeros, negative codes included
    assert r["l0_std"] == pytest.approx(0.5)
    assert r["l1"] == pytest.approx((1.5 + 2.0) / 2)
    assert r["dead_fraction"] == pytest.approx(1 / 3)
    assert r["dense_fraction"] == pytest.approx(1 / 3)  # latent 2 fires on both rows (> 0.6)
    cos1 = 3 / (math.sqrt(5) * math.sqrt(2))
    cos2 = 29 / (5 * math.sqrt(34))
    assert r["cosine_similarity"] == pytest.approx((cos1 + cos2) / 2)
    assert r["relative_reconstruction_bias"] == pytest.approx((2 + 34) / (3 + 29))
    assert r["l2_ratio"] == pytest.approx((math.sqrt(2 / 5) + math.sqrt(34) / 5) / 2)


def test_explained_variance_matches_numpy_and_not_the_buggy_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 16)) * rng.uniform(0.5, 3, size=16) + rng.normal(size=16) * 5  # not centred
    x_hat = x + rng.normal(size=x.shape) * 0.7
    total = ((x - x.mean(0)) ** 2).sum(1).mean()
    reference = 1 - ((x - x_hat) ** 2).sum(1).mean() / total
    xt, ht = torch.tensor(x), torch.tensor(x_hat)
    accumulated = _stats(xt, torch.ones(4000, 3), ht, batches=7).result()["explained_variance"]
    assert accumulated == pytest.approx(reference, abs=1e-10)
    assert explained_variance(xt, ht) == pytest.approx(reference, abs=1e-10)
    # SAEBench 0.6 / SAELens <= 6.18 (SAELens #659): the total variance subtracts
    # (mean_d E[x_d^2])^2 where it should subtract sum_d E[x_d]^2
    second = (x**2).mean()
    buggy = 1 - ((x - x_hat) ** 2).mean() / (second - second**2)
    assert abs(reference - buggy) > 0.05


def test_density_histogram_and_underused():
    d = torch.tensor([0.0, 0.0, 1e-3, 1e-3, 0.5, 1.0])
    h = density_histogram(d)
    assert h["dead"] == 2 and sum(h["counts"]) == 4
    edges = h["log10_edges"]
    assert edges[0] == -7.0 and edges[-1] == 0.0
    assert h["counts"][edges.index(-3.0)] == 2  # 1e-3 sits in [-3, -2.75)
    assert h["counts"][-2] == 1 and h["counts"][-1] == 1  # log10 0.5 = -0.30; 1.0 in the closed top bin
    # k = 3 over 6 latents: a uniform share is 0.5; under-used below 0.05
    assert underused_fraction(d, k=3) == pytest.approx(4 / 6)


def test_ce_recovered_and_kl_by_hand():
    assert ce_loss_recovered(2.0, 1.0, 5.0) == pytest.approx(0.75)
    assert ce_loss_recovered(1.0, 1.0, 5.0) == 1.0 and ce_loss_recovered(5.0, 1.0, 5.0) == 0.0
    p = torch.tensor([[0.5, 0.5]]).log()
    q = torch.tensor([[0.25, 0.75]]).log()
    assert float(kl_to_clean(p, q)) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
