"""The feature-circuit method on the organism with small random SAEs at every site (the
method's arithmetic does not need trained ones; the acceptance test trains the real config):
the splice leaves the logits unchanged, the head decomposition is exact, and the CLI
writes a scored results document, its curves and figure."""

from __future__ import annotations

import json

import pytest
import torch

from circuits.feature_attribution import bridge_runner, model_sites, spliced
from circuits.feature_circuits import head_pre_changes, head_shares, load_site_saes
from circuits.tasks import TASKS
from saelab.cli import main


@pytest.fixture(scope="session")
def site_run_dir(tmp_path_factory, organism):
    """A run directory with a random TopK SAE (d_sae 32, k 4) at each of the 12 sites."""
    from sae.architectures import sae_class
    from sae.saving import save_sae

    model, _ = organism
    root = tmp_path_factory.mktemp("feature_circuit_saes")
    cls = sae_class("topk")
    torch.manual_seed(0)
    for site in model_sites(model.cfg.n_layers):
        sae = cls(cls.config_class(architecture="topk", d_in=128, d_sae=32, k=4))
        with torch.no_grad():
            sae.b_enc.normal_(0, 0.1)
        save_sae(sae, root / site.name, metadata={"hook": site.hook, "model": "organism"})
    return root


def test_splice_with_error_terms_leaves_the_logits_unchanged(organism, site_run_dir):
    model, tokenizer = organism
    sites = model_sites(model.cfg.n_layers)
    saes = load_site_saes(site_run_dir, sites, "cpu")
    batch = TASKS["ioi"].make_batch(tokenizer, 6, seed=0)
    run = bridge_runner(model, sites)
    with torch.no_grad():
        plain, with_saes = run(batch.tokens, None), run(batch.tokens, spliced(saes))
        without_error = run(batch.tokens, lambda i, act: saes[i].decode(saes[i].encode(act)))
    torch.testing.assert_close(with_saes, plain, rtol=0, atol=1e-4)
    assert (without_error - plain).abs().max() > 1.0  # random SAEs alone would change them


def test_head_terms_add_up_to_the_latent_change(organism, site_run_dir):
    model, tokenizer = organism
    sites = model_sites(model.cfg.n_layers)
    saes = load_site_saes(site_run_dir, sites, "cpu")
    batch = TASKS["ioi"].make_batch(tokenizer, 4, seed=1)
    layer, sae = 2, saes[3 * 2]  # attn2
    dpre = head_pre_changes(model, batch.tokens, batch.corrupt_tokens, sae, layer)
    name = f"blocks.{layer}.hook_attn_out"
    with torch.no_grad():
        _, clean = model.run_with_cache(batch.tokens, names_filter=[name])
        _, corrupt = model.run_with_cache(batch.corrupt_tokens, names_filter=[name])
    whole = sae.pre_acts(corrupt[name]) - sae.pre_acts(clean[name])
    torch.testing.assert_close(dpre.sum(2), whole, rtol=1e-4, atol=1e-4)
    share = head_shares(dpre)
    moved = dpre.abs().sum(2) > 0
    torch.testing.assert_close(share.sum(2)[moved], torch.ones(int(moved.sum())))


def test_cli_scores_a_feature_circuit(site_run_dir, tmp_path, capsys):
    out = tmp_path / "fc.json"
    argv = ["circuit", "ioi", "--method", "feature-circuit", "--saes", str(site_run_dir), "--n-prompts", "4"]
    assert main([*argv, "--ig-steps", "1", "--node-threshold", "1.0", "--json", "--quiet", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    assert doc["method"] == "feature-circuit" and 0 <= doc["roc_auc"] <= 1
    assert len(doc["heads"]) == 32 and set(doc["mlps"]) == {"mlp0", "mlp1", "mlp2", "mlp3"}
    assert {"faithfulness", "completeness", "n_nodes", "n_error_nodes", "n_edges"} <= set(doc)
    d = doc["details"]
    assert d["splice_max_abs_logit_diff"] < 1e-3
    for rows in d["curves"].values():
        assert rows[0]["n_features"] == 0 and rows[-1]["n_features"] == 12 * 32
        assert rows[0]["faithfulness"] == pytest.approx(0.0, abs=1e-9)
        assert rows[-1]["faithfulness"] == pytest.approx(1.0, abs=1e-3)
    assert out.with_suffix(".faithfulness.html").is_file()
