"""The Graph page's data: attribution-graph JSON files (circuit-tracer's format, as
``saelab graph --out`` writes them) found in the run directories, pruned by a threshold and
laid out for plotly (context position on x, layer on y)."""

from __future__ import annotations

from pathlib import Path

from app.run_dir import _result_documents, is_graph

ALWAYS = ("embedding", "logit", "bias")
COLORS = {
    "cross layer transcoder": "#1f77b4",
    "mlp reconstruction error": "#7f7f7f",
    "embedding": "#2ca02c",
    "logit": "#d62728",
    "bias": "#9467bd",
}


def find_graphs(run_dir: str | Path) -> list[tuple[Path, dict]]:
    """``(path, graph)`` of every attribution-graph JSON under ``run_dir``."""
    return [(path, doc) for path, doc in _result_documents(run_dir) if is_graph(doc)]


def prune(doc: dict, threshold: float) -> tuple[list[dict], list[dict]]:
    """The nodes whose cumulative influence is within ``threshold`` (circuit-tracer's frontend
    rule; embeddings, logits and the constant node always), and the links between them."""
    nodes = [
        n
        for n in doc["nodes"]
        if n["feature_type"] in ALWAYS or (n.get("influence") is not None and n["influence"] <= threshold)
    ]
    ids = {n["node_id"] for n in nodes}
    links = [link for link in doc["links"] if link["source"] in ids and link["target"] in ids]
    return nodes, links


def y_of(node: dict) -> float:
    """Embeddings (and the constant node) at −1, layer L at L, logits above the last layer."""
    return -1.0 if node["layer"] == "E" else float(node["layer"])


def feature_of(node: dict) -> tuple[int, int] | None:
    """``(layer, feature index)`` of a transcoder feature node (its id is ``layer_feature_pos``)."""
    if node["feature_type"] != "cross layer transcoder":
        return None
    layer, feature, _pos = node["node_id"].split("_")
    return int(layer), int(feature)


def figure(doc: dict, nodes: list[dict], links: list[dict]):
    """Nodes at (position, layer) with a small per-node offset; links as lines, blue for
    positive weights, red for negative, width by |weight|."""
    import plotly.graph_objects as go

    slot: dict[tuple, int] = {}
    where = {}
    for n in sorted(nodes, key=lambda n: -(n.get("influence") or 0.0)):
        key = (n["ctx_idx"], y_of(n))
        k = slot.get(key, 0)
        slot[key] = k + 1
        where[n["node_id"]] = (n["ctx_idx"] + 0.12 * (k % 7) - 0.36, y_of(n) + 0.08 * (k // 7))
    fig = go.Figure()
    top = max((abs(link["weight"]) for link in links), default=1.0) or 1.0
    for link in sorted(links, key=lambda link: abs(link["weight"]))[-400:]:
        (x0, y0), (x1, y1) = where[link["source"]], where[link["target"]]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={
                    "width": 0.5 + 4 * abs(link["weight"]) / top,
                    "color": "#1f77b4" if link["weight"] > 0 else "#d62728",
                },
                opacity=0.4,
                hoverinfo="skip",
                showlegend=False,
            )
        )
    for kind, color in COLORS.items():
        group = [n for n in nodes if n["feature_type"] == kind]
        if not group:
            continue
        fig.add_trace(
            go.Scatter(
                x=[where[n["node_id"]][0] for n in group],
                y=[where[n["node_id"]][1] for n in group],
                mode="markers",
                marker={"size": 9, "color": color},
                name=kind,
                text=[f"{n['node_id']} {n.get('clerp') or ''} act={n.get('activation')}" for n in group],
                hoverinfo="text",
            )
        )
    tokens = doc["metadata"].get("prompt_tokens") or []
    fig.update_layout(
        xaxis={"tickmode": "array", "tickvals": list(range(len(tokens))), "ticktext": tokens, "title": "position"},
        yaxis={"title": "layer (−1: embeddings)"},
        height=600,
        margin={"l": 40, "r": 20, "t": 30, "b": 40},
    )
    return fig
