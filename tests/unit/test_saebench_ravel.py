"""RAVEL on a toy model whose facts sit at the name: a dictionary with one latent block per attribute
patches one fact only (cause = isolation = 1); a rotated dictionary mixes them."""

from __future__ import annotations

import torch

from evals.saebench.ravel import ATTRIBUTES, World, attribute_probes, ravel_scores

N_VALUES, N_NAMES = 4, 24
D = 3 * N_VALUES  # one block of one-hot value axes per attribute
QUERY = {"city": 100, "job": 101, "food": 102}  # the token that asks for the attribute
VALUE_ID = {a: {f"{a}{v}": 200 + 10 * i + v for v in range(N_VALUES)} for i, a in enumerate(ATTRIBUTES)}


class Spec:
    tl_name = "h"

    @staticmethod
    def read(act):
        return act

    @staticmethod
    def write(act, rows):
        return rows


class ToyModel(torch.nn.Module):
    """Tokens [BOS, name, query]: the hook 'h' holds the name's one-hot facts at position 1; the logits at the
    last position read the queried attribute's block of position 1."""

    def __init__(self, facts: dict[str, dict[str, str]], names: list[str]):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.zeros(64, D), requires_grad=False)
        for t, n in enumerate(names):
            for i, a in enumerate(ATTRIBUTES):
                self.emb.data[t, i * N_VALUES + int(facts[n][a][-1])] = 1.0

    def run_with_hooks(self, tokens, fwd_hooks=()):
        act = torch.zeros(*tokens.shape, D)
        act[:, 1] = self.emb[tokens[:, 1]]
        for _name, fn in fwd_hooks:
            act = fn(act)
        logits = torch.full((*tokens.shape, 300), -1.0)
        for b in range(tokens.shape[0]):
            i = [QUERY[a] for a in ATTRIBUTES].index(int(tokens[b, 2]))
            block = act[b, 1, i * N_VALUES : (i + 1) * N_VALUES]
            for v in range(N_VALUES):
                logits[b, 2, VALUE_ID[ATTRIBUTES[i]][f"{ATTRIBUTES[i]}{v}"]] = block[v]
        return logits


def _world():
    g = torch.Generator().manual_seed(0)
    names = [f"n{i}" for i in range(N_NAMES)]
    facts = {n: {a: f"{a}{int(torch.randint(N_VALUES, (1,), generator=g))}" for a in ATTRIBUTES} for n in names}
    tokens = {(0, n, a): [0, t, QUERY[a]] for t, n in enumerate(names) for a in ATTRIBUTES}
    w = World(
        contexts=["ctx"],
        names=names,
        facts=facts,
        value_ids=VALUE_ID,
        tokens=tokens,
        correct=dict.fromkeys(tokens, True),
        position=dict.fromkeys(tokens, 1),
        train_names=set(names[: N_NAMES * 2 // 3]),
    )
    return ToyModel(facts, names), w


def _linear(W):
    return (lambda x: x @ W.T), (lambda f: f @ W)


def test_separate_latents_give_full_cause_and_isolation():
    model, w = _world()
    encode, decode = _linear(torch.eye(D))
    metrics, details = ravel_scores(model, Spec, w, encode, decode, [N_VALUES, 2 * N_VALUES], 16, 0)
    assert metrics["cause_score"] == 1.0 and metrics["isolation_score"] == 1.0
    assert metrics["disentanglement_score"] == 1.0
    assert details["chosen_n"] == N_VALUES  # one attribute's block, no more
    assert sorted(details["per_n"][str(N_VALUES)]["latents"]["city"]) == list(range(N_VALUES))
    # a full patch moves every fact: the cause ceiling, with isolation lost
    assert details["full_patch"]["cause_score"] == 1.0 and details["full_patch"]["isolation_score"] == 0.0


def test_mixed_dictionary_scores_lower():
    model, w = _world()
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(3)))
    encode, decode = _linear(q.T)
    metrics, _ = ravel_scores(model, Spec, w, encode, decode, [N_VALUES], 16, 0)
    assert metrics["disentanglement_score"] < 0.8


def test_attribute_probe_reads_facts_stated_as_shared_directions():
    """The toy's hook holds each fact as a one-hot value axis shared by every name: a probe fitted on train
    names reads held-out names' values."""
    model, w = _world()
    _metrics, details = ravel_scores(model, Spec, w, *_linear(torch.eye(D)), [N_VALUES], 16, 0)
    for attr in ATTRIBUTES:
        probe = details["attribute_probe"][attr]
        assert probe["test_accuracy"] == 1.0 and probe["classes"] == N_VALUES


def test_attribute_probe_is_at_chance_when_the_row_is_only_the_name():
    """A row that is a random code of the name alone (facts random per name, as in the organism's world) gives
    a held-out probe near chance (1 / values), whatever it learns on train names."""
    _model, w = _world()
    names = w.names * 12  # more names than dimensions would let a probe memorise; same facts scheme
    g = torch.Generator().manual_seed(1)
    w.names = [f"m{i}" for i in range(len(names))]
    w.facts = {n: {a: f"{a}{int(torch.randint(N_VALUES, (1,), generator=g))}" for a in ATTRIBUTES} for n in w.names}
    w.tokens = {(0, n, a): [0, i, QUERY[a]] for i, n in enumerate(w.names) for a in ATTRIBUTES}
    w.correct = dict.fromkeys(w.tokens, True)
    w.train_names = set(w.names[: len(w.names) // 2])
    code = {n: torch.randn(D, generator=g) for n in w.names}
    x = {k: code[k[1]] for k in w.tokens}
    probes = attribute_probes(w, x)
    for attr in ATTRIBUTES:
        assert probes[attr]["test_accuracy"] <= 1 / N_VALUES + 0.1, probes[attr]
