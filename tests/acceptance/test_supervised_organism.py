"""Slow tier of integration/test_supervised_organism.py: the tests marked slow."""

from __future__ import annotations

import json

import pytest
from supervised_fixtures import SMALL, one_thread

from evals.supervised.config import SupervisedConfig
from evals.supervised.locations import PRIMARY


@pytest.mark.slow
def test_saved_task_saes_evaluate_again_to_the_same_numbers(supervised_run, organism, tmp_path):
    """The SAEs the run saved, passed back with --sae, give the same results."""
    from evals.supervised.runner import run

    doc, out = supervised_run
    model, tok = organism
    cfg = SupervisedConfig.model_validate({**SMALL, "eval": {**SMALL["eval"], "ks": [2]}})
    with one_thread():
        again = run(
            cfg,
            tmp_path,
            sae_paths=[str(out / "saes" / "task" / "topk")],
            progress=False,
            model=model,
            tokenizer=tok,
            report=False,
        )
    assert set(again["results"]) == {"supervised_mean", "supervised_mse", "topk_task"}
    first, second = doc["results"]["topk_task"], again["results"]["topk_task"]
    assert second["sufficiency"][PRIMARY]["score"] == pytest.approx(first["sufficiency"][PRIMARY]["score"], abs=1e-6)
    assert second["control"][PRIMARY]["success_by_k"]["2"] == first["control"][PRIMARY]["success_by_k"]["2"]


@pytest.mark.slow
def test_quick_command_meets_acceptance_with_three_families(tmp_path, capsys):
    """The real command line: task and full-distribution SAEs of three families, matched L0."""
    from saelab.cli import main

    with one_thread():
        assert main(["eval", "supervised", "--model", "organism", "--quick", "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    acc = summary["acceptance"]
    assert acc["met"] and acc["compares_three_architectures"]
    assert {"topk", "vsae", "gsae"} <= set(acc["full_architectures"])  # per-token k: matched by construction
    assert "gsae" not in acc["task_architectures"]  # task rows carry no gradients
    assert (tmp_path / "report.html").is_file() and (tmp_path / "supervised.json").is_file()
    assert summary["random_decoder_finding"] is not None


@pytest.mark.slow
def test_gpt2_roles_run_end_to_end_on_a_random_gpt2_shape(organism_tokenizer, tmp_path):
    """GPT-2 small's circuit (Wang et al. roles: backup name movers, induction and duplicate-token
    heads at S2) on a randomly initialised 12-layer, 12-head model: the code path users take
    with ``--model gpt2``, which cannot be downloaded here."""
    from transformers import GPT2Config

    from evals.supervised.runner import run
    from sae.model import random_model

    model, tok = random_model(
        GPT2Config(n_layer=12, n_head=12, n_embd=48, n_positions=64, vocab_size=len(organism_tokenizer)),
        organism_tokenizer,
        seed=0,
    )
    cfg = SupervisedConfig.model_validate(
        {
            "model": "gpt2",
            "prompts": {"n_fit": 200, "n_eval": 40, "n_heldout_template": 0},
            "saes": {
                "architectures": ["topk"],
                "task_epochs": 2,
                "task_batch_size": 100,
                "full_distribution": False,
                "random_decoder": False,
            },
            "eval": {"cross_sections": ["induction+duplicate z@S2"], "ks": [2], "batch_size": 40},
        }
    )
    with one_thread():
        doc = run(cfg, tmp_path, progress=False, model=model, tokenizer=tok, report=False)
    xs = doc["cross_sections"][0]
    assert xs["heads"] == ["0.1", "0.10", "3.0", "5.5", "5.8", "5.9", "6.9"] and xs["positions"] == ["S2"]
    assert set(doc["results"]) == {"supervised_mean", "supervised_mse", "topk_task"}
    assert doc["primary_cross_section"] == "induction+duplicate z@S2"
