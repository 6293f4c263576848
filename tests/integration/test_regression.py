"""Fixed-seed regression: the held-out FVU and L0 of every family and the circuit finders'
ROC AUCs come out as they did before the architecture refactor (``tests/regression.py``)."""

from __future__ import annotations

import json

import pytest
import torch
from regression import EXPECTED, FAMILIES, measure

#: Same code, same seeds, same thread count: the figures repeat to float rounding. The
#: tolerance covers summation-order differences between machines, not behaviour changes.
RTOL = 1e-3


@pytest.fixture(scope="module")
def figures(organism, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure(tmp_path_factory.mktemp("regression") / "run", *organism)
    finally:
        torch.set_num_threads(before)


def test_the_fixture_covers_every_trainable_family():
    from sae.architectures import trainable

    assert set(FAMILIES) == set(trainable())


def test_heldout_fvu_and_l0_are_unchanged(figures):
    expected = json.loads(EXPECTED.read_text())["training"]
    assert figures["training"].keys() == expected.keys()
    for name, want in expected.items():
        got = figures["training"][name]
        assert got["fvu"] == pytest.approx(want["fvu"], rel=RTOL), name
        assert got["l0"] == pytest.approx(want["l0"], rel=RTOL), name


def test_circuit_aucs_are_unchanged(figures):
    expected = json.loads(EXPECTED.read_text())["circuits"]
    for method, want in expected.items():
        assert figures["circuits"][method]["roc_auc"] == pytest.approx(want["roc_auc"], abs=1e-6), method
