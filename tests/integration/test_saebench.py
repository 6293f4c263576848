"""SAEBench evaluations through the suite on the tiny trained run: files, shapes, report."""

from __future__ import annotations

import json

import pytest

from evals.suite import run_suite
from evals.suite_config import SuiteConfig

SMALL_SAEBENCH = {
    "data": {"n_tokens": 2048, "lm_batch_size": 32},
    "mean_ablation": {"n_tokens": 1024},
    "attention": {"enabled": False},
    "saebench": {
        "evals": ["core", "sparse_probing", "absorption", "tpp"],
        "controls": False,  # the controls are tested on one SAE in test_saebench_controls.py
        "sparse_probing": {"datasets": ["category", "gender"], "k_values": [1, 5], "contexts": 2},
        "absorption": {"contexts": 4},
        "tpp": {"contexts": 2, "n_values": [2, 20]},
    },
}


@pytest.fixture(scope="session")
def saebench_results(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("saebench")
    return run_suite(SuiteConfig.model_validate(SMALL_SAEBENCH), [tiny_run], out, progress=False), out


def _docs(out, name):
    lab = json.loads((out / f"saebench_{name}.json").read_text())
    assert lab["kind"] == f"saebench_{name}"
    return {s["name"]: (s, json.loads((out / s["file"]).read_text())) for s in lab["saes"]}


def test_core_documents(saebench_results):
    results, out = saebench_results
    docs = _docs(out, "core")
    assert set(docs) == {"topk", "attn", "head5"}
    by_name = {s["name"]: s for s in results["saes"]}
    for name, (_entry, doc) in docs.items():
        assert doc["eval_type_id"] == "core" and doc["sae_bench_commit_hash"] == "saelab"
        m, lab = doc["eval_result_metrics"], by_name[name]["metrics"]
        # reused from the lab's pass where SAEBench computes the same thing
        assert m["model_performance_preservation"]["ce_loss_score"] == lab["ce_loss_recovered_zero"]
        assert m["model_behavior_preservation"]["kl_div_score"] == lab["kl_score_zero"]
        assert m["sparsity"]["l0"] == pytest.approx(lab["l0"])
        assert m["reconstruction_quality"]["explained_variance_saelab"] == lab["explained_variance"]
        assert m["misc_metrics"]["frac_alive"] == pytest.approx(1 - lab["dead_fraction"])
        assert len(doc["eval_result_details"]) == by_name[name]["d_sae"]
        for block in m.values():
            assert all(not isinstance(v, dict | list) for v in block.values())
    assert "SAEBench core metrics" in (out / "report.html").read_text()


def test_sparse_probing_on_the_organism(saebench_results):
    _results, out = saebench_results
    docs = _docs(out, "sparse_probing")
    assert set(docs) == {"topk", "attn", "head5"}
    for _entry, doc in docs.values():
        m = doc["eval_result_metrics"]
        assert set(m) == {"llm", "sae"}
        assert set(m["sae"]) == {"sae_test_accuracy", "sae_top_1_test_accuracy", "sae_top_5_test_accuracy"}
        names = [d["dataset_name"] for d in doc["eval_result_details"]]
        assert names == ["organism/category", "organism/gender"]
        for d in doc["eval_result_details"]:
            assert 0 <= d["sae_top_1_test_accuracy"] <= 1 and d["classes"] and d["test_items"]
    # real prompts: the residual stream after block 1 tells a word's category and a name's gender
    _entry, topk = docs["topk"]
    for d in topk["eval_result_details"]:
        assert d["llm_test_accuracy"] > 0.8, d
    assert "SAEBench sparse probing" in (out / "report.html").read_text()


def test_absorption_on_the_organism(saebench_results):
    _results, out = saebench_results
    docs = _docs(out, "absorption")
    _entry, doc = docs["topk"]
    assert doc["eval_type_id"] == "absorption_category"
    m = doc["eval_result_metrics"]["mean"]
    assert doc["eval_result_unstructured"] is None, doc["eval_result_unstructured"]
    assert 0 <= m["mean_absorption_fraction_score"] <= 1 and 0 <= m["mean_full_absorption_score"] <= 1
    assert m["mean_num_split_features"] >= 0
    details = doc["eval_result_details"]
    assert len(details) >= 3 and all(d["probe_f1"] >= 0.6 for d in details)
    for d in details:
        assert d["num_full_absorption"] <= d["num_probe_true_positives"]
        assert all(lat["latent"] not in d["split_features"] for lat in d["absorbing_latents"])
    assert "SAEBench feature absorption" in (out / "report.html").read_text()


def test_tpp_on_the_organism(saebench_results):
    _results, out = saebench_results
    docs = _docs(out, "tpp")
    assert set(docs) == {"topk", "attn", "head5"}
    for _entry, doc in docs.values():
        m = doc["eval_result_metrics"]["tpp_metrics"]
        assert set(m) == {
            f"tpp_threshold_{n}_{k}"
            for n in (2, 20)
            for k in ("total_metric", "intended_diff_only", "unintended_diff_only")
        }
        (detail,) = doc["eval_result_details"]  # one per dataset, as SAEBench
        assert detail["dataset_name"] == "organism/category"
        for d in detail["classes"]:
            intended, unintended = d["tpp_threshold_20_intended_diff_only"], d["tpp_threshold_20_unintended_diff_only"]
            assert d["tpp_threshold_20_total_metric"] == pytest.approx(intended - unintended)
    _entry, topk = docs["topk"]
    assert all(d["llm_clean_accuracy"] > 0.7 for d in topk["eval_result_details"][0]["classes"])
    assert "SAEBench targeted probe perturbation" in (out / "report.html").read_text()
