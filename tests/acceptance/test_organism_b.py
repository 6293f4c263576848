"""organism-b, the held-out second organism (docs/validation.md): it solves the tasks at the
first organism's thresholds, and its frozen ground truths re-derive on a sample.

Re-deriving the whole path-patching search is what ``saelab organism circuits --model
organism-b`` does (minutes on 48 heads); here a sample of its first stage, the direct
effects on the logits that decide the name movers (IOI) and the direct nodes
(greater-than), is recomputed with the frozen prompts and compared with the frozen table.
"""

from __future__ import annotations

import json

import pytest

import saelab  # noqa: F401  (registers organism-b even where the entry points predate it)
from circuits.ground_truth import faithfulness_file
from organism.provider import CIRCUITS_B, WEIGHTS_B

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def organism_b():
    from sae.model import load_model

    assert (WEIGHTS_B / "model.safetensors").is_file(), (
        "organism-b weights missing: saelab organism train --config configs/organism_b.yaml --out organism/weights_b"
    )
    return load_model("organism-b")


def test_organism_b_meets_the_task_thresholds(organism_b):
    from organism.evaluate import evaluate

    model, tokenizer = organism_b
    scores = evaluate(lambda t: model(t), tokenizer, n_prompts=1100)
    assert scores["ioi_accuracy"] >= 0.95
    assert scores["ioi_logit_diff"] >= 3.0
    assert scores["greater_than_prob_diff"] >= 0.8
    assert model.cfg.n_layers == 6 and model.cfg.n_heads == 8


def test_organism_b_lives_in_its_own_world():
    meta = json.loads((WEIGHTS_B / "training.json").read_text())
    assert meta["config"]["corpus"]["world_seed"] == 4321 and meta["config"]["seed"] == 1


def _sample(effects: dict[str, float], circuit: list[str], n_outside: int = 3) -> list[str]:
    """The circuit's nodes and the ``n_outside`` nodes outside it with the largest |effect|
    (the ones nearest to being let in)."""
    outside = sorted((n for n in effects if n not in circuit), key=lambda n: -abs(effects[n]))
    return circuit + outside[:n_outside]


def test_frozen_circuits_re_derive_on_a_sample(organism_b):
    from circuits.tasks import greater_than, ioi
    from organism.find_circuits import _effects
    from organism.path_patching import Node, run_caches

    model, tokenizer = organism_b
    frozen = json.loads(CIRCUITS_B.read_text())
    for key, module, metric, roles in (
        ("ioi", ioi, ioi.logit_diff, {"name_mover", "negative_name_mover", "s_suppression"}),
        ("greater_than", greater_than, greater_than.prob_diff, {"direct"}),
    ):
        record = frozen[key]
        table = record["effects"]["direct_to_logits"]
        direct = [n["node"] for n in record["nodes"] if roles & set(n["roles"])]
        assert direct, key
        sample = _sample(table, direct)
        batch = module.make_batch(tokenizer, record["n_prompts"], seed=record["seed"])
        caches = run_caches(model, batch, metric)
        nodes = [Node.parse(n) for n in sample]
        fresh = _effects(model, batch, caches, nodes, None, metric, f"{key}: sample")
        for node in nodes:
            assert fresh[node] == pytest.approx(table[str(node)], abs=0.01), (key, str(node))
        tau = record["thresholds"]["direct_effect"]
        assert all(abs(fresh[n]) >= tau for n in nodes if str(n) in direct), key


def test_the_faithfulness_ground_truth_fits_organism_b(organism_b):
    """Measured afresh: each frozen head set keeps ≥ 80% of its task metric (normalised
    between all heads ablated and none) with every other head mean-ablated, and gives the
    frozen circuit metric (the last step of the greedy search, re-derived)."""
    from circuits.ablation import MeanAblator
    from circuits.faithfulness_search import N_PROMPTS, SEED, TARGET
    from circuits.tasks import TASKS

    path = faithfulness_file("organism-b")
    assert path.is_file(), (
        "organism-b's faithfulness ground truth: python -m circuits.faithfulness_search --model organism-b"
    )
    doc = json.loads(path.read_text())
    model, tokenizer = organism_b
    heads = [(layer, h) for layer in range(6) for h in range(8)]
    for task, key in (("ioi", "ioi"), ("greater-than", "greater_than")):
        keep = {(n["layer"], n["head"]) for n in doc[key]["nodes"]}
        assert keep and keep <= set(heads), key
        assert doc[key]["recovers"] >= TARGET, key
        module = TASKS[task]
        ablator = MeanAblator(model, module.make_batch(tokenizer, N_PROMPTS, seed=SEED), module.metric)
        none = ablator.run(heads)
        kept = ablator.run(set(heads) - keep)
        assert (kept - none) / (ablator.full - none) >= TARGET, key
        assert kept == pytest.approx(doc[key]["circuit_metric"], rel=1e-3, abs=1e-4), key
