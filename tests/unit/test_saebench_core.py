"""SAEBench's core formulas against hand-computed values, and the SAEBench document shape."""

from __future__ import annotations

import math

import pytest
import torch

from evals.saebench.core import CoreStats, max_cosine, misc_metrics, weight_stats
from evals.saebench.output import document, file_name
from sae.architectures.base import Selection


def test_core_formulas_by_hand():
    # x = [[3, 0], [0, 1]], x_hat = [[2, 0], [0, 1]]: residuals 1 and 0
    x = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    x_hat = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    codes = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    stats = CoreStats(3)
    stats.update(x, Selection.from_dense(codes), x_hat)
    r = stats.result()
    # SAEBench 0.6: 1 - E resid / (E||x||^2 - (mean_d E x_d^2)^2) = 1 - 0.5 / (5 - 2.5^2) = 1.4
    assert r["explained_variance"] == pytest.approx(1.4)
    # legacy: x_bar = (1.5, 0.5); ||x - x_bar||^2 = 2.5 for both rows; mean(1 - 1/2.5, 1 - 0) = 0.8
    assert r["explained_variance_legacy"] == pytest.approx(0.8)
    assert r["mse"] == pytest.approx(0.25)  # mean over tokens of resid / 2 tokens
    assert r["relative_reconstruction_bias"] == pytest.approx(2.5 / 3.5)
    assert r["l2_ratio"] == pytest.approx((2 / 3 + 1) / 2)
    assert r["cossim"] == pytest.approx(1.0)
    assert r["l0"] == pytest.approx(1.5)
    assert r["l1"] == pytest.approx(1.0)  # signed sum, as SAEBench: (2) + (1 - 1)
    assert stats.densities().tolist() == [0.5, 0.5, 0.0]  # f > 0 only


def test_consistent_activation_heuristic_by_hand():
    # rows 0, 1 from sequence 0, row 2 from sequence 1; latent 0 fires on rows 0, 1, 2; latent 1 on row 2
    codes = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    x = torch.ones(3, 2)
    stats = CoreStats(3)
    stats.update(x, Selection.from_dense(codes), x, torch.tensor([0, 0, 1]))
    stats.update(x, Selection.from_dense(codes), x, torch.tensor([0, 0, 1]))  # a second batch: two more sequences
    cah = stats.consistent_activation()
    assert cah[0] == pytest.approx(6 / 4) and cah[1] == pytest.approx(1.0) and math.isnan(cah[2])


def test_misc_metrics_and_max_cosine():
    density = torch.tensor([0.0, 0.005, 0.05, 0.5])
    vecs = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    cos = max_cosine(vecs, chunk=3)
    assert cos.tolist() == pytest.approx([math.sqrt(0.5), math.sqrt(0.5), math.sqrt(0.5), 0.0])
    m = misc_metrics(density, cos, cos)
    assert m["frac_alive"] == 0.75
    assert m["freq_over_1_percent"] == 0.5 and m["freq_over_10_percent"] == 0.25
    assert m["normalized_freq_over_1_percent"] == pytest.approx(0.55 / 0.555)
    assert m["normalized_freq_over_10_percent"] == pytest.approx(0.5 / 0.555)


def test_document_shape_refuses_nested_metrics():
    info = {"id": "run/topk", "name": "topk", "sae_dir": "/nonexistent"}
    doc = document("core", {"a": 1}, {"sparsity": {"l0": 3.0, "l1": float("nan")}}, [], info)
    assert set(doc) == {
        "eval_type_id",
        "eval_config",
        "eval_id",
        "datetime_epoch_millis",
        "eval_result_metrics",
        "eval_result_details",
        "sae_bench_commit_hash",
        "sae_lens_id",
        "sae_lens_release_id",
        "sae_lens_version",
        "sae_cfg_dict",
        "eval_result_unstructured",
    }
    assert doc["sae_bench_commit_hash"] == "saelab" and doc["eval_result_metrics"]["sparsity"]["l1"] is None
    assert file_name(info) == "run_topk_eval_results.json"  # SAEBench's '/' -> '_'
    with pytest.raises(ValueError, match=r"sparsity\.l0"):
        document("core", {}, {"sparsity": {"l0": {"nested": 1}}}, [], info)


def test_weight_stats_of_a_gated_sae_read_the_gate_bias():
    """A Gated SAE has no b_enc; its encoder bias is the gate's (what decides firing), not the magnitude path's."""
    from sae.architectures.gated import GatedConfig, GatedSAE

    sae = GatedSAE(GatedConfig(d_in=5, d_sae=7))
    with torch.no_grad():
        sae.b_gate.copy_(torch.arange(7.0))
        sae.b_mag.fill_(-1.0)
    stats = weight_stats(sae)
    assert torch.equal(stats["encoder_bias"], torch.arange(7.0, dtype=torch.float64))
    assert stats["encoder_norm"].shape == (7,)
