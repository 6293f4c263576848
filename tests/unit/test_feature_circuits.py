"""Sparse feature circuits on toys whose effects are computed here by hand or by dense
patching: attribution patching against exact patching, integrated gradients against the
whole-site patch, edges against the closed-form Jacobian, faithfulness at both ends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from circuits.feature_ablation import FeatureAblator, circuit_of, curve_sizes, curves, ranked_nodes, scores
from circuits.feature_attribution import (
    ERROR,
    edge_attribution,
    kept_nodes,
    node_attribution,
    site_activations,
    spliced,
)

B, P, D, S, V = 6, 4, 5, 7, 3  # prompts, positions, width, latents, outputs


class ToySAE:
    """A ReLU SAE with random weights: encode/decode, all the method reads."""

    def __init__(self, gen):
        self.W_enc = torch.randn(D, S, generator=gen, dtype=torch.float64)
        self.b_enc = torch.randn(S, generator=gen, dtype=torch.float64) * 0.3
        self.W_dec = torch.randn(S, D, generator=gen, dtype=torch.float64) * 0.5
        self.b_dec = torch.randn(D, generator=gen, dtype=torch.float64) * 0.1

    def pre(self, x):
        return x @ self.W_enc + self.b_enc

    def encode(self, x):
        return torch.relu(self.pre(x))

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


class Toy:
    """Two sites: a0 = x A; a1 = g(cumsum_pos(a0)) B (g the identity or tanh); out = a1 U.
    The cumulative sum mixes positions as attention does."""

    def __init__(self, seed=0, nonlinear=False):
        gen = torch.Generator().manual_seed(seed)
        self.A = torch.randn(D, D, generator=gen, dtype=torch.float64)
        self.B = torch.randn(D, D, generator=gen, dtype=torch.float64) * 0.5
        self.U = torch.randn(D, V, generator=gen, dtype=torch.float64)
        self.g = torch.tanh if nonlinear else (lambda t: t)
        self.saes = [ToySAE(gen), ToySAE(gen)]
        self.clean = torch.randn(B, P, D, generator=gen, dtype=torch.float64)
        self.corrupt = torch.randn(B, P, D, generator=gen, dtype=torch.float64)

    def run(self, x, site_fn=None):
        fn = site_fn or (lambda i, a: a)
        a0 = fn(0, x @ self.A)
        a1 = fn(1, self.g(a0.cumsum(1)) @ self.B)
        return a1 @ self.U

    @staticmethod
    def metric(out):  # one value per prompt: output 0 minus output 1 at the last position
        return out[:, -1, 0] - out[:, -1, 1]


def _prepare(toy):
    clean = site_activations(toy.run, toy.saes, toy.clean)
    corrupt = site_activations(toy.run, toy.saes, toy.corrupt)
    return clean, corrupt


def _patched_metric(toy, clean, corrupt, site, latent):
    """Dense reference: the mean metric with one node of one site patched to its corrupted
    value at every position, the rest of that site clean, later sites computed from input."""

    def fn(i, act):
        if i != site:
            return act
        f, e = clean[i].f.clone(), clean[i].e.clone()
        if latent == ERROR:
            e = corrupt[i].e
        elif latent is None:
            f, e = corrupt[i].f, corrupt[i].e
        else:
            f[..., latent] = corrupt[i].f[..., latent]
        return toy.saes[i].decode(f) + e

    return float(toy.metric(toy.run(toy.clean, fn)).mean())


def test_splice_with_error_term_leaves_the_output_unchanged():
    toy = Toy(nonlinear=True)
    torch.testing.assert_close(toy.run(toy.clean, spliced(toy.saes)), toy.run(toy.clean), rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 4])
def test_linear_metric_attribution_equals_exact_patching(steps):
    toy = Toy(seed=1)
    clean, corrupt = _prepare(toy)
    eff = node_attribution(toy.run, toy.saes, toy.clean, toy.metric, clean, corrupt, steps=steps)
    base = float(toy.metric(toy.run(toy.clean)).mean())
    for site in (0, 1):
        totals = eff.feature_totals()[site]
        for j in range(S):
            exact = _patched_metric(toy, clean, corrupt, site, j) - base
            assert float(totals[j]) == pytest.approx(exact, abs=1e-9)
        exact_err = _patched_metric(toy, clean, corrupt, site, ERROR) - base
        assert eff.error_totals()[site] == pytest.approx(exact_err, abs=1e-9)
    assert any(abs(float(t)) > 1e-3 for t in eff.feature_totals()[0])  # the toy has effects to find


def test_integrated_gradients_approach_the_whole_site_patch():
    """Completeness axiom: a site's IG effects (latents + error) sum to the effect of
    patching the whole site; the left Riemann sum converges to it as steps grow, which
    attribution patching (one step) does not."""
    toy = Toy(seed=2, nonlinear=True)
    clean, corrupt = _prepare(toy)
    base = float(toy.metric(toy.run(toy.clean)).mean())
    exact = _patched_metric(toy, clean, corrupt, 0, None) - base

    def site_total(steps):
        eff = node_attribution(toy.run, toy.saes, toy.clean, toy.metric, clean, corrupt, steps=steps)
        return float(eff.feature_totals()[0].sum()) + eff.error_totals()[0]

    err_ig = abs(site_total(100) - exact)
    err_attrib = abs(site_total(1) - exact)
    assert err_ig < 0.02 * abs(exact)
    assert err_attrib > 10 * err_ig


def test_edges_match_the_hand_computed_jacobian():
    """Edge (site0 u -> site1 d) = mean_b Σ_{p_d} Σ_{p_u <= p_d} ḡ_d[b,p_d] ∂d/∂u Δu[b,p_u]; in
    the linear toy ∂a1[p_d]/∂a0[p_u] = B for p_u <= p_d, so with the ReLU SAE
    ∂f1_i/∂f0_j = 1[pre1_i > 0] (W_dec0[j] B W_enc1[:, i])."""
    toy = Toy(seed=3)
    clean, corrupt = _prepare(toy)
    eff = node_attribution(toy.run, toy.saes, toy.clean, toy.metric, clean, corrupt, steps=3)
    kept = [[*range(S), ERROR], [*range(S), ERROR]]
    edges = edge_attribution(toy.run, toy.saes, toy.clean, clean, corrupt, eff, kept)
    s0, s1 = toy.saes
    mask = (s1.pre(clean[1].x) > 0).double()  # [b, p, S]
    df0, de0 = corrupt[0].f - clean[0].f, corrupt[0].e - clean[0].e
    cum_df0, cum_de0 = df0.cumsum(1), de0.cumsum(1)  # Σ over upstream positions p_u <= p_d
    g = eff.grad_f[1]
    ge = eff.grad_e[1]
    for i in range(S):
        for j in range(S):
            w = float(s0.W_dec[j] @ toy.B @ s1.W_enc[:, i])
            hand = float((g[..., i] * mask[..., i] * w * cum_df0[..., j]).sum(1).mean(0))
            assert edges[((0, j), (1, i))] == pytest.approx(hand, abs=1e-9)
        hand_err = float((g[..., i] * mask[..., i] * ((cum_de0 @ toy.B) @ s1.W_enc[:, i])).sum(1).mean(0))
        assert edges[((0, ERROR), (1, i))] == pytest.approx(hand_err, abs=1e-9)
    # into the downstream error e1 = x1 - decode(encode(x1)): ∂e1/∂x1 = I - (W_enc1 * mask) W_dec1
    for j in range(S):
        dx1 = cum_df0[..., j : j + 1] * (s0.W_dec[j] @ toy.B)  # [b, p, D]
        through = dx1 - torch.einsum("bpd,ds,bps,se->bpe", dx1, s1.W_enc, mask, s1.W_dec)
        hand = float((ge * through).sum((1, 2)).mean(0))
        assert edges[((0, j), (1, ERROR))] == pytest.approx(hand, abs=1e-9)
    assert any(abs(v) > 1e-3 for v in edges.values())


def test_edges_only_between_kept_nodes():
    toy = Toy(seed=4)
    clean, corrupt = _prepare(toy)
    eff = node_attribution(toy.run, toy.saes, toy.clean, toy.metric, clean, corrupt, steps=1)
    kept = kept_nodes(eff, threshold=float(eff.feature_totals()[1].abs().median()))
    edges = edge_attribution(toy.run, toy.saes, toy.clean, clean, corrupt, eff, kept)
    for (u, d), _ in edges.items():
        assert u[1] in kept[u[0]] and d[1] in kept[d[0]]


def _batch(toy):
    return SimpleNamespace(tokens=toy.clean, corrupt_tokens=toy.corrupt, template_ids=torch.tensor([0, 0, 0, 1, 1, 1]))


@pytest.mark.parametrize("errors", ["nodes", "keep"])
def test_faithfulness_is_one_for_everything_and_zero_for_nothing(errors):
    toy = Toy(seed=5, nonlinear=True)
    clean, corrupt = _prepare(toy)
    batch = _batch(toy)
    ablator = FeatureAblator(toy.run, toy.saes, batch, lambda out, b: toy.metric(out), corrupt)
    eff = node_attribution(toy.run, toy.saes, toy.clean, toy.metric, clean, corrupt, steps=2)
    ranked = ranked_nodes(eff.feature_totals(), eff.error_totals())
    rows = curves(ablator, ranked, errors)
    assert [r["n_features"] for r in rows] == curve_sizes(2 * S)
    assert rows[0]["faithfulness"] == pytest.approx(0.0, abs=1e-12)
    assert rows[-1]["faithfulness"] == pytest.approx(1.0, abs=1e-9)
    assert rows[0]["completeness"] == pytest.approx(1.0, abs=1e-9)  # nothing ablated: the model
    one_by_one = FeatureAblator(toy.run, toy.saes, batch, lambda out, b: toy.metric(out), corrupt, max_rows=B)
    again = curves(one_by_one, ranked, errors)  # batching the ablations changes nothing
    for key in ("faithfulness", "completeness"):
        assert [r[key] for r in again] == pytest.approx([r[key] for r in rows], abs=1e-12)
    assert rows[-1]["completeness"] == pytest.approx(0.0, abs=1e-9)

    # mean ablation by hand: every latent and error of both sites at its template mean
    def mean_of(t):
        out = torch.empty_like(t)
        for tid in (0, 1):
            sel = batch.template_ids == tid
            out[sel] = t[sel].mean(0, keepdim=True)
        return out

    def empty(i, act):
        e = act - toy.saes[i].decode(toy.saes[i].encode(act))
        return toy.saes[i].decode(mean_of(corrupt[i].f)) + (e if errors == "keep" else mean_of(corrupt[i].e))

    hand_empty = float(toy.metric(toy.run(toy.clean, empty)).mean())
    assert scores(ablator, set(), errors)["metric_empty"] == pytest.approx(hand_empty, abs=1e-12)


def test_circuit_of_counts_latents_and_thresholds_errors_alike():
    ranked = [(0, 3, 5.0), (1, ERROR, 4.0), (1, 2, 3.0), (0, ERROR, 1.0), (0, 1, 0.5)]
    assert circuit_of(ranked, 0, "nodes") == set()
    assert circuit_of(ranked, 1, "nodes") == {(0, 3)}  # the error's 4.0 is below the latent's 5.0
    assert circuit_of(ranked, 2, "nodes") == {(0, 3), (1, ERROR), (1, 2)}
    assert circuit_of(ranked, 2, "keep") == {(0, 3), (1, 2)}
    assert circuit_of(ranked, 3, "nodes") == {n[:2] for n in ranked}
    assert curve_sizes(120) == [0, 1, 2, 5, 10, 20, 50, 100, 120]


def test_bench_resume_reads_documents_written_before_the_feature_circuit_options(tmp_path):
    """A results document made before MethodConfig had the feature-circuit fields was made
    with their defaults: ``bench circuits --resume`` reuses it, and not once they differ."""
    import json

    from bench.circuits import _reusable
    from circuits.methods import MethodConfig

    cfg = MethodConfig(n_prompts=10)
    new = ("sae_dir", "ig_steps", "node_threshold", "edge_threshold")
    doc = {"kind": "circuit", "config": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in new}}
    path = tmp_path / "circuit.json"
    path.write_text(json.dumps(doc))
    assert _reusable(path, cfg, 1) == doc
    assert _reusable(path, cfg.model_copy(update={"sae_dir": "elsewhere"}), 1) == doc  # where, not how
    assert _reusable(path, cfg.model_copy(update={"ig_steps": 3}), 1) is None


def test_bench_rows_carry_a_feature_circuits_own_figures_only():
    """The bench row of a feature circuit keeps the document's faithfulness, completeness,
    size and the curve's latents-for-0.8; other methods' rows get nothing extra."""
    from bench.circuits import feature_circuit_figures

    doc = {
        "method": "feature-circuit",
        **{"faithfulness": 0.61, "completeness": 0.2, "n_nodes": 40, "n_error_nodes": 3, "n_edges": 9},
        "details": {"n_features_for_faithfulness_0.8": 500, "curves": {}},
    }
    assert feature_circuit_figures(doc) == {
        **{"faithfulness": 0.61, "completeness": 0.2, "n_nodes": 40, "n_error_nodes": 3, "n_edges": 9},
        "n_features_for_faithfulness_0.8": 500,
    }
    assert feature_circuit_figures({**doc, "method": "eap"}) == {}


@pytest.mark.parametrize(
    ("config", "organism"),
    [("feature_circuit.yaml", "organism.yaml"), ("feature_circuit_b.yaml", "organism_b.yaml")],
)
def test_shipped_feature_circuit_configs_cover_every_site_of_their_organism(config, organism):
    """``bench circuits --feature-saes DIR`` needs DIR/<model> to hold an SAE at every site of
    that model: organism-b has more layers than the organism, so it has its own config."""
    from pathlib import Path

    import yaml

    from circuits.feature_attribution import model_sites

    root = Path(__file__).resolve().parents[2] / "configs"
    run = yaml.safe_load((root / config).read_text())
    n_layers = yaml.safe_load((root / organism).read_text())["n_layers"]
    assert run["data"]["model"] == Path(organism).stem.replace("_", "-")
    assert sorted(s["hook"] for s in run["saes"]) == sorted(s.hook for s in model_sites(n_layers))
