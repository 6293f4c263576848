"""Plotly figures of a supervised-dictionary results document (``supervised.json``).

Pure functions of the results dict, shared by the HTML report and the explorer. Every
figure orders dictionaries the same way (supervised first, then task SAEs, the random
decoder, full-distribution SAEs) and gives each a fixed colour.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

KIND_ORDER = {"supervised": 0, "task": 1, "random_decoder": 2, "full": 3}


def dictionary_order(doc: dict) -> list[str]:
    keys = [k for k in doc["dictionaries"] if k in doc["results"]]
    return sorted(keys, key=lambda k: (KIND_ORDER.get(doc["dictionaries"][k]["kind"], 9), k))


def colours(doc: dict) -> dict[str, str]:
    palette = qualitative.Plotly + qualitative.Dark24
    return {k: palette[i % len(palette)] for i, k in enumerate(dictionary_order(doc))}


def _sections(doc: dict) -> list[str]:
    return [x["name"] for x in doc["cross_sections"]]


def _score_bars(doc: dict, evaluation: str, title: str, baseline: str | None, ytitle: str) -> go.Figure:
    fig = go.Figure()
    colour = colours(doc)
    sections = _sections(doc)
    for key in dictionary_order(doc):
        scores = doc["results"][key][evaluation]
        fig.add_bar(
            name=doc["dictionaries"][key]["label"],
            x=sections,
            marker_color=colour[key],
            y=[scores[x]["score"] if x in scores else None for x in sections],
        )
    if baseline == "mean_ablation":
        fig.add_scatter(
            name="mean ablation",
            x=sections,
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 40, "color": "black", "line": {"width": 3}},
            y=[doc["baselines"][x]["mean_ablation_ratio"] for x in sections],
        )
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis_title=ytitle,
        xaxis_title="cross-section",
        legend_title="dictionary",
        height=450,
    )
    return fig


def sufficiency_figure(doc: dict) -> go.Figure:
    return _score_bars(
        doc,
        "sufficiency",
        "Sufficiency: logit difference with a → â, relative to clean",
        "mean_ablation",
        "LD(â) / LD(clean)",
    )


def necessity_figure(doc: dict) -> go.Figure:
    return _score_bars(
        doc, "necessity", "Necessity: a → E[a] + (a − â)", None, "1 − |LD_meanabl − LD_int| / |LD_meanabl − LD_clean|"
    )


def _control_panels(doc: dict) -> list[tuple[str, str]]:
    """(cross-section, attribute) pairs whose counterfactual patch changes the prediction."""
    out = []
    for xs in _sections(doc):
        for attribute, entry in doc["baselines"][xs]["control"].items():
            if entry["informative"]:
                out.append((xs, attribute))
    return out


def control_figure(doc: dict) -> go.Figure:
    """Control success against the number of SAE features edited; supervised edits as lines."""
    panels = _control_panels(doc)
    if not panels:
        fig = go.Figure()
        fig.update_layout(title="Control: no counterfactual patch changes the prediction at these cross-sections")
        return fig
    fig = make_subplots(
        rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=[f"{xs}: edit {a}" for xs, a in panels]
    )
    colour = colours(doc)
    for col, (xs, attribute) in enumerate(panels, start=1):
        ks = [int(k) for k in doc["config"]["eval"]["ks"]]
        for key in dictionary_order(doc):
            ctrl = doc["results"][key]["control"].get(xs)
            if ctrl is None or attribute not in ctrl["attributes"]:
                continue
            entry = ctrl["attributes"][attribute]
            label = doc["dictionaries"][key]["label"]
            common = {"name": label, "legendgroup": key, "showlegend": col == 1, "line": {"color": colour[key]}}
            if "by_k" in entry:
                fig.add_scatter(
                    x=ks,
                    y=[entry["by_k"][str(k)]["success"] for k in ks],
                    mode="lines+markers",
                    row=1,
                    col=col,
                    **common,
                )
            elif "success" in entry:
                fig.add_scatter(
                    x=[min(ks), max(ks)],
                    y=[entry["success"]] * 2,
                    mode="lines",
                    row=1,
                    col=col,
                    **{**common, "line": {"color": colour[key], "dash": "dash"}},
                )
        flip = doc["baselines"][xs]["control"][attribute]["flip_rate"]
        fig.add_scatter(
            x=[min(ks), max(ks)],
            y=[1 - flip] * 2,
            mode="lines",
            name="no edit",
            legendgroup="none",
            showlegend=col == 1,
            line={"color": "grey", "dash": "dot"},
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="k (features edited)", row=1, col=col)
    fig.update_yaxes(title_text="success (top-1 = patch's)", range=[0, 1.05], row=1, col=1)
    fig.update_layout(
        title="Control: edits that move the prediction where the counterfactual patch does",
        height=420,
        legend_title="dictionary",
    )
    return fig


def edit_magnitude_figure(doc: dict) -> go.Figure:
    """Success against edit magnitude (weight removed) for every edit, as in the paper."""
    fig = go.Figure()
    colour = colours(doc)
    for key in dictionary_order(doc):
        xs_, ys, text = [], [], []
        for xs, a in _control_panels(doc):
            ctrl = doc["results"][key]["control"].get(xs)
            if ctrl is None or a not in ctrl["attributes"]:
                continue
            entry = ctrl["attributes"][a]
            points = entry["by_k"].items() if "by_k" in entry else [("supervised", entry)]
            for k, e in points:
                xs_.append(e["edit_magnitude"])
                ys.append(e["success"])
                text.append(f"{xs}, {a}, k={k}")
        if xs_:
            fig.add_scatter(
                x=xs_,
                y=ys,
                text=text,
                mode="markers",
                name=doc["dictionaries"][key]["label"],
                marker={"color": colour[key], "size": 9},
            )
    fig.update_layout(
        title="Control success against edit magnitude (summed weight of removed features)",
        xaxis_title="edit magnitude",
        yaxis_title="success",
        height=420,
        legend_title="dictionary",
    )
    return fig


def interpretability_figure(doc: dict) -> go.Figure:
    """Fraction of live features with F1 ≥ t, and the causal check, per cross-section."""
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("features with F1 ≥ t", "ablate F1 < t' (sufficiency)", "ablate F1 ≥ t' (necessity)"),
    )
    colour = colours(doc)
    sections = _sections(doc)
    for key in dictionary_order(doc):
        interp = doc["results"][key]["interpretability"]
        common = {"name": doc["dictionaries"][key]["label"], "marker_color": colour[key], "legendgroup": key}
        values = (
            [interp[x]["fraction_interpretable"] if x in interp else None for x in sections],
            [interp[x]["causal"]["sufficiency"] if x in interp else None for x in sections],
            [interp[x]["causal"]["necessity"] if x in interp else None for x in sections],
        )
        for col, y in enumerate(values, start=1):
            fig.add_bar(x=sections, y=y, showlegend=col == 1, row=1, col=col, **common)
    t, tc = doc["config"]["eval"]["f1_threshold"], doc["config"]["eval"]["causal_threshold"]
    fig.update_layout(
        title=f"Interpretability: F1 against attribute predicates (t = {t}, t' = {tc})",
        barmode="group",
        height=450,
        legend_title="dictionary",
    )
    return fig


def coverage_figure(doc: dict) -> go.Figure:
    """Per dictionary and attribute: the mean over values of the best F1 any feature reaches."""
    xs = doc.get("primary_cross_section")
    keys = [k for k in dictionary_order(doc) if xs in doc["results"][k]["interpretability"]]
    attrs = ["IO", "S", "Pos"]
    z = [[doc["results"][k]["interpretability"][xs]["coverage"][a] for a in attrs] for k in keys]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=attrs,
            y=[doc["dictionaries"][k]["label"] for k in keys],
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            text=[[f"{v:.2f}" for v in row] for row in z],
            texttemplate="%{text}",
        )
    )
    fig.update_layout(
        title=f"Attribute coverage at {xs}: best F1 reached for each value, averaged", height=120 + 30 * len(keys)
    )
    return fig


def all_figures(doc: dict) -> list[go.Figure]:
    return [
        sufficiency_figure(doc),
        necessity_figure(doc),
        control_figure(doc),
        edit_magnitude_figure(doc),
        interpretability_figure(doc),
        coverage_figure(doc),
    ]
