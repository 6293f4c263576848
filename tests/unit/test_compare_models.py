"""Circuit results of two organisms side by side: each row names its model, and the time
ratio to ACDC is taken against the same model's ACDC run (issue 18)."""

from __future__ import annotations

import pytest

from circuits.compare import summary_rows, verdicts


def _doc(method, seconds, model=None, auc=0.8):
    doc = {
        "task": "ioi",
        "method": method,
        "heads": [],
        "seconds": seconds,
        "n_prompts": 8,
        "by_ground_truth": {"pp": {"roc_auc": auc, "precision": 0, "recall": 0, "f1": 0, "tpr_tnr_harmonic_mean": 0}},
    }
    return doc if model is None else {**doc, "model": model}


def test_each_model_is_timed_against_its_own_acdc():
    docs = [
        _doc("acdc", 100.0),  # written before the second organism: the organism's
        _doc("eap", 2.0),
        _doc("acdc", 400.0, "organism-b"),
        _doc("eap", 2.0, "organism-b"),
    ]
    rows = {(r["model"], r["method"]): r for r in summary_rows(docs)}
    assert set(rows) == {("organism", "acdc"), ("organism", "eap"), ("organism-b", "acdc"), ("organism-b", "eap")}
    assert rows["organism", "eap"]["fraction_of_acdc_time"] == pytest.approx(0.02)
    assert rows["organism-b", "eap"]["fraction_of_acdc_time"] == pytest.approx(0.005)


def test_verdicts_name_the_model_only_when_there_are_several():
    one = verdicts([_doc("discrete-sae", 2.0, auc=0.7), _doc("eap", 1.0)])
    assert one and all(line.startswith("ioi") for line in one)
    two = verdicts([_doc("discrete-sae", 2.0, auc=0.7), _doc("eap", 1.0), _doc("discrete-sae", 2.0, "organism-b")])
    assert any(line.startswith("organism / ioi vs pp: eap beats discrete-sae") for line in two)
