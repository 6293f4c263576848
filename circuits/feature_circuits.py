"""Sparse feature circuits (Marks et al. 2024) on a task, mapped to heads for scoring.

Input: a run directory with one SAE at every layer's ``hook_attn_out``, ``hook_mlp_out``
and ``hook_resid_post`` (``configs/feature_circuit.yaml``). The SAEs are spliced with their
error terms (the model's output is unchanged; the run records the largest logit
difference the splice makes). Node effects of patching clean → corrupted (the task's own
metric: IOI logit difference, greater-than probability difference) by integrated
gradients or attribution patching (``circuits.feature_attribution``), nodes kept above
the node threshold, edges between kept nodes, kept above the edge threshold;
faithfulness and completeness by mean ablation, at the threshold and as curves against
the number of latents kept (``circuits.feature_ablation``).

Head mapping, for the head-level ROC AUC against the ground truth: an attention-output
latent's pre-activation is a linear function of the attention output, which is the sum of
the heads' writes z_h W_O^h (plus b_O), so its change between clean and corrupted splits
exactly into one term per head, Δpre_h = Δ(z_h W_O^h) · w_enc (Kissane et al.'s direct
feature attribution, applied to the attention output rather than hook_z: the paper's
SAEs read the attention output; the decomposition is the same). A latent's effect at a
prompt and position is shared among the heads in proportion to |Δpre_h|, and a head's
score is the summed |effect| of its layer's latents, positions summed and prompts
averaged. An MLP's score is the summed |effect| of its output SAE's latents. Residual
latents and every error node are reported apart (per layer), not mapped to a component.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import einsum

from circuits.feature_ablation import FeatureAblator, circuit_of, curves, ranked_nodes, scores
from circuits.feature_attribution import (
    ERROR,
    NodeEffects,
    Site,
    bridge_runner,
    edge_attribution,
    kept_nodes,
    model_sites,
    node_attribution,
    site_activations,
)
from circuits.graph import Node
from sae.errors import ConfigError

TOP_NODES = 100
TOP_EDGES = 100


def load_site_saes(run_dir: str | Path | None, sites: list[Site], device) -> list:
    """The SAE of every site from ``run_dir`` (the first one found at each hook), frozen."""
    from sae.run_dir import find_saes
    from sae.saving import load_sae

    if run_dir is None:
        raise ConfigError(
            "feature-circuit needs --saes RUN_DIR: SAEs at every layer's hook_attn_out, hook_mlp_out and "
            "hook_resid_post (saelab train configs/feature_circuit.yaml --out RUN_DIR)"
        )
    by_hook = {}
    for entry in find_saes(run_dir):
        by_hook.setdefault(entry.hook, entry)
    missing = [s.hook for s in sites if s.hook not in by_hook]
    if missing:
        raise ConfigError(
            f"{run_dir}: no SAE at {', '.join(missing)} (feature-circuit needs one at every layer's "
            "hook_attn_out, hook_mlp_out and hook_resid_post: saelab train configs/feature_circuit.yaml)"
        )
    saes = []
    for s in sites:
        sae, _cfg = load_sae(by_hook[s.hook].path, device=device)
        if getattr(sae.cfg, "d_out", None) is not None:
            raise ConfigError(f"{by_hook[s.hook].path}: a transcoder, not an SAE of {s.hook}")
        saes.append(sae.eval().requires_grad_(False))
    return saes


@torch.no_grad()
def head_pre_changes(model, tokens: torch.Tensor, corrupt_tokens: torch.Tensor, sae, layer: int) -> torch.Tensor:
    """``[b, pos, n_heads, d_sae]``: each head's term of the change, clean → corrupted, of each
    attention-output latent's pre-activation, Δ(z_h W_O^h) · w_enc; summed over heads it is
    the whole change (b_O and the encoder bias cancel in a difference)."""
    name = f"blocks.{layer}.attn.hook_z"
    _, clean = model.run_with_cache(tokens, names_filter=[name])
    _, corrupt = model.run_with_cache(corrupt_tokens, names_filter=[name])
    dz = corrupt[name] - clean[name]  # [b, pos, head, d_head]
    writes = einsum(dz, model.W_O[layer].to(dz.dtype), "b p h dh, h dh d -> b p h d")
    w_enc, _ = sae.linear_encoder()
    return writes @ w_enc.to(writes.dtype)


def head_shares(dpre: torch.Tensor) -> torch.Tensor:
    """|Δpre_h| / Σ_h' |Δpre_h'| over the head axis (2); 0 where no head changes the latent."""
    mag = dpre.abs()
    return mag / mag.sum(2, keepdim=True).clamp_min(1e-12)


def component_scores(model, batch, sites: list[Site], saes: list, effects: NodeEffects) -> dict[Node, float]:
    """Head and MLP scores from the latents' per-position |effect| (module docstring)."""
    out: dict[Node, float] = {}
    for i, site in enumerate(sites):
        mag = effects.features[i].abs()  # [b, pos, d_sae]
        if site.kind == "attn":
            share = head_shares(head_pre_changes(model, batch.tokens, batch.corrupt_tokens, saes[i], site.layer))
            per_head = einsum(mag, share, "b p f, b p h f -> b h").mean(0)
            for h, v in enumerate(per_head.tolist()):
                out[Node("head", site.layer, h)] = v
        elif site.kind == "mlp":
            out[Node("mlp", site.layer)] = float(mag.sum((1, 2)).mean(0))
    return out


def node_name(sites: list[Site], i: int, j: int) -> str:
    return f"{sites[i].name}/{'err' if j == ERROR else j}"


@dataclass
class FeatureCircuit:
    """What ``saelab circuit --method feature-circuit`` reports: component scores, the
    top-level figures (faithfulness, completeness, n_nodes, ...) and the details."""

    node_scores: dict[Node, float]
    summary: dict
    details: dict
    forward_passes: int


def feature_circuit(
    model,
    batch,
    metric,
    saes: list,
    steps: int = 10,
    node_threshold: float = 0.1,
    edge_threshold: float = 0.01,
    progress: bool = False,
) -> FeatureCircuit:
    """The feature circuit of ``batch`` under ``metric(logits, batch)`` with ``saes`` (one per
    ``model_sites`` site, in that order)."""
    from sae.progress import progress_bar

    sites = model_sites(model.cfg.n_layers)
    if len(saes) != len(sites):
        raise ValueError(f"expected {len(sites)} SAEs (one per site), got {len(saes)}")
    run = bridge_runner(model, sites)
    timings: dict[str, float] = {}
    start = time.time()
    clean = site_activations(run, saes, batch.tokens)
    corrupt = site_activations(run, saes, batch.corrupt_tokens)
    with torch.no_grad():
        from circuits.feature_attribution import spliced

        plain = run(batch.tokens, None)
        splice_diff = float((run(batch.tokens, spliced(saes)) - plain).abs().max())

    bar = progress_bar(total=len(sites) * steps, desc="feature circuit: nodes", disable=not progress)
    effects = node_attribution(run, saes, batch.tokens, lambda lg: metric(lg, batch), clean, corrupt, steps, bar)
    bar.close()
    timings["nodes"] = time.time() - start

    t = time.time()
    kept = kept_nodes(effects, node_threshold)
    bar = progress_bar(total=sum(len(k) for k in kept[1:]), desc="feature circuit: edges", disable=not progress)
    edges = edge_attribution(run, saes, batch.tokens, clean, corrupt, effects, kept, bar)
    bar.close()
    f_tot, e_tot = effects.feature_totals(), effects.error_totals()
    last = len(sites) - 1
    for j in kept[last]:  # resid_{L-1} -> y: the node's own effect (the paper)
        edges[((last, j), ("y", 0))] = e_tot[last] if j == ERROR else float(f_tot[last][j])
    kept_edges = {k: v for k, v in edges.items() if abs(v) > edge_threshold}
    timings["edges"] = time.time() - t

    t = time.time()
    ablator = FeatureAblator(run, saes, batch, metric, corrupt)
    ranked = ranked_nodes(f_tot, e_tot)
    circuit = {(i, j) for i, js in enumerate(kept) for j in js}
    at_threshold = scores(ablator, circuit, "nodes")
    n_features = sum(1 for _, j in circuit if j != ERROR)
    errors_kept = scores(ablator, {n for n in circuit if n[1] != ERROR}, "keep")
    curve = curves(ablator, ranked, "nodes")
    curve_keep = curves(ablator, ranked, "keep")
    timings["ablation"] = time.time() - t

    t = time.time()
    components = component_scores(model, batch, sites, saes, effects)
    timings["head_mapping"] = time.time() - t

    n_needed = next((r["n_features"] for r in curve if r["faithfulness"] >= 0.8), None)
    top = [
        {"node": node_name(sites, i, j), "effect": float(f_tot[i][j]) if j != ERROR else e_tot[i]}
        for i, j, _ in ranked[:TOP_NODES]
    ]
    edge_rows = sorted(kept_edges.items(), key=lambda kv: -abs(kv[1]))[:TOP_EDGES]
    summary = {
        "faithfulness": at_threshold["faithfulness"],
        "completeness": at_threshold["completeness"],
        "n_nodes": n_features,
        "n_error_nodes": len(circuit) - n_features,
        "n_edges": len(kept_edges),
    }
    details = {
        "hook": "blocks.L.hook_attn_out / hook_mlp_out / hook_resid_post (SAEs spliced with error terms)",
        "attribution": "integrated gradients" if steps > 1 else "attribution patching",
        "ig_steps": steps,
        "node_threshold": node_threshold,
        "edge_threshold": edge_threshold,
        "splice_max_abs_logit_diff": splice_diff,
        "faithfulness_errors_kept": errors_kept["faithfulness"],
        "completeness_errors_kept": errors_kept["completeness"],
        "metric_full": at_threshold["metric_full"],
        "metric_empty": at_threshold["metric_empty"],
        "metric_empty_errors_kept": errors_kept["metric_empty"],
        "n_features_for_faithfulness_0.8": n_needed,
        "curves": {"errors_as_nodes": curve, "errors_kept": curve_keep},
        "error_effects": {sites[i].name: e for i, e in enumerate(e_tot)},
        "resid_scores": {
            sites[i].name: float(effects.features[i].abs().sum((1, 2)).mean(0))
            for i in range(len(sites))
            if sites[i].kind == "resid"
        },
        "top_nodes": top,
        "top_edges": [
            {
                "source": node_name(sites, *u),
                "target": "y" if d[0] == "y" else node_name(sites, *d),
                "effect": v,
            }
            for (u, d), v in edge_rows
        ],
        "ablation": "mean over the corrupted prompts of the same template, per position (latents and errors)",
        "node_score": "head: summed |latent effect| shared by per-head direct feature attribution of the "
        "attention-output latent (|delta pre-activation| per head); mlp: summed |latent effect| of its output SAE",
        "timings": timings,
    }
    passes = 2 + 2 + len(sites) * steps + sum(1 for d in range(1, len(sites)) if kept[d]) + 6 * len(curve)
    return FeatureCircuit(components, summary, details, passes)


def circuit_nodes(ranked, n_features: int) -> set:
    """The top ``n_features`` latents with the errors above their threshold (for callers)."""
    return circuit_of(ranked, n_features, "nodes")
