"""saelab ↔ SAELens interop (bench/interop.py) against real sae-lens in bench/.peers (slow tier)."""

from __future__ import annotations

import argparse

import pytest


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_every_loadable_architecture_crosses_within_1e_5():
    from bench.interop import CASES, TOLERANCE, TRAINED, run
    from bench.peers import venv
    from sae.architectures.registry import from_saelens

    if not (venv("saelens") / "bin" / "python").exists():
        pytest.skip("the SAELens peer venv is missing: python -c 'from bench.peers import peer_python; peer_python()'")
    rows = {r["case"]: r for r in run(argparse.Namespace(seed=1))}
    assert set(rows) == {c[0] for c in CASES}
    for case, arch, _, _ in CASES:
        row = rows[case]
        if from_saelens(arch) is None:
            assert row["status"] == "skipped" and arch in row["reason"]
            continue
        assert row["status"] == "ok" and row["pass"], row
        if case in TRAINED:  # a trained family saved in another architecture's form: saelab → SAELens
            assert row["saelab_to_saelens_encode"] <= TOLERANCE and row["saelab_to_saelens_decode"] <= TOLERANCE
            continue
        assert row["saelens_to_saelab_encode"] <= TOLERANCE and row["saelens_to_saelab_decode"] <= TOLERANCE
