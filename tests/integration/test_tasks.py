"""Task prompts, positions and metrics, checked by hand."""

from __future__ import annotations

import pytest
import torch

from circuits.tasks import greater_than, ioi


def _tok(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def test_ioi_positions_point_at_the_names(organism_tokenizer):
    tok = organism_tokenizer
    batch = ioi.make_batch(tok, 48, seed=3)
    assert len(batch) == 48
    for i in range(len(batch)):
        toks = _tok(tok, batch.tokens[i].tolist())
        att = batch.attributes[i]
        assert toks[0] == tok.bos_token
        assert toks[batch.positions["IO"][i]] == " " + att["IO"]
        assert toks[batch.positions["S1"][i]] == " " + att["S"]
        assert toks[batch.positions["S2"][i]] == " " + att["S"]
        assert batch.positions["END"][i] == batch.lengths[i] - 1
        assert tok.decode([int(batch.answers[i])]) == " " + att["IO"]
        assert tok.decode([int(batch.distractors[i])]) == " " + att["S"]
        # ABBA mentions IO first, BABA mentions S first
        first = "IO" if att["order"] == "ABBA" else "S1"
        assert batch.positions[first][i] == min(batch.positions["IO"][i], batch.positions["S1"][i])


def test_ioi_corruption_is_abc(organism_tokenizer):
    tok = organism_tokenizer
    batch = ioi.make_batch(tok, 30, seed=1)
    assert batch.corrupt_tokens.shape == batch.tokens.shape
    for i in range(len(batch)):
        names = {int(batch.corrupt_tokens[i, batch.positions[k][i]]) for k in ("IO", "S1", "S2")}
        assert len(names) == 3  # three distinct names: no repeated subject
        same = batch.corrupt_tokens[i] == batch.tokens[i]
        for k in ("IO", "S1", "S2"):
            same[batch.positions[k][i]] = True
        assert bool(same.all()), "only the names change"


def test_ioi_templates_and_orders_are_balanced(organism_tokenizer):
    batch = ioi.make_batch(organism_tokenizer, 2 * len(ioi.TEMPLATES), seed=0)
    assert sorted(batch.template_ids.tolist()) == sorted(list(range(len(ioi.TEMPLATES))) * 2)
    orders = [a["order"] for a in batch.attributes]
    assert orders.count("ABBA") == orders.count("BABA")


def test_ioi_pair_filter(organism_tokenizer):
    batch = ioi.make_batch(organism_tokenizer, 40, pair_filter=lambda a, b: {a, b} == {"John", "Mary"})
    assert all({a["IO"], a["S"]} == {"John", "Mary"} for a in batch.attributes)


def test_ioi_metric_on_hand_computed_logits(organism_tokenizer):
    batch = ioi.make_batch(organism_tokenizer, 2, seed=0)
    vocab = len(organism_tokenizer)
    logits = torch.zeros(2, batch.tokens.shape[1], vocab)
    end0, end1 = int(batch.end[0]), int(batch.end[1])
    logits[0, end0, batch.answers[0]] = 3.0
    logits[0, end0, batch.distractors[0]] = 1.0
    logits[1, end1, batch.answers[1]] = -2.0
    logits[1, end1, batch.distractors[1]] = 0.5
    logits[1, 0, batch.answers[1]] = 100.0  # other positions must not matter
    assert ioi.logit_diff(logits, batch).tolist() == pytest.approx([2.0, -2.5])
    assert ioi.accuracy(logits, batch).tolist() == [1.0, 0.0]


def test_greater_than_prompts(organism_tokenizer):
    tok = organism_tokenizer
    batch = greater_than.make_batch(tok, 20, seed=0)
    for i in range(len(batch)):
        toks = _tok(tok, batch.tokens[i].tolist())
        yy = int(batch.labels["YY"][i])
        att = batch.attributes[i]
        assert toks[batch.positions["YY"][i]] == f"{yy:02d}"
        assert toks[batch.positions["YY"][i] - 1] == f" {att['century']}"
        assert toks[-1] == f" {att['century']}" and batch.positions["END"][i] == len(toks) - 1
        ctoks = _tok(tok, batch.corrupt_tokens[i].tolist())
        assert ctoks[batch.positions["YY"][i]] == "01"
    assert len(set(batch.labels["YY"].tolist())) == 20  # years cycle without repeats


def test_greater_than_metric_on_hand_computed_logits(organism_tokenizer):
    batch = greater_than.make_batch(organism_tokenizer, 1, seed=0, years=[40])
    years = batch.vocab_ids["years"]
    seq, vocab = batch.tokens.shape[1], len(organism_tokenizer)
    end = int(batch.end[0])
    # all mass on year 41 → +1
    logits = torch.full((1, seq, vocab), -1e4)
    logits[0, end, years[41]] = 0.0
    assert greater_than.prob_diff(logits, batch).item() == pytest.approx(1.0)
    # uniform over the 100 years only: 58 years above 40, 42 at or below → 0.16
    logits = torch.full((1, seq, vocab), -1e4)
    logits[0, end, years] = 0.0
    assert greater_than.prob_diff(logits, batch).item() == pytest.approx((59 - 41) / 100)
    # half the mass off the years: p not renormalised over years
    logits = torch.full((1, seq, vocab), -1e4)
    logits[0, end, years[99]] = 0.0
    logits[0, end, 5] = 0.0
    assert greater_than.prob_diff(logits, batch).item() == pytest.approx(0.5)


def test_tasks_filter_names_to_single_tokens(organism_tokenizer):
    # A name outside the vocabulary would map to <|unk|>: it must be filtered, not used.
    usable = ioi.usable(organism_tokenizer, ["John", "Zebulon", "Mary"])
    assert usable == ["John", "Mary"]


def test_task_batch_subset(organism_tokenizer):
    batch = greater_than.make_batch(organism_tokenizer, 10, seed=0)
    sub = batch.subset([1, 3])
    assert sub.tokens.shape[0] == 2
    assert sub.labels["YY"].tolist() == batch.labels["YY"][[1, 3]].tolist()
    assert sub.prompts == [batch.prompts[1], batch.prompts[3]]
