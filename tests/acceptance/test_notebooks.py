"""The circuit notebooks run in full (the slow tier); integration/test_notebooks.py runs them fast."""

from __future__ import annotations

import pytest
from notebook_runs import FEATURE_CIRCUITS, NAMES, SPLICE, _text, execute


@pytest.fixture(scope="module")
def shared_attn_saes(tmp_path_factory):
    """One set of attention SAEs for both notebooks (the second reuses the first's)."""
    return tmp_path_factory.mktemp("attn_saes")


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_full(name, tmp_path, shared_attn_saes):
    nb = execute(name, False, tmp_path, attn_saes=shared_attn_saes)
    assert "all checks passed" in _text(nb)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_splice_and_steer_runs(tmp_path):
    """Trains its SAE, splices it, ablates and steers a feature, checking each against a dense reference."""
    nb = execute(SPLICE, False, tmp_path)
    assert "all checks passed" in _text(nb)
    figures = [
        o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    assert len(figures) == 2


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_feature_circuits_runs(tmp_path):
    """Trains the site SAEs and transcoders, finds the IOI feature circuit and builds an attribution graph."""
    nb = execute(FEATURE_CIRCUITS, False, tmp_path)
    text = _text(nb)
    assert "all checks passed" in text
    assert "replacement score" in text and "latents needed for faithfulness" in text
    figures = [
        o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    assert len(figures) == 3  # faithfulness curves, head heatmap, attribution graph
