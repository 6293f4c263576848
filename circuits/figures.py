"""Plotly figures of circuit results: pure functions, results documents → Figure.

The notebooks, the HTML report (``circuits.report``) and the explorer all draw with
these, from the ``circuit`` results documents of ``circuits.results``.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuits.compare import model_of, runs, summary_rows

MARKER = {"symbol": "square-open", "size": 18, "color": "#111", "line": {"width": 2}}


def _where(doc: dict) -> str:
    """Which model and task a figure shows: the organism a run used is always named."""
    return f"{model_of(doc)} · {doc['task']}"


def _truth(doc: dict, ground_truth: str | None) -> str | None:
    return ground_truth or doc.get("ground_truth")


def score_grid(doc: dict) -> list[list[float | None]]:
    """``[n_layers][n_heads]`` head scores (None where the method gave none)."""
    grid: list[list[float | None]] = [[None] * doc["n_heads"] for _ in range(doc["n_layers"])]
    for h in doc["heads"]:
        grid[h["layer"]][h["index"]] = h["score"]
    return grid


def truth_heads(doc: dict, ground_truth: str | None = None) -> list[tuple[int, int]]:
    """(layer, head) of the ground truth's heads."""
    name = _truth(doc, ground_truth)
    heads = (doc.get("ground_truths") or {}).get(name, {}).get("heads", [])
    return [tuple(int(x) for x in h.split(".")) for h in heads]


def _heatmap_traces(doc: dict, ground_truth: str | None, showscale: bool = True) -> list:
    grid = score_grid(doc)
    top = max((abs(s) for row in grid for s in row if s is not None), default=1.0) or 1.0
    norm = [[None if s is None else s / top for s in row] for row in grid]
    heat = go.Heatmap(
        z=norm,
        x=list(range(doc["n_heads"])),
        y=list(range(doc["n_layers"])),
        customdata=grid,
        colorscale="Blues",
        zmin=0,
        zmax=1,
        showscale=showscale,
        colorbar={"title": "score / max"},
        hovertemplate="head %{y}.%{x}<br>score %{customdata:.4g}<extra></extra>",
    )
    gt = truth_heads(doc, ground_truth)
    marks = go.Scatter(
        x=[h for _, h in gt],
        y=[layer for layer, _ in gt],
        mode="markers",
        marker=MARKER,
        name=f"ground truth ({_truth(doc, ground_truth)})",
        hoverinfo="skip",
        showlegend=showscale,
    )
    return [heat, marks]


def head_heatmap(doc: dict, ground_truth: str | None = None) -> go.Figure:
    """Layer × head heatmap of one method's scores, ground-truth heads boxed."""
    fig = go.Figure(_heatmap_traces(doc, ground_truth))
    auc = doc["by_ground_truth"].get(_truth(doc, ground_truth), {}).get("roc_auc")
    title = f"{_where(doc)}: {doc['method']} head scores" + (f" (node ROC AUC {auc:.3f})" if auc is not None else "")
    fig.update_layout(
        title=title,
        xaxis_title="head",
        yaxis_title="layer",
        height=140 + 40 * doc["n_layers"],
        legend={"orientation": "h", "y": -0.25},
    )
    fig.update_yaxes(autorange="reversed", dtick=1)
    fig.update_xaxes(dtick=1)
    return fig


def heatmap_grid(docs: list[dict], ground_truth: str | None = None, cols: int = 2) -> go.Figure:
    """One layer × head heatmap per method (one task), ground-truth heads boxed."""
    docs = runs(docs)
    rows = -(-len(docs) // cols)
    titles = []
    for d in docs:
        auc = d["by_ground_truth"].get(_truth(d, ground_truth), {}).get("roc_auc")
        titles.append(d["method"] + (f" (AUC {auc:.3f})" if auc is not None else ""))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, vertical_spacing=0.12)
    for i, d in enumerate(docs):
        for trace in _heatmap_traces(d, ground_truth, showscale=i == 0):
            fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    fig.update_yaxes(autorange="reversed", dtick=1, title_text="layer")
    fig.update_xaxes(dtick=1, title_text="head")
    task = _where(docs[0]) if docs else ""
    fig.update_layout(
        title=f"{task}: head scores by method, ground truth ({_truth(docs[0], ground_truth) if docs else ''}) boxed",
        height=60 + rows * (100 + 45 * (docs[0]["n_layers"] if docs else 4)),
        legend={"orientation": "h", "y": -0.08},
    )
    return fig


def roc_figure(docs: list[dict], ground_truth: str | None = None) -> go.Figure:
    """Node ROC curves of several methods against one ground truth."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, name="chance", hoverinfo="skip"
        )
    )
    for d in runs(docs):
        scored = d["by_ground_truth"].get(_truth(d, ground_truth))
        if not scored or "roc_curve" not in scored:
            continue
        fpr, tpr = zip(*scored["roc_curve"], strict=True)
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines+markers",
                line_shape="linear",
                name=f"{d['method']} (AUC {scored['roc_auc']:.3f})",
            )
        )
    task = _where(docs[0]) if docs else ""
    fig.update_layout(
        title=f"{task}: node ROC against {_truth(docs[0], ground_truth) if docs else ''}",
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
        height=450,
    )
    return fig


def runtime_figure(docs: list[dict]) -> go.Figure:
    """Wall-clock seconds per method and task (log scale), end to end."""
    rows = {(r["model"], r["task"], r["method"]): r for r in summary_rows(docs)}
    several = len({model for model, _, _ in rows}) > 1
    fig = go.Figure()
    for model, task in sorted({(mo, t) for mo, t, _ in rows}):
        items = sorted(
            ((m, r) for (mo, t, m), r in rows.items() if (mo, t) == (model, task)), key=lambda mr: mr[1]["seconds"]
        )
        fig.add_trace(
            go.Bar(
                x=[m for m, _ in items],
                y=[r["seconds"] for _, r in items],
                name=f"{model} / {task}" if several else task,
                text=[f"{r['seconds']:.2g} s" for _, r in items],
                textposition="outside",
            )
        )
    fig.update_layout(
        title="Wall-clock time, end to end (ACDC: one run at the chosen τ)",
        yaxis_type="log",
        yaxis_title="seconds",
        barmode="group",
        height=420,
    )
    return fig


TABLE_COLUMNS = (
    "model",
    "task",
    "method",
    "ground_truth",
    "roc_auc",
    "roc_auc_sd",
    "edge_roc_auc",
    "edge_method_roc_auc",
    "pair_roc_auc",
    "f1",
    "tpr_tnr_harmonic_mean",
    "seconds",
    "fraction_of_acdc_time",
    "forward_passes",
)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def runtime_table(docs: list[dict], columns=TABLE_COLUMNS) -> go.Figure:
    """The comparison table (AUCs, F1, seconds, fraction of ACDC's time) as a figure."""
    rows = summary_rows(docs)
    fig = go.Figure(
        go.Table(
            header={"values": list(columns), "fill_color": "#eee"},
            cells={"values": [[_fmt(r.get(c)) for r in rows] for c in columns]},
        )
    )
    fig.update_layout(title="Methods side by side", height=120 + 26 * len(rows))
    return fig


def sweep_figure(doc: dict) -> go.Figure:
    """Node ROC AUC (mean ± sd over seeds) against every ground truth along a sweep."""
    sw = doc["sweep"]
    fig = go.Figure()
    names = list(sw["rows"][0]["by_ground_truth"]) if sw["rows"] else []
    x = [str(r["value"]) for r in sw["rows"]]
    for name in names:
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[r["by_ground_truth"][name]["roc_auc_mean"] for r in sw["rows"]],
                mode="lines+markers",
                error_y={"type": "data", "array": [r["by_ground_truth"][name]["roc_auc_sd"] for r in sw["rows"]]},
                name=name,
            )
        )
    fig.add_hline(y=0.85, line_dash="dot", annotation_text="0.85", line_color="#999")
    fig.update_layout(
        title=f"{doc['task']}: discrete-SAE node ROC AUC vs {sw['parameter']} ({len(sw['seeds'])} seeds)",
        xaxis_title=sw["parameter"],
        yaxis_title="node ROC AUC",
        xaxis_type="category",
        height=420,
    )
    return fig


def faithfulness_curves(doc: dict) -> go.Figure:
    """A feature circuit's faithfulness and completeness against the number of latents kept
    (log x axis; errors as nodes solid, errors kept clean dashed)."""
    fig = go.Figure()
    curves = doc["details"]["curves"]
    styles = {"errors_as_nodes": "solid", "errors_kept": "dash"}
    for variant, rows in curves.items():
        xs = [max(r["n_features"], 0.5) for r in rows]  # 0 latents drawn at 0.5 on the log axis
        for key, color in (("faithfulness", "#1f77b4"), ("completeness", "#d62728")):
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=[r[key] for r in rows],
                    mode="lines+markers",
                    name=f"{key} ({variant.replace('_', ' ')})",
                    line={"color": color, "dash": styles.get(variant, "dot")},
                    customdata=[[r["n_features"], r["n_errors"]] for r in rows],
                    hovertemplate="%{customdata[0]} latents, %{customdata[1]} error nodes: %{y:.3f}<extra></extra>",
                )
            )
    fig.update_layout(
        title=f"Feature circuit · {_where(doc)}: mean ablation",
        xaxis={"type": "log", "title": "latents kept (0 drawn at 0.5)"},
        yaxis={"title": "fraction of the metric (m(C) - m(∅)) / (m(M) - m(∅))"},
        template="plotly_white",
    )
    return fig
