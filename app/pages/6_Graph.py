"""Graph: an attribution graph saved by ``saelab graph --out RUN_DIR/graph.json`` (the JSON
circuit-tracer and Neuronpedia read), drawn with layers on y and positions on x, pruned by
a cumulative-influence slider; feature nodes link to their feature dashboards."""

from __future__ import annotations

import streamlit as st

from app.common import existing_run_dirs, feature_url
from app.graph_view import feature_of, figure, find_graphs, prune

st.set_page_config(page_title="Graph", layout="wide")
st.title("Attribution graph")
EMPTY = (
    "No attribution graph here; `saelab graph PROMPT --transcoders TRANSCODERS --out RUN_DIR/graph.json` writes one."
)

graphs = []
for d in existing_run_dirs():
    graphs.extend(find_graphs(d))
if existing_run_dirs() and not graphs:
    st.info(EMPTY)
if graphs:
    names = [str(path) for path, _ in graphs]
    pick = st.selectbox("Graph", names)
    doc = graphs[names.index(pick)][1]
    meta = doc["metadata"]
    st.caption(f"Prompt: {meta.get('prompt', '')!r}")
    scores = doc.get("saelab") or {}
    if "replacement_score" in scores:
        c1, c2, c3 = st.columns(3)
        c1.metric("Replacement score", f"{scores['replacement_score']:.3f}")
        c2.metric("Completeness score", f"{scores['completeness_score']:.3f}")
        c3.metric("Nodes kept / all", f"{scores['n_nodes_pruned']} / {scores['n_nodes']}")
    saved = float(meta.get("node_threshold") or 0.8)
    threshold = st.slider("Pruning threshold (cumulative influence)", 0.0, 1.0, saved, 0.01)
    nodes, links = prune(doc, threshold)
    st.caption(
        f"{len(nodes)} nodes, {len(links)} links at threshold {threshold:.2f}. Attention patterns and LayerNorm "
        "scales are frozen in this graph: query/key effects are not attributed."
    )
    st.plotly_chart(figure(doc, nodes, links), use_container_width=True)
    transcoders = meta.get("transcoder_list") or []
    features = [n for n in nodes if feature_of(n) is not None]
    features.sort(key=lambda n: n.get("influence") or 0.0)
    if features:
        st.subheader("Features, most influential first")
        rows = []
        for n in features[:50]:
            layer, index = feature_of(n)
            name = transcoders[layer] if layer < len(transcoders) else None
            label = f"layer {layer} feature {index} at position {n['ctx_idx']}"
            rows.append(f"- [{label}]({feature_url(name, index)})" if name else f"- {label}")
        st.markdown("\n".join(rows))
