"""A small soak (bench/soak.py): real kill -9s of training and caching, each rerun identical (slow tier)."""

from __future__ import annotations

import argparse

import pytest


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_small_soak_resumes_to_identical_results(tmp_path):
    from bench.soak import run

    result = run(argparse.Namespace(train_kills=2, cache_kills=1, seed=3, workdir=str(tmp_path)))
    assert (result["train_kills"], result["cache_kills"]) == (2, 1)
    assert result["train_identical"] == 2 and result["cache_identical"] == 1, result["per_kill"]
    assert [r["band"] for r in result["per_kill"]] == ["middle", "early", "middle"]
    early = result["per_kill"][1]
    assert early["kill_at_s"] < result["train_reference"]["first_progress_s"]
