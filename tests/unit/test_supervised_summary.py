"""The acceptance check and the random-decoder finding, on hand-made tables."""

from __future__ import annotations

import pytest

from evals.supervised.summary import acceptance, l0_matched, random_decoder_finding

XS = "name_mover z@END"


def _row(key, kind, l0=4.0, fvu=0.1, suff=0.9, nec=0.8, ctrl=0.7, xs=XS):
    return {
        "dictionary": key,
        "kind": kind,
        "cross_section": xs,
        "l0": l0,
        "fvu": fvu,
        "sufficiency": suff,
        "necessity": nec,
        "control": ctrl,
        "l0_matched": kind == "supervised" or l0_matched(l0, 4, 0.25),
        "failed": fvu >= 1,
    }


def _doc(rows):
    arch = {
        "supervised_mean": None,
        "topk_task": "topk",
        "relu_task": "relu",
        "vsae_task": "vsae",
        "random_decoder_task": "topk",
        "topk_full": "topk",
        "gsae_full": "gsae",
        "relu_full": "relu",
    }
    return {
        "primary_cross_section": XS,
        "table": rows,
        "dictionaries": {k: {"architecture": a} for k, a in arch.items()},
        "baselines": {XS: {"mean_ablation_ratio": 0.7}},
        "results": {"supervised_mean": {"control": {XS: {"headline_attributes": ["IO"]}}}},
        "config": {"saes": {"l0": 4, "l0_tolerance": 0.25}},
    }


def test_acceptance_counts_only_matched_families_that_reconstruct():
    rows = [
        _row("supervised_mean", "supervised", l0=3, suff=0.95, ctrl=0.85),
        _row("topk_task", "task"),
        _row("relu_task", "task", l0=4.9),
        _row("vsae_task", "task", fvu=1.5),
        _row("topk_full", "full"),
        _row("gsae_full", "full"),
        _row("relu_full", "full", l0=40),
    ]
    acc = acceptance(_doc(rows))
    assert acc["met"] and acc["supervised_mean_control"] == 0.85
    assert acc["task_architectures"] == ["relu", "topk"]  # vsae failed (FVU ≥ 1)
    assert acc["full_architectures"] == ["gsae", "topk"] and acc["outside_l0_band"] == ["relu_full"]
    assert acc["failed"] == ["vsae_task"] and not acc["compares_three_architectures"]
    rows[0]["control"] = 0.79
    assert not acceptance(_doc(rows))["met"]


def test_random_decoder_finding_by_hand():
    rows = [
        _row("random_decoder_task", "random_decoder", suff=0.90, nec=0.50, ctrl=0.40),
        _row("topk_full", "full", suff=0.95, nec=0.55, ctrl=0.30),
        _row("gsae_full", "full", suff=0.85, nec=0.45, ctrl=0.50),
        _row("relu_full", "full", l0=40, suff=0.0, nec=0.0, ctrl=0.0),  # outside the band: left out
        _row("topk_task", "task", suff=1.0, nec=0.9, ctrl=0.9),
    ]
    found = random_decoder_finding(_doc(rows))
    assert found["full_families"] == ["gsae_full", "topk_full"]
    assert found["random_minus_full"] == pytest.approx({"sufficiency": 0.0, "necessity": 0.0, "control": 0.0})
    assert found["random_minus_task"] == pytest.approx({"sufficiency": -0.1, "necessity": -0.4, "control": -0.5})
    assert found["about_as_bad_as_full"]
    rows[0]["control"] = 0.6
    assert not random_decoder_finding(_doc(rows))["about_as_bad_as_full"]
    assert random_decoder_finding(_doc(rows[1:])) is None  # no control trained
