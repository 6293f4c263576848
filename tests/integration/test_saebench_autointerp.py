"""Autointerp on the organism: the statistical baseline on a trained SAE and a random-decoder one,
and the LLM path end to end through ``saelab eval --llm-url`` against a mock endpoint."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from autointerp_server import MockLLM

from evals.core.evaluate import EvalTarget
from evals.saebench import autointerp
from evals.saebench.config import AutointerpSettings
from evals.saebench.run import EvalGroup
from evals.suite_config import SuiteConfig

SMALL = {"n_latents": 20, "n_tokens": 16384}


def random_decoder(sae, seed: int = 0):
    """The same SAE (architecture, k) with random unit decoder rows, encoder = decoder^T, no biases."""
    rand = copy.deepcopy(sae)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.nn.functional.normalize(torch.randn(rand.W_dec.shape, generator=g), dim=-1)
        rand.W_dec.copy_(w)
        rand.W_enc.copy_(w.T)
        rand.b_enc.zero_()
        rand.b_dec.zero_()
    return rand


@pytest.fixture(scope="module")
def baseline_docs(organism, tiny_run):
    from sae.hooks import resolve_hook
    from sae.saving import load_sae

    model, tok = organism
    sae, cfg = load_sae(tiny_run / "topk")
    spec = resolve_hook(model, cfg["metadata"]["hook_name"])
    entries = [
        EvalTarget(name, s, spec, {"model": "organism", "id": name, "name": name})
        for name, s in (("trained", sae), ("random", random_decoder(sae)))
    ]
    group = EvalGroup(model, tok, entries, SuiteConfig.model_validate({}), {}, False)
    return {info["id"]: doc for info, doc in autointerp.run(group, AutointerpSettings(**SMALL))}


def test_statistical_baseline_trained_vs_random_decoder(baseline_docs):
    """Measured (seed 42, 20 latents, 16384 tokens): delphi detection 0.715 trained vs 0.635 random
    decoder; fuzzing 0.605 vs 0.541; SAEBench score 0.707 vs 0.718 (10 of its 14 windows are random
    and silent, so 'never' alone scores ~0.71). A random TopK decoder is not at chance: its latents
    still pick out tokens of the residual stream, and a token list explains them in part."""
    trained, rand = baseline_docs["trained"], baseline_docs["random"]
    for doc in (trained, rand):
        assert doc["eval_type_id"] == "autointerp"
        assert doc["eval_config"]["explainer"] == doc["eval_config"]["scorer"] == "statistical-baseline"
        assert all(d["explainer"] == "statistical-baseline" for d in doc["eval_result_details"])
        counts = doc["eval_result_metrics"]["counts"]
        assert counts["n_latents_scored"] == 20 and counts["n_failures"] == 0
        for d in doc["eval_result_details"]:
            det = d["delphi"]["detection"]
            assert 5 <= det["tp"] + det["fn"] <= 20  # 5 quantiles x <= 4 (a short list has short slices)
            assert det["tn"] + det["fp"] <= 20  # silent windows: fewer for a dense latent
            assert 0 <= d["saebench"]["score"] <= 1
        negatives = [
            d["delphi"]["detection"]["tn"] + d["delphi"]["detection"]["fp"] for d in doc["eval_result_details"]
        ]
        assert sum(n == 20 for n in negatives) >= 15, negatives
    det = {k: d["eval_result_metrics"]["delphi"]["detection_balanced_accuracy"] for k, d in baseline_docs.items()}
    print(f"statistical-baseline detection: trained {det['trained']:.3f}, random decoder {det['random']:.3f}")
    assert det["trained"] > 0.55
    assert det["random"] < det["trained"]


def test_deterministic_given_the_seed(organism, tiny_run, baseline_docs):
    from sae.hooks import resolve_hook
    from sae.saving import load_sae

    model, tok = organism
    sae, cfg = load_sae(tiny_run / "topk")
    spec = resolve_hook(model, cfg["metadata"]["hook_name"])
    group = EvalGroup(
        model,
        tok,
        [EvalTarget("trained", sae, spec, {"model": "organism", "id": "trained"})],
        SuiteConfig.model_validate({}),
        {},
        False,
    )
    ((_info, again),) = autointerp.run(group, AutointerpSettings(**SMALL))
    assert again["eval_result_details"] == baseline_docs["trained"]["eval_result_details"]


def test_llm_path_through_the_cli_and_its_cache(tiny_run, tmp_path):
    from saelab.cli import main

    suite = tmp_path / "suite.yaml"
    settings = {"explainer": "llm", "scorer": "llm", "n_latents": 2, "n_tokens": 8192, "cache_dir": str(tmp_path / "c")}
    suite.write_text(
        json.dumps(
            {
                "data": {"n_tokens": 1024, "lm_batch_size": 32},
                "splice": False,
                "attention": {"enabled": False},
                "saebench": {"evals": ["autointerp"], "controls": False, "autointerp": settings},
            }
        )
    )
    with MockLLM() as server:
        argv = ["eval", "--suite", str(suite), str(tiny_run / "topk"), "--quiet", "--llm-url", server.url]
        assert main([*argv, "--out", str(tmp_path / "a"), "--llm-model", "mock-judge"]) == 0
        first = len(server.requests)
        assert main([*argv, "--out", str(tmp_path / "b"), "--llm-model", "mock-judge"]) == 0
        assert len(server.requests) == first  # every prompt answered from the cache
    assert first == 2 * (2 + 8 + 8 + 1)  # per latent: 2 explanations, 40 windows / 5 x (detection, fuzzing), 1
    docs = [json.loads(next((tmp_path / o / "saebench" / "autointerp").glob("*.json")).read_text()) for o in ("a", "b")]
    for doc in docs:
        assert doc["eval_config"]["explainer"] == "mock-judge" and doc["eval_config"]["llm_url"] == server.url
        assert {d["delphi"]["explanation"] for d in doc["eval_result_details"]} == {"a word that is a city"}
    assert docs[0]["eval_result_metrics"] == docs[1]["eval_result_metrics"]
    assert "Autointerp: delphi" in (tmp_path / "a" / "report.html").read_text()
