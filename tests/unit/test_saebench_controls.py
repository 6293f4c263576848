"""The controls' dictionaries: shapes, norms and sparsity as documented, against dense references."""

from __future__ import annotations

import pytest
import torch

from evals.saebench.controls import explained_variance, headline, identity, pca, random_decoder


def test_random_decoder_matches_width_and_l0():
    mean = torch.randn(16, dtype=torch.float64)
    ctrl = random_decoder(64, mean, 3.4, seed=0)
    assert ctrl.W_dec.shape == (64, 16)
    assert torch.allclose(ctrl.W_dec.norm(dim=1), torch.ones(64), atol=1e-6)
    x = torch.randn(200, 16)
    f = ctrl.encode(x)
    assert ((f != 0).sum(1) <= 3).all() and (f >= 0).all()  # TopK at round(3.4) = 3 after a ReLU
    # encoder = decoder transpose: the kept codes are the largest (x - b) . d_i
    pre = ((x - ctrl.b_dec) @ ctrl.W_dec.T).relu()
    assert torch.allclose(f.max(1).values, pre.max(1).values)
    again = random_decoder(64, mean, 3.4, seed=0)
    assert torch.equal(again.W_dec, ctrl.W_dec)  # seeded


def test_pca_is_the_top_principal_subspace():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 8, generator=g) * torch.tensor([5.0, 3.0, 1, 1, 1, 1, 1, 1]) + 2
    ctrl = pca(x, 2)
    assert ctrl.W_dec.shape == (2, 8)
    # the two leading components are the first two axes (up to sign)
    assert torch.allclose(ctrl.W_dec.abs()[:, :2], torch.eye(2), atol=0.1)
    full = pca(x, 8)
    assert explained_variance(x, full.decode(full.encode(x))) == pytest.approx(1.0, abs=1e-5)
    ev2 = explained_variance(x, ctrl.decode(ctrl.encode(x)))
    assert 0.8 < ev2 < 1.0


def test_identity_and_headlines():
    x = torch.randn(10, 4)
    ctrl = identity(4)
    assert torch.equal(ctrl.decode(ctrl.encode(x)), x)

    from types import SimpleNamespace

    assert headline("scr", SimpleNamespace(n_values=[2, 5, 10, 20, 50])) == ("scr_metrics", "scr_metric_threshold_20")
    assert headline("tpp", SimpleNamespace(n_values=[2, 5])) == ("tpp_metrics", "tpp_threshold_5_total_metric")
    assert headline("ravel", None) == ("ravel", "disentanglement_score")
