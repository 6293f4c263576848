"""SAEDashboard's feature tables and histograms (app.feature_tables) against dense references."""

from __future__ import annotations

import numpy as np
import torch

from app import feature_tables as ft


def _codes(rows=300, d_sae=12, d_in=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    acts = torch.randn(rows, d_in, generator=g)
    codes = (acts @ torch.randn(d_in, d_sae, generator=g) + 0.3 * torch.randn(rows, d_sae, generator=g)).clamp_min(0)
    codes[:, 3] = 0  # a dead feature: every statistic stays finite
    return codes, acts


def _dense_pearson_cos(x: np.ndarray, y: np.ndarray):
    """SAEDashboard's RollingCorrCoef formulae, written directly over the dense columns."""
    n = x.shape[0]
    p = np.zeros((x.shape[1], y.shape[1]))
    c = np.zeros_like(p)
    for i in range(x.shape[1]):
        for j in range(y.shape[1]):
            a, b = x[:, i], y[:, j]
            num = n * (a * b).sum() - a.sum() * b.sum()
            den = np.sqrt((n * (a * a).sum() - a.sum() ** 2) * (n * (b * b).sum() - b.sum() ** 2)) + 1e-6
            p[i, j] = num / den
            c[i, j] = (a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-6)
    return p, c


def _sample(codes, acts, keep, max_rows, batch=70):
    s = ft.CodeSample(codes.shape[1], acts.shape[1], max_rows)
    for lo in range(0, len(codes), batch):
        s.update(codes[lo : lo + batch], acts[lo : lo + batch], keep[lo : lo + batch])
    return s


def test_correlated_features_and_neurons_match_dense():
    codes, acts = _codes()
    keep = torch.ones(len(codes), dtype=torch.bool)
    keep[::7] = False  # excluded positions (BOS) never enter the sample
    s = _sample(codes, acts, keep, max_rows=200)
    assert s.rows == 200 and s.full
    used = keep.nonzero().flatten()[:200]
    x, a = codes[used].double().numpy(), acts[used].double().numpy()

    p, c = _dense_pearson_cos(x, x)
    np.fill_diagonal(p, 0)
    np.fill_diagonal(c, 0)
    ids, pear, cos = ft.correlated_features(s, 3, chunk=5)  # chunks that cut the features
    for f in range(codes.shape[1]):
        want = np.argsort(-p[f], kind="stable")[:3]
        assert np.allclose(pear[f], p[f, want], atol=1e-6)
        assert np.allclose(p[f, ids[f]], p[f, want], atol=1e-9)  # the same top (ties aside)
        assert np.allclose(cos[f], c[f, ids[f]], atol=1e-6)
        assert f not in ids[f] or pear[f].min() <= 0  # never its own neighbour unless all else is worse

    p, c = _dense_pearson_cos(x, a)
    ids, pear, cos = ft.correlated_neurons(s, 3)
    for f in range(codes.shape[1]):
        want = np.argsort(-p[f], kind="stable")[:3]
        assert np.allclose(pear[f], p[f, want], atol=1e-6)
        assert np.allclose(cos[f], c[f, ids[f]], atol=1e-6)
    assert np.all(pear[3] == 0) or np.allclose(pear[3], 0, atol=1e-6)  # dead: zero correlation, no nan


def test_neuron_alignment_is_largest_signed_decoder_entries():
    W = torch.tensor([[0.5, -3.0, 1.0, 2.0], [-1.0, -2.0, -0.5, 0.25]])
    ids, vals, l1 = ft.neuron_alignment(W, 2)
    assert ids.tolist() == [[3, 2], [3, 2]]  # -3.0 is the largest |w| but not the largest w
    assert np.allclose(vals, [[2.0, 1.0], [0.25, -0.5]])
    assert np.allclose(l1, [[2.0 / 6.5, 1.0 / 6.5], [0.25 / 3.75, 0.5 / 3.75]])


def test_histograms_match_numpy_per_row():
    g = torch.Generator().manual_seed(1)
    data = torch.randn(6, 257, generator=g) * torch.arange(1, 7).unsqueeze(1)
    heights, centres = ft.histograms(data, 50)
    for r in range(6):
        h, edges = np.histogram(data[r].numpy(), bins=50, range=(float(data[r].min()), float(data[r].max())))
        assert heights[r].tolist() == h.tolist()
        assert np.allclose(centres[r].numpy(), (edges[:-1] + edges[1:]) / 2, atol=1e-5)
    W_U = torch.randn(4, 300, generator=g)
    resid = torch.randn(7, 4, generator=g)
    lh, _ = ft.logit_histograms(resid, W_U, 50, chunk=3)
    for f in range(7):
        logits = (resid[f] @ W_U).numpy()
        h, _ = np.histogram(logits, bins=50, range=(logits.min(), logits.max()))
        assert lh[f].tolist() == h.tolist() and lh[f].sum() == 300


def test_activation_histograms_over_nonzero_sample():
    codes, acts = _codes()
    s = _sample(codes, acts, torch.ones(len(codes), dtype=torch.bool), max_rows=10_000)
    assert s.rows == len(codes) and not s.full
    heights, centres = ft.activation_histograms(s, 50)
    assert heights[3] == [] and centres[3] == []
    for f in (0, 5, 11):
        v = codes[:, f][codes[:, f] > 0].numpy()
        h, edges = np.histogram(v, bins=50, range=(v.min(), v.max()))
        assert heights[f] == h.tolist()
        assert np.allclose(centres[f], (edges[:-1] + edges[1:]) / 2, atol=1e-5)
