"""Figures of evaluation results: pure functions, results dict(s) in, plotly Figure out.

The report (``evals.sections``) and the explorer's Runs page both draw with these. Inputs
are the JSON the commands write, so a figure can be redrawn from a results file alone:

- ``sae`` / ``saes``: entries of ``results["saes"]`` of an ``eval`` results file (see
  ``evals.suite``): each has ``id``, ``name``, ``architecture``, ``hook``, ``metrics``
  (``l0``, ``fvu``, ``ce_loss_recovered_zero`` ...), ``density_histogram`` and, for
  ``attn.hook_z`` SAEs, ``attention``;
- ``synthetic``: ``results["synthetic"]`` (configuration name → ``{families: name → scores}``);
- ``claims``: ``results["claims"]`` (``table`` rows with ``{mean, sd, n}`` per metric);
- ``sweep``: a ``sweep_summary.json`` (kind ``sweep``: ``saes`` name → ``{l0, fvu, pca_fvu, ...}``).

Every function returns a figure even for empty input (with a note in its title), so a
page never breaks on a partial results file.
"""

from __future__ import annotations

import itertools

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
LABELS = {
    "fvu": "FVU (fraction of variance unexplained)",
    "explained_variance": "explained variance",
    "ce_loss_recovered_zero": "CE loss recovered (vs zero ablation)",
    "ce_loss_recovered_mean": "CE loss recovered (vs mean ablation)",
    "kl_div": "KL(clean ‖ spliced) (nats)",
    "delta_ce": "ΔCE spliced − clean (nats)",
    "dead_fraction": "dead fraction",
    "underused_fraction": "under-used fraction",
    "l0": "L0 (held-out)",
}


def _layout(fig: go.Figure, title: str, height: int = 420, **kwargs) -> go.Figure:
    fig.update_layout(
        title=title, height=height, template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 60}, **kwargs
    )
    return fig


def _colors(keys) -> dict:
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(dict.fromkeys(keys))}


def pareto(saes: list[dict], metric: str = "fvu") -> go.Figure:
    """L0 against ``metric`` (a key of ``metrics``), one series per architecture and hook
    point (SAEs of one series are joined in L0 order: a frontier)."""
    fig = go.Figure()
    rows = [s for s in saes if metric in s.get("metrics", {})]
    hooks = {s["hook"] for s in rows}

    def series(s):
        return s["architecture"] if len(hooks) < 2 else f"{s['architecture']} @ {s['hook']}"

    colors = _colors(series(s) for s in rows)
    for key, color in colors.items():
        pts = sorted((s for s in rows if series(s) == key), key=lambda s: s["metrics"]["l0"])
        fig.add_trace(
            go.Scatter(
                x=[s["metrics"]["l0"] for s in pts],
                y=[s["metrics"][metric] for s in pts],
                mode="lines+markers" if len(pts) > 1 else "markers",
                name=key,
                marker={"size": 10, "color": color},
                text=[f"{s['id']}<br>{s['hook']}" for s in pts],
                hovertemplate="%{text}<br>L0 %{x:.2f}<br>%{y:.4f}",
            )
        )
    title = f"L0 vs {LABELS.get(metric, metric)}" + ("" if rows else " (no data)")
    return _layout(fig, title, xaxis_title=LABELS["l0"], yaxis_title=LABELS.get(metric, metric))


def ce_by_condition(saes: list[dict]) -> go.Figure:
    """Cross-entropy of the model per SAE: clean, SAE spliced in, zero and mean ablation."""
    conditions = (
        ("ce_loss_clean", "clean"),
        ("ce_loss_with_sae", "SAE spliced in"),
        ("ce_loss_mean_ablation", "mean ablation"),
        ("ce_loss_zero_ablation", "zero ablation"),
    )
    rows = [s for s in saes if "ce_loss_clean" in s.get("metrics", {})]
    fig = go.Figure()
    for (key, label), color in zip(conditions, ("#2ca02c", "#1f77b4", "#ff7f0e", "#d62728"), strict=False):
        fig.add_trace(
            go.Bar(x=[s["id"] for s in rows], y=[s["metrics"][key] for s in rows], name=label, marker_color=color)
        )
    return _layout(
        fig,
        "Next-token CE by condition" + ("" if rows else " (no splice data)"),
        barmode="group",
        yaxis_title="CE (nats)",
        yaxis_type="log",
    )


def dead_dense(saes: list[dict]) -> go.Figure:
    """Dead, under-used and dense fractions of the latents, per SAE."""
    fig = go.Figure()
    for key, label, color in (
        ("dead_fraction", "dead", "#d62728"),
        ("underused_fraction", "under-used", "#ff7f0e"),
        ("dense_fraction", "dense", "#1f77b4"),
    ):
        fig.add_trace(
            go.Bar(x=[s["id"] for s in saes], y=[s["metrics"].get(key) for s in saes], name=label, marker_color=color)
        )
    return _layout(
        fig, "Latent usage on held-out tokens", barmode="group", yaxis_title="fraction of latents", yaxis_range=[0, 1]
    )


def density_histograms(saes: list[dict]) -> go.Figure:
    """log10 firing density of the latents, one line per SAE (dead latents in the legend)."""
    fig = go.Figure()
    colors = _colors(s["id"] for s in saes)
    for s in saes:
        h = s.get("density_histogram")
        if not h:
            continue
        edges = h["log10_edges"]
        centres = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
        fig.add_trace(
            go.Scatter(
                x=centres,
                y=h["counts"],
                mode="lines",
                line_shape="hvh",
                name=f"{s['id']} ({h['dead']} dead)",
                line={"color": colors[s["id"]]},
            )
        )
    return _layout(
        fig, "Feature density histograms", xaxis_title="log10 firing density", yaxis_title="latents per 0.25-decade bin"
    )


def synthetic_recovery(synthetic: dict) -> go.Figure:
    """MCC, MMCS, recall and precision of every family on every synthetic configuration."""
    fig = go.Figure()
    metrics = (("mcc", "MCC"), ("mmcs", "MMCS"), ("recall", "recall @ cos>0.9"), ("precision", "precision @ cos>0.9"))
    for (key, label), color in zip(metrics, PALETTE, strict=False):
        x, y = [], []
        for config, block in synthetic.items():
            for family, scores in block["families"].items():
                x.append([config, family])
                y.append(scores[key])
        fig.add_trace(go.Bar(x=[[a for a, _ in x], [b for _, b in x]], y=y, name=label, marker_color=color))
    return _layout(
        fig,
        "Synthetic ground truth: dictionary recovery" + ("" if synthetic else " (not run)"),
        barmode="group",
        yaxis_range=[0, 1.05],
        yaxis_title="score",
    )


def head_attribution(sae: dict) -> go.Figure:
    """Per-head decoder-norm attribution of a hook_z SAE: features whose largest share is
    each head, and the mean share over live features."""
    att = (sae.get("attention") or {}).get("head_attribution") or {}
    fig = go.Figure()
    if "dominant_head_counts" in att:
        heads = [f"head {h}" for h in range(att["n_heads"])]
        fig.add_trace(go.Bar(x=heads, y=att["dominant_head_counts"], name="features (dominant head)"))
        fig.add_trace(go.Scatter(x=heads, y=att["mean_share"], name="mean share", yaxis="y2", mode="lines+markers"))
        fig.update_layout(
            yaxis2={"overlaying": "y", "side": "right", "title": "mean decoder-norm share", "range": [0, 1]}
        )
    title = f"Head attribution: {sae.get('id', '?')}"
    if att:
        title += f" ({att.get('single_head_fraction', 0):.0%} of live features have > 50% on one head)"
    return _layout(fig, title, yaxis_title="live features")


def dfa_heatmap(example: dict, title: str = "") -> go.Figure:
    """DFA of one feature at one destination position: heads × source tokens."""
    tokens = [f"{i}:{t}" for i, t in enumerate(example["tokens"])]
    fig = go.Figure(
        go.Heatmap(
            z=example["dfa"],
            x=tokens,
            y=[f"head {h}" for h in example["heads"]],
            colorscale="RdBu",
            zmid=0,
            colorbar={"title": "DFA"},
        )
    )
    label = (
        f"feature {example['feature']} at '{example['tokens'][example['dst']]}' (pos {example['dst']}): "
        f"act {example['activation']:.3f}; Σ DFA {example['dfa_sum']:.3f} = pre − bias "
        f"{example['pre_activation'] - example['effective_bias']:.3f}"
    )
    return _layout(
        fig,
        (title + ": " if title else "") + label,
        height=260 + 18 * len(example["heads"]),
        xaxis_title="source position",
    )


def claims_bars(claims: dict, metric: str) -> go.Figure:
    """``metric`` mean ± sd over seeds per SAE of the claims suite."""
    rows = [r for r in claims.get("table", []) if r.get(metric, {}).get("mean") is not None]
    fig = go.Figure(
        go.Bar(
            x=[r["name"] for r in rows],
            y=[r[metric]["mean"] for r in rows],
            error_y={"type": "data", "array": [r[metric]["sd"] for r in rows]},
            marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))],
        )
    )
    return _layout(
        fig, f"{LABELS.get(metric, metric)}: mean ± sd over seeds", height=360, yaxis_title=LABELS.get(metric, metric)
    )


def sweep_pareto(sweeps: list[dict]) -> go.Figure:
    """Training sweeps: held-out L0 against FVU per SAE, with each hook's PCA baseline."""
    fig = go.Figure()
    rows = [(name, r) for s in sweeps for name, r in (s.get("saes") or {}).items() if "l0" in r]
    colors = _colors(r.get("architecture", name) for name, r in rows)
    for arch, color in colors.items():
        pts = [(n, r) for n, r in rows if r.get("architecture", n) == arch]
        fig.add_trace(
            go.Scatter(
                x=[r["l0"] for _, r in pts],
                y=[r["fvu"] for _, r in pts],
                mode="markers",
                name=arch,
                marker={"size": 10, "color": color},
                text=[f"{n}<br>{r.get('hook', '')}" for n, r in pts],
                hovertemplate="%{text}<br>L0 %{x:.2f}<br>FVU %{y:.4f}",
            )
        )
    pca = {r.get("hook"): r["pca_fvu"] for _, r in rows if "pca_fvu" in r}
    for hook, value in pca.items():
        fig.add_hline(y=value, line_dash="dot", annotation_text=f"PCA baseline ({hook})", line_color="#999")
    return _layout(
        fig,
        "Training sweep: held-out L0 vs FVU" + ("" if rows else " (no held-out scores)"),
        xaxis_title=LABELS["l0"],
        yaxis_title=LABELS["fvu"],
    )
