"""The shipped organism: task scores, and its frozen ground-truth circuits."""

from __future__ import annotations

import json

import pytest
import torch

from circuits.tasks import ioi
from organism.evaluate import evaluate
from organism.path_patching import Node, Receiver, path_patch, run_caches
from sae import providers

CIRCUITS = providers.get("organism").files["circuits"]


@pytest.fixture(scope="module")
def scores(organism):
    model, tokenizer = organism
    return evaluate(lambda t: model(t), tokenizer, n_prompts=1100)


def test_organism_solves_its_tasks(scores):
    assert scores["ioi_accuracy"] >= 0.95
    assert scores["ioi_logit_diff"] >= 3.0
    assert scores["greater_than_prob_diff"] >= 0.8
    assert len(scores["per_template"]) == len(ioi.TEMPLATES) - 1
    assert scores["heldout_template"]["accuracy"] >= 0.8


def test_eval_cli_json(capsys):
    from saelab.cli import main

    assert main(["organism", "eval", "--json", "--n-prompts", "110"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "ioi_accuracy",
        "ioi_logit_diff",
        "greater_than_prob_diff",
        "n_layers",
        "n_heads_total",
        "train_tokens",
        "per_template",
        "heldout_template",
    ):
        assert key in out
    assert out["n_heads_total"] >= 24 and out["train_tokens"] > 0


def test_path_patching_with_no_senders_is_the_clean_run(organism):
    model, tokenizer = organism
    batch = ioi.make_batch(tokenizer, 12, seed=5)
    caches = run_caches(model, batch, ioi.logit_diff)
    same = path_patch(model, batch, caches, [], None, ioi.logit_diff)
    torch.testing.assert_close(same, caches.clean_metric, atol=1e-4, rtol=1e-4)
    receivers = [Receiver(Node(model.cfg.n_layers - 1, 0), "q", "END")]
    same = path_patch(model, batch, caches, [], receivers, ioi.logit_diff)
    torch.testing.assert_close(same, caches.clean_metric, atol=1e-4, rtol=1e-4)


def test_frozen_circuits_meet_their_bounds(organism):
    model, _ = organism
    data = json.loads(CIRCUITS.read_text())
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    for key in ("ioi", "greater_than"):
        circuit = data[key]
        heads = [n for n in circuit["nodes"] if n["head"] is not None]
        assert 4 <= len(heads) <= n_heads // 2, key
        assert len({n["layer"] for n in heads}) >= 2, key
        assert circuit["faithfulness"]["circuit_recovers"] >= 0.8, key
        assert circuit["faithfulness"]["ablated_leaves"] <= 0.2, key
        assert circuit["edges"], key
        assert circuit["thresholds"], key


def test_frozen_circuits_are_reproduced_by_their_script(organism):
    from organism.find_circuits import find_circuits

    model, tokenizer = organism
    frozen = json.loads(CIRCUITS.read_text())
    fresh = find_circuits(model, tokenizer)
    for key in ("ioi", "greater_than"):
        assert [(n["node"], n["roles"]) for n in fresh[key]["nodes"]] == [
            (n["node"], n["roles"]) for n in frozen[key]["nodes"]
        ]
        for name, value in frozen[key]["faithfulness"].items():
            if isinstance(value, float):
                assert fresh[key]["faithfulness"][name] == pytest.approx(value, abs=0.02, rel=0.02), name
        for table, values in frozen[key]["effects"].items():
            for node, value in values.items():
                assert fresh[key]["effects"][table][node] == pytest.approx(value, abs=0.01), (table, node)
        assert {(e["sender"], e["receiver"], e["input"]) for e in fresh[key]["edges"]} == {
            (e["sender"], e["receiver"], e["input"]) for e in frozen[key]["edges"]
        }


def test_training_is_deterministic_from_a_seed(tmp_path):
    from safetensors.torch import load_file

    from organism.train import OrganismConfig, train

    cfg = OrganismConfig(n_layers=2, n_heads=2, d_model=16, n_ctx=32, seq_len=16, batch_size=4, steps=6, warmup_steps=2)
    for run in ("a", "b"):
        train(cfg, tmp_path / run, progress=False)
    train(cfg.model_copy(update={"seed": 1}), tmp_path / "c", progress=False)
    a, b, c = (load_file(tmp_path / r / "model.safetensors") for r in "abc")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "tokenizer.json").is_file() and (tmp_path / "a" / "config.json").is_file()
