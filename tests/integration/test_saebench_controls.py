"""``saelab eval saebench`` on the tiny run's residual SAE: SCR and RAVEL documents, summary.json with every
control's headline."""

from __future__ import annotations

import json
import math

import pytest

from saelab.cli import main

SUITE = """
data: {n_tokens: 1024, lm_batch_size: 32}
mean_ablation: {n_tokens: 512}
attention: {enabled: false}
saebench:
  sparse_probing: {datasets: [gender], k_values: [1], contexts: 1}
  scr: {contexts: 1, pairs: [[doctor, nurse]], n_values: [2, 20]}
  ravel: {contexts: 1, n_pairs: 8, n_values: [2]}
  autointerp: {n_latents: 6, n_tokens: 8192, min_examples: 10, n_examples_train: 10, n_examples_test: 10,
               n_non_activating: 10}
"""


@pytest.fixture(scope="session")
def saebench_cli(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("saebench_cli")
    (root / "suite.yaml").write_text(SUITE)
    out = root / "out"
    argv = ["eval", "saebench", str(tiny_run / "topk"), "--evals", "sparse_probing,scr,ravel,autointerp"]
    assert main([*argv, "--suite", str(root / "suite.yaml"), "--out", str(out), "--quiet"]) == 0
    return out


def test_summary_has_every_control(saebench_cli):
    summary = json.loads((saebench_cli / "summary.json").read_text())
    assert summary["kind"] == "saebench_summary"
    (sae,) = summary["saes"]
    assert sae["measured_l0"] > 0 and sae["pca_rank"] == max(1, round(sae["measured_l0"]))
    assert set(sae["evals"]) == {"sparse_probing", "scr", "ravel", "autointerp"}
    for name, row in sae["evals"].items():
        keys = ("sae", "random_decoder", "pca") + (() if name == "autointerp" else ("raw_probe",))
        assert set(row) == {"metric", *keys}, name
        for key in keys:
            assert isinstance(row[key], float) and math.isfinite(row[key]), (name, key, row)
    assert sae["evals"]["scr"]["metric"] == "scr_metrics/scr_metric_threshold_20"
    assert sae["evals"]["autointerp"]["metric"] == "delphi/detection_balanced_accuracy"
    assert 0 <= sae["evals"]["sparse_probing"]["random_decoder"] <= 1
    # the raw probe of sparse probing is the eval's own raw-activation baseline
    lab = json.loads((saebench_cli / "saebench_sparse_probing.json").read_text())
    doc = lab["saes"][0]["document"]
    assert sae["evals"]["sparse_probing"]["raw_probe"] == doc["eval_result_metrics"]["llm"]["llm_top_1_test_accuracy"]
    assert sae["evals"]["sparse_probing"]["sae"] == doc["eval_result_metrics"]["sae"]["sae_top_1_test_accuracy"]


def test_every_control_document_is_written_beside_the_sae(saebench_cli):
    """Each control's whole document (every dataset's numbers) under <eval_type_id>/controls/, its headline the
    one summary.json records; results.json does not carry them."""
    from evals.saebench.controls import DOCUMENTS

    (sae,) = json.loads((saebench_cli / "summary.json").read_text())["saes"]
    for name, row in sae["evals"].items():
        category, metric = row["metric"].split("/")
        type_id = json.loads((saebench_cli / f"saebench_{name}.json").read_text())["saes"][0]["document"]
        folder = saebench_cli / "saebench" / type_id["eval_type_id"] / "controls"
        for control in ("random_decoder", "pca") + (() if name in ("autointerp", "sparse_probing") else ("raw_probe",)):
            (path,) = folder.glob(f"*~{control}_eval_results.json")
            doc = json.loads(path.read_text())
            assert doc["eval_result_metrics"][category][metric] == row[control], (name, control)
    assert DOCUMENTS not in (saebench_cli / "results.json").read_text()


def test_scr_and_ravel_documents(saebench_cli):
    scr = json.loads(next((saebench_cli / "saebench" / "scr").glob("*.json")).read_text())
    assert scr["eval_type_id"] == "scr"
    assert set(scr["eval_result_metrics"]["scr_metrics"]) == {
        f"scr_{k}_threshold_{n}" for k in ("dir1", "dir2", "metric") for n in (2, 20)
    }
    (detail,) = scr["eval_result_details"]
    assert detail["profession_probe_accuracy"] > 0.9  # the job word is in the prompt
    ravel = json.loads(next((saebench_cli / "saebench" / "ravel").glob("*.json")).read_text())
    m = ravel["eval_result_metrics"]["ravel"]
    assert m["disentanglement_score"] == pytest.approx((m["cause_score"] + m["isolation_score"]) / 2)
    (detail,) = ravel["eval_result_details"]
    assert detail["clean_accuracy"] > 0.8  # the organism knows its world's facts
    assert detail["full_patch"]["cause_score"] > 0.8  # the facts are at the name at blocks.1
    report = (saebench_cli / "report.html").read_text()
    assert "SAEBench spurious correlation removal" in report and "SAEBench RAVEL" in report
    assert "SAEBench frontier and controls" in report


def test_unknown_eval_is_one_line(capsys, tmp_path):
    assert main(["eval", "saebench", str(tmp_path), "--evals", "core,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown SAEBench eval 'nope'" in err[0]
