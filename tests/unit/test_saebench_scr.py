"""SCR on hand-built data: a planted gender latent removes the spurious signal (score ~1); a dictionary
without one cannot (score ~0)."""

from __future__ import annotations

import pytest
import torch

from evals.saebench.scr import Pooled, normalised, scr_scores

D = 8  # axis 0: gender, axis 1: job, the rest noise


def _data(n_names: int = 40, seed: int = 0):
    """Two positions per prompt; gender on axis 0 (strong), job on axis 1 (weaker: the biased probe leans on
    gender), noise elsewhere; every (name, job) combination present, names split train/test."""
    g = torch.Generator().manual_seed(seed)
    rows, owner, gender, job, train, test = [], [], [], [], [], []
    for name in range(n_names):
        sex = name % 2
        for j in (0, 1):
            p = len(gender)
            for _ in range(2):
                x = 0.3 * torch.randn(D, generator=g)
                x[0] = (2.0 if sex else -2.0) + 0.3 * torch.randn((), generator=g)
                x[1] = (0.6 if j else -0.6) + 0.3 * torch.randn((), generator=g)
                rows.append(x)
                owner.append(p)
            gender.append(sex)
            job.append(j)
            (test if name % 5 == 0 else train).append(p)
    pooled = Pooled(torch.stack(rows), torch.tensor(owner), len(gender))
    return pooled, gender, job, train, test


def _linear(W: torch.Tensor):
    """Codes x W^T, decoded by f W (the error term keeps what W's rows do not span)."""
    return (lambda x: x @ W.T), (lambda f: f @ W)


def test_normalised_score():
    assert normalised(0.9, 0.6, 0.9) == pytest.approx(1.0)
    assert normalised(0.6, 0.6, 0.9) == 0.0
    assert normalised(0.8, 0.6, 0.6005) == 0.0  # denominator below 0.001: SAEBench sets 0


def test_planted_gender_latent_removes_the_spurious_signal():
    data, gender, job, train, test = _data()
    encode, decode = _linear(torch.eye(D))  # latent 0 is the gender axis
    out = scr_scores(data, gender, job, train, test, encode, decode, [1])
    # the biased probe leans on gender: worse on profession than on gender, so dir1 is the metric
    assert out["biased_probe_profession_accuracy"] < out["biased_probe_gender_accuracy"]
    assert out["biased_probe_profession_accuracy"] < out["profession_probe_accuracy"] - 0.2
    assert out["scr_dir1_threshold_1"] == pytest.approx(1.0, abs=0.1)
    assert out["scr_metric_threshold_1"] == out["scr_dir1_threshold_1"]


def test_dictionary_without_the_gender_latent_scores_zero():
    data, gender, job, train, test = _data()
    encode, decode = _linear(torch.eye(D)[1:])  # gender lives in the error term only
    out = scr_scores(data, gender, job, train, test, encode, decode, [1, 3])
    assert out["scr_dir1_threshold_1"] == pytest.approx(0.0, abs=0.05)
    assert out["scr_dir1_threshold_3"] == pytest.approx(0.0, abs=0.05)
