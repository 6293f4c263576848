"""Supervised dictionaries and the Makelov et al. formulas on data whose answers are known."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from evals.supervised.dictionaries import fit_mean, fit_mse
from evals.supervised.interpretability import feature_f1, predicates
from evals.supervised.metrics import (
    edit_magnitude,
    f1_from_counts,
    f1_scores,
    feature_weights,
    greedy_edit,
    name_set_f1,
    necessity_score,
)
from evals.supervised.prompts import POS_VALUES, AttributeVocab, PromptSpec
from sae.errors import SaelabError

NAMES = ("Mary", "John", "Anna", "David", "Sarah", "James")


def _spec(io: str, s: str, pos: str) -> PromptSpec:
    return PromptSpec(template=0, io=io, s=s, pos=pos, place="store", obj="ring")


def _additive(specs, d=8, seed=0):
    """a = c + v_IO + v_S + v_Pos with random vectors: the model the dictionaries assume."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(d, generator=g)
    v_io = {n: torch.randn(d, generator=g) for n in NAMES}
    v_s = {n: torch.randn(d, generator=g) for n in NAMES}
    v_pos = {p: torch.randn(d, generator=g) for p in POS_VALUES}
    return torch.stack([c + v_io[p.io] + v_s[p.s] + v_pos[p.pos] for p in specs])


def _correlated_specs(n=300, seed=0):
    """IO ≠ S, a skewed name distribution and Pos tied to IO: attributes far from independent
    (every combination still occurs, so the features are identifiable)."""
    rng = random.Random(seed)
    weights = [6, 5, 3, 2, 1, 1]
    out = []
    for _ in range(n):
        io = rng.choices(NAMES, weights)[0]
        s = rng.choice([x for x in NAMES if x != io])
        pos = "ABB" if rng.random() < (0.85 if NAMES.index(io) < 3 else 0.15) else "BAB"
        out.append(_spec(io, s, pos))
    return out


def test_mean_dictionary_reconstructs_balanced_additive_activations_exactly():
    specs = [_spec(io, s, pos) for io, s, pos in itertools.product(NAMES, NAMES, POS_VALUES)]
    acts = _additive(specs)
    d = fit_mean(acts, specs, AttributeVocab(NAMES))
    torch.testing.assert_close(d.reconstruct(acts, specs), acts, atol=1e-5, rtol=0)
    # u_{IO=v} is the centred conditional mean, by hand
    sel = torch.tensor([p.io == "Anna" for p in specs])
    expected = acts[sel].mean(0) - acts.mean(0)
    torch.testing.assert_close(d.decoder[d.vocab.feature("IO", "Anna")], expected)


def test_mse_dictionary_reconstructs_correlated_additive_activations_exactly():
    specs = _correlated_specs()
    acts = _additive(specs, seed=1)
    vocab = AttributeVocab(NAMES)
    mse = fit_mse(acts, specs, vocab)
    torch.testing.assert_close(mse.reconstruct(acts, specs), acts, atol=1e-4, rtol=0)
    torch.testing.assert_close(mse.bias, acts.mean(0))
    # the mean-feature dictionary is not exact when attributes are correlated (why MSE exists)
    mean = fit_mean(acts, specs, vocab)
    assert (mean.reconstruct(acts, specs) - acts).abs().max() > 1e-2


def test_supervised_edit_moves_an_activation_to_its_counterfactual():
    specs = _correlated_specs(seed=2)
    acts = _additive(specs, seed=2)
    d = fit_mse(acts, specs, AttributeVocab(NAMES))
    base = specs[:20]
    target = [_spec(next(n for n in NAMES if n not in (p.io, p.s)), p.s, p.pos) for p in base]
    edited, removed = d.edit(acts[:20], base, target, "IO")
    torch.testing.assert_close(edited, _additive(target, seed=2), atol=1e-4, rtol=0)
    assert removed.sum(-1).tolist() == [1] * 20
    assert all(removed[i, d.vocab.feature("IO", p.io)] for i, p in enumerate(base))


def test_an_unobserved_value_is_a_clear_error():
    specs = [_spec("Mary", "John", "ABB"), _spec("John", "Mary", "BAB")]
    d = fit_mean(torch.randn(2, 4), specs, AttributeVocab(NAMES))
    with pytest.raises(SaelabError, match="IO='Anna'"):
        d.codes(torch.randn(1, 4), [_spec("Anna", "John", "ABB")])


def test_feature_weights_and_edit_magnitude_by_hand():
    codes = torch.tensor([[2.0, 1.0, 0.0]])
    decoder = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 5.0]])
    # â − b = 2(1,0) + (1,1) = (3,1), ‖·‖² = 10; weight 0: 2·3/10, weight 1: 1·4/10
    torch.testing.assert_close(feature_weights(codes, decoder), torch.tensor([[0.6, 0.4, 0.0]]))
    assert float(edit_magnitude(codes, decoder, torch.tensor([[True, False, False]]))) == pytest.approx(0.6)
    assert float(edit_magnitude(codes, decoder, torch.tensor([[True, True, True]]))) == pytest.approx(1.0)
    assert float(edit_magnitude(torch.zeros(1, 3), decoder, torch.ones(1, 3, dtype=torch.bool))) == 0.0


def test_necessity_score_by_hand():
    # mean ablation 2, clean 10: intervention at 2 → 1 (perfect), at 10 → 0, at 6 → 0.5
    assert necessity_score(2.0, 2.0, 10.0) == 1.0
    assert necessity_score(2.0, 10.0, 10.0) == 0.0
    assert necessity_score(2.0, 6.0, 10.0) == 0.5


def test_greedy_edit_recovers_a_planted_exchange():
    decoder = torch.eye(6)[:5] * torch.tensor([1.0, 2.0, 1.0, 1.0, 0.5])[:, None]
    f_s = torch.tensor([[2.0, 1.0, 0.0, 0.0, 0.3]])
    f_t = torch.tensor([[0.0, 1.0, 0.0, 3.0, 0.3]])
    a_s, a_t = f_s @ decoder + 0.1, f_t @ decoder + 0.1
    edited, chosen = greedy_edit(a_s, a_t, f_s, f_t, decoder, k=6)
    torch.testing.assert_close(edited, a_t)
    assert chosen[0].nonzero().flatten().tolist() == [0, 3]  # no useless steps within the budget
    one, chosen1 = greedy_edit(a_s, a_t, f_s, f_t, decoder, k=1)
    assert chosen1.sum() == 1 and chosen1[0, 3]  # adding 3·d_3 removes more distance than removing 2·d_0
    assert (one - a_t).norm() < (a_s - a_t).norm()


def test_f1_by_hand():
    active = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)[:, None]
    pred = torch.tensor([0, 1, 1, 1, 1, 0], dtype=torch.bool)[:, None]
    # |A∩P| = 2, |A| = 3, |P| = 4: P = 2/3, R = 1/2, F1 = 2PR/(P+R) = 4/7
    assert float(f1_scores(active, pred)) == pytest.approx(4 / 7)
    p, r = 2 / 3, 1 / 2
    assert float(f1_from_counts(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(4.0))) == pytest.approx(
        2 * p * r / (p + r)
    )
    # name sets: values 0,0,1,1,2,2; active on the first three prompts
    f1, order = name_set_f1(active, torch.tensor([0, 0, 1, 1, 2, 2]), 3, 3)
    assert order[0].tolist()[:2] == [0, 1]
    assert f1[0].tolist() == pytest.approx([2 * 2 / (3 + 2), 2 * 3 / (3 + 4), 2 * 3 / (3 + 6)])


def test_each_feature_finds_its_predicate():
    specs = [_spec(io, s, pos) for io, s, pos in itertools.product(NAMES[:4], NAMES[:4], POS_VALUES) if io != s]
    codes = torch.zeros(len(specs), 5)
    for i, p in enumerate(specs):
        codes[i, 0] = 1.0 if p.io == "Mary" else 0.0
        codes[i, 1] = 2.0 if p.pos == "BAB" else 0.0
        codes[i, 2] = 1.0 if p.s in ("John", "Anna") else 0.0
        codes[i, 3] = 1.0 if p.io == "David" and p.pos == "ABB" else 0.0
    result = feature_f1(codes, specs, max_name_set=3)
    assert result.labels[:4] == ["IO=Mary", "Pos=BAB", "S∈{Anna,John}", "IO=David & Pos=ABB"]
    assert result.best_f1[:4].tolist() == pytest.approx([1.0] * 4)
    assert not bool(result.live[4]) and float(result.best_f1[4]) == 0.0  # a dead feature scores nothing
    # Pos=BAB: feature 1 (F1 1); Pos=ABB: best is feature 2, active on 12 of 24 prompts, 6 of them ABB
    # (F1 2·6/(12+12) = 0.5); coverage is their mean
    assert result.coverage["Pos"] == pytest.approx(0.75)
    labels = predicates(specs).labels
    assert "IO male" in labels and "S=John & Pos=BAB" in labels


def test_causal_keep_ablates_uninterpretable_features_from_the_real_activation():
    """Makelov et al.'s causal sufficiency ablates the F1 < t features from a (keeping the SAE
    error); the former keep replaced a by E[a] + the centred interpretable reconstruction.

    Two axis features; feature 0 interpretable. Row 0 has an SAE error of (0.5, 0).
    â_I = (1, 0), (0, 0) → centred (0.5, 0), (−0.5, 0); â_Ī = (0, 0), (0, 2) → centred (0, −1), (0, 1).
    """
    from evals.supervised.evaluate import causal_edits

    decoder = torch.eye(2)
    codes = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    acts = torch.tensor([[1.5, 0.0], [0.0, 2.0]])
    keep, remove, keep_recon = causal_edits(acts, codes, decoder, torch.tensor([True, False]))
    torch.testing.assert_close(keep, torch.tensor([[1.5, 1.0], [0.0, 1.0]]))  # a − (â_Ī − E[â_Ī])
    torch.testing.assert_close(remove, torch.tensor([[1.0, 0.0], [0.5, 2.0]]))  # a − (â_I − E[â_I])
    # the old keep, E[a] + (â_I − E[â_I]) with E[a] = (0.75, 1), loses the row's SAE error
    torch.testing.assert_close(keep_recon, torch.tensor([[1.25, 1.0], [0.25, 1.0]]))
    assert not torch.allclose(keep, keep_recon)
    # every feature interpretable: keeping changes nothing (the error kept); the old form does not
    keep_all, remove_all, recon_all = causal_edits(acts, codes, decoder, torch.tensor([True, True]))
    torch.testing.assert_close(keep_all, acts)
    torch.testing.assert_close(remove_all, acts.mean(0).expand_as(acts) + torch.tensor([[0.25, 0.0], [-0.25, 0.0]]))
    assert not torch.allclose(recon_all, acts)
