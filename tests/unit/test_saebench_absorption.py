"""Absorption on a planted hierarchy: a child latent that absorbed its parent's direction is found;
the same dictionary without absorption scores 0."""

from __future__ import annotations

import pytest
import torch

from evals.saebench.absorption import absorption_scores, summary
from evals.saebench.config import AbsorptionSettings

D, WORDS, PROMPTS = 128, 40, 4


def _world(absorb: bool, seed: int = 0):
    """Two categories of 40 words; x = parent_c + child_w + noise. Latents: 2 parents, then one per word.
    With ``absorb``, word 0 of category A has no parent activation: its child latent's decoder is
    (parent_A + child_0) normalised and fires with the norm of that sum (it absorbed the parent)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    basis = q.T  # orthonormal rows
    parents = basis[:2]
    children = torch.nn.functional.normalize(
        0.6 * basis[2 : 2 + 2 * WORDS] + 0.05 * torch.randn(2 * WORDS, D, generator=g), dim=1
    )
    W_dec = torch.cat([parents, children])
    xs, codes, labels = [], [], []
    for w in range(2 * WORDS):
        cat = w // WORDS
        for _ in range(PROMPTS):
            x = parents[cat] + children[w] + 0.05 * torch.randn(D, generator=g)
            f = torch.zeros(2 + 2 * WORDS)
            if absorb and w == 0:
                merged = parents[cat] + children[w]
                f[2 + w] = merged.norm()
            else:
                f[cat] = 1.0
                f[2 + w] = 1.0
            xs.append(x)
            codes.append(f)
            labels.append("AB"[cat])
    if absorb:
        W_dec[2] = torch.nn.functional.normalize(parents[0] + children[0], dim=0)
    return torch.stack(xs), torch.stack(codes), labels, W_dec


def _run(absorb: bool):
    x, codes, labels, W_dec = _world(absorb)
    train = [i for i in range(len(labels)) if i % PROMPTS < 2]
    test = [i for i in range(len(labels)) if i % PROMPTS >= 2]
    settings = AbsorptionSettings(min_categories=1)
    return absorption_scores(
        x[train],
        x[test],
        codes[train],
        codes[test],
        [labels[i] for i in train],
        [labels[i] for i in test],
        W_dec,
        ["A", "B"],
        settings,
    )


def test_planted_absorbing_latent_is_found():
    results = {r.category: r.detail() for r in _run(absorb=True)}
    a = results["A"]
    assert a["split_features"] == [0] and a["num_split_features"] == 0  # one absorbed word adds little F1
    assert a["num_probe_true_positives"] == WORDS * 2  # every held-out prompt of A is a probe true positive
    assert a["num_full_absorption"] == 2  # the two held-out prompts of the absorbed word
    assert a["mean_absorption_fraction"] == pytest.approx(2 / (WORDS * 2))
    assert [r["latent"] for r in a["absorbing_latents"]] == [2]  # the planted child latent
    assert a["absorbing_latents"][0]["fraction_of_absorption"] == pytest.approx(1.0)
    assert a["absorbing_latents"][0]["probe_cos"] > 0.3 and a["absorbing_latents"][0]["mean_ablation_effect"] > 0
    assert results["B"]["mean_absorption_fraction"] == 0 and results["B"]["num_full_absorption"] == 0


def test_no_absorption_scores_zero():
    results = _run(absorb=False)
    m = summary(results)
    assert len(results) == 2
    assert m["mean_absorption_fraction_score"] == 0 and m["mean_full_absorption_score"] == 0
    assert m["mean_num_split_features"] == 0  # SAEBench counts split latents beyond the first
