"""Slow tier of integration/test_organism.py: the tests marked slow."""

from __future__ import annotations

import json

import pytest

from sae import providers

CIRCUITS = providers.get("organism").files["circuits"]


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "saelab", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IOI (held-out names): accuracy" in result.stdout
    assert "circuit alone recovers" in result.stdout
    assert json.loads((tmp_path / "demo" / "organism_eval.json").read_text())["ioi_accuracy"] >= 0.95
