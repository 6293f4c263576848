"""The absorption claims: the absorption eval's headline reaches the claims table, and a suite that
did not run it leaves those claims 'not tested' instead of failing."""

from __future__ import annotations

import pytest

from evals.claims import CLAIMS, evaluate_claim
from evals.saebench.run import suite_metrics

CLAIM = {c.key: c for c in CLAIMS}


def _sae(name, seed, l0, absorption=None):
    metrics = {"l0": l0, "fvu": 0.1}
    if absorption is not None:
        metrics["absorption_fraction"] = absorption
    return {"name": name, "train_seed": seed, "architecture": name, "metrics": metrics}


def _groups(saes):
    out = {}
    for s in saes:
        out.setdefault(s["name"], {})[s["train_seed"]] = s
    return out


def test_matryoshka_and_mutual_choice_claims_compare_absorption_fraction():
    for key, a in (("matryoshka_absorbs_less", "matryoshka"), ("mc_absorbs_less", "mutual_choice")):
        claim = CLAIM[key]
        assert (claim.metric, claim.a, claim.b, claim.relation) == ("absorption_fraction", a, "topk", "<")
        saes = [_sae("topk", s, 16.0, 0.30) for s in range(3)]
        saes += [_sae(a, s, 16.5, v) for s, v in enumerate((0.10, 0.20, 0.25))]
        row = evaluate_claim(claim, _groups(saes), (14.4, 17.6))
        assert row["verdict"] == "held" and row["seeds"] == 3
        assert row["difference"]["mean"] == pytest.approx((-0.2 - 0.1 - 0.05) / 3)
        saes[3]["metrics"]["absorption_fraction"] = 0.5  # one seed against: mixed
        assert evaluate_claim(claim, _groups(saes), (14.4, 17.6))["verdict"] == "mixed"
        saes[4]["metrics"]["l0"] = 20.0  # and out of the L0 band: still mixed (direction first)
        saes[3]["metrics"]["absorption_fraction"] = 0.1
        assert evaluate_claim(claim, _groups(saes), (14.4, 17.6))["verdict"] == "not matched"


def test_absorption_claims_not_tested_without_the_eval():
    saes = [_sae(n, s, 16.0) for n in ("topk", "matryoshka") for s in range(3)]
    row = evaluate_claim(CLAIM["matryoshka_absorbs_less"], _groups(saes), None)
    assert row["verdict"] == "not tested" and "absorption_fraction" in row["why"]


def test_suite_metrics_copies_the_absorption_headline():
    scored, skipped = {"metrics": {"l0": 16.0}}, {"metrics": {"l0": 16.0}}
    doc = {"eval_result_metrics": {"mean": {"mean_absorption_fraction_score": 0.25, "mean_full_absorption_score": 0.1}}}
    null = {"eval_result_metrics": {"mean": {"mean_absorption_fraction_score": None}}}
    suite_metrics({"absorption": [(scored, doc), (skipped, null)]})
    assert scored["metrics"] == {"l0": 16.0, "absorption_fraction": 0.25, "full_absorption_rate": 0.1}
    assert skipped["metrics"] == {"l0": 16.0}  # a skipped SAE's null stays absent
