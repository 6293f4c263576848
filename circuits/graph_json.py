"""An attribution graph as the JSON that circuit-tracer's frontend and Neuronpedia read.

Field list and node ids from circuit-tracer 0.5.0 (PyPI), ``frontend/graph_models.py`` and
``utils/create_graph_files.py``: top level ``metadata`` / ``qParams`` / ``nodes`` / ``links``;
nodes with ``node_id, feature, layer (str), ctx_idx, feature_type, token_prob,
is_target_logit, run_idx, reverse_ctx_idx, jsNodeId, clerp, influence (cumulative score),
activation``; links ``{source, target, weight}`` with the raw signed ``A[target, source]``.
Only nodes on kept edges are written, plus every embedding and logit (as circuit-tracer).

Deviations, each deliberate: error nodes are ``"{layer}_-1_{pos}"`` (circuit-tracer 0.5.0
writes ``"0_{layer}_{pos}"``, which collides with the layer-0 feature ``{layer}`` at that
position, circuit-tracer#78; upstream moved to this form); per-layer transcoder features
keep circuit-tracer's ``feature_type`` ``"cross layer transcoder"`` (its frontend keys
feature panels on that string, and writes it for per-layer transcoders too); the constant
node is one extra node, ``feature_type`` ``"bias"``, ``node_id`` ``"bias"``, always written,
so that the links into each node sum to its value; a ``saelab`` key carries the scores.
"""

from __future__ import annotations

from circuits.attribution_graph import AttributionGraph
from circuits.graph_pruning import Pruned

SCHEMA_VERSION = 1
FEATURE_TYPE = "cross layer transcoder"
ERROR_TYPE = "mlp reconstruction error"


def cantor(x: int, y: int) -> int:
    """circuit-tracer's feature number of (layer, feature index)."""
    return (x + y) * (x + y + 1) // 2 + y


def _node(node_id: str, feature: int, layer: str, ctx_idx: int, feature_type: str, js: str | None = None, **extra):
    node = {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": ctx_idx,
        "feature_type": feature_type,
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": js or node_id,
        "clerp": "",
        "influence": None,
        "activation": None,
    }
    node.update(extra)
    return node


def nodes_of(graph: AttributionGraph, tokenizer, cumulative) -> list[dict]:
    """Every node of the graph, in adjacency order."""
    rm, lay = graph.replacement, graph.layout
    n_pos, n_layers = rm.n_pos, rm.weights.n_layers
    out = []
    for i, (layer, pos, feat) in enumerate(rm.features.index.tolist()):
        out.append(
            _node(
                f"{layer}_{feat}_{pos}",
                cantor(layer, feat),
                str(layer),
                pos,
                FEATURE_TYPE,
                js=f"{layer}_{feat}-0",
                influence=float(cumulative[i]),
                activation=float(rm.features.activation[i]),
            )
        )
    for j in range(lay.n_errors):
        layer, pos = divmod(j, n_pos)
        i = lay.n_features + j
        out.append(_node(f"{layer}_-1_{pos}", -1, str(layer), pos, ERROR_TYPE, influence=float(cumulative[i])))
    start = lay.inputs.start
    for pos, tok in enumerate(rm.run.tokens.tolist()):
        out.append(
            _node(
                f"E_{tok}_{pos}",
                pos,
                "E",
                pos,
                "embedding",
                js=f"E_{tok}-{pos}",
                clerp=tokenizer.decode([tok]),
                influence=float(cumulative[start + pos]),
            )
        )
    bias_influence = float(cumulative[start + n_pos])
    out.append(_node("bias", 0, "E", 0, "bias", clerp="biases and positions", influence=bias_influence))
    for k, (tok, p) in enumerate(zip(rm.target_tokens.tolist(), rm.target_probs.tolist(), strict=True)):
        layer = str(n_layers + 1)
        out.append(
            _node(
                f"{layer}_{tok}_{n_pos - 1}",
                tok,
                layer,
                n_pos - 1,
                "logit",
                js=f"L_{tok}-{n_pos - 1}",
                token_prob=p,
                is_target_logit=k == 0,
                clerp=f'Output "{tokenizer.decode([tok])}" (p={p:.3f})',
            )
        )
    return out


def graph_json(
    graph: AttributionGraph,
    pruned: Pruned,
    tokenizer,
    slug: str,
    scan: str,
    transcoder_list: list[str],
    node_threshold: float,
    summary: dict | None = None,
) -> dict:
    """The pruned graph as circuit-tracer's ``Model`` JSON (``create_graph_files``)."""
    nodes = nodes_of(graph, tokenizer, pruned.cumulative_scores.tolist())
    kept = pruned.node_mask.tolist()
    dsts, srcs = pruned.edge_mask.nonzero(as_tuple=True)
    weights = graph.adjacency[dsts, srcs].tolist()
    links = [
        {"source": nodes[s]["node_id"], "target": nodes[t]["node_id"], "weight": w}
        for s, t, w in zip(srcs.tolist(), dsts.tolist(), weights, strict=True)
        if kept[s] and kept[t] and w != 0.0
    ]
    connected = {link["source"] for link in links} | {link["target"] for link in links}
    used = [n for n in nodes if n["node_id"] in connected or n["feature_type"] in ("embedding", "logit", "bias")]
    tokens = graph.replacement.run.tokens.tolist()
    doc = {
        "metadata": {
            "slug": slug,
            "scan": scan,
            "transcoder_list": transcoder_list,
            "prompt_tokens": [tokenizer.decode([t]) for t in tokens],
            "prompt": graph.prompt,
            "node_threshold": node_threshold,
            "schema_version": SCHEMA_VERSION,
        },
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": used,
        "links": links,
    }
    if summary is not None:
        doc["saelab"] = summary
    return doc
