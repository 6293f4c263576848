"""Slow tier of integration/test_circuits_pipeline.py: the tests marked slow."""

from __future__ import annotations

import pytest

FAST = {"n_prompts": 8}


@pytest.mark.slow
def test_the_faithfulness_script_reproduces_the_frozen_ground_truth():
    from circuits.faithfulness_search import main

    assert main(["--check"]) == 0


@pytest.mark.slow
def test_bench_runs_every_method_on_both_tasks(organism, tmp_path):
    import argparse

    from bench.circuits import ALL_METHODS, add_arguments, default_models, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--n-prompts",
            "8",
            "--seeds",
            "2",
            "--taus",
            "0.3",
            "--validation-prompts",
            "4",
            "--attn-sae-tokens",
            "30000",
            "--quiet",
            "--attn-saes",
            str(tmp_path / "attn"),
        ]
    )
    rows = run(args)
    from circuits.ground_truth import available

    models = default_models()  # both organisms once organism-b's weights are in place
    # every method, both tasks, against each ground truth frozen for that model (organism-b
    # has its path-patching circuits; its faithfulness search is not frozen yet)
    for model in models:
        n_truths = len(available(model))
        assert sum(r["model"] == model for r in rows) == 2 * len(ALL_METHODS) * n_truths, model
    assert {r["model"] for r in rows} == set(models)
    assert all(r["fraction_of_acdc_time"] is not None for r in rows)
    acdc = [r for r in rows if r["method"] == "acdc"]
    assert all(r["forward_passes"] > 2 for r in acdc)
    # only the path-patching ground truth has edges; the faithfulness one is a head set
    assert all((r["edge_roc_auc"] is not None) == (r["ground_truth"] == "path_patching") for r in acdc)
