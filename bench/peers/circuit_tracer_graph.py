"""Peer side of the attribution-graph check: circuit-tracer 0.5.0 reads saelab's graph JSON
and recomputes pruning and the scores with its own ``graph.py``.

Runs in bench/.peers/circuit_tracer. Payload (JSON on stdin): ``graph_json`` (a file
``saelab graph --out`` wrote), ``adjacency`` (a safetensors file holding ``A``, the
adjacency in circuit-tracer's layout [features][errors][tokens][logits], and
``probabilities``), ``n_features``, ``n_tokens``, ``n_layers``, ``node_threshold``,
``edge_threshold``. Prints one JSON line: the JSON's node and link counts as circuit-tracer's
``Model`` parsed them, and circuit-tracer's node mask, edge count, cumulative scores,
replacement and completeness scores.
"""

import json
import sys
from types import SimpleNamespace

import circuit_tracer
from circuit_tracer.frontend.graph_models import Model
from circuit_tracer.graph import compute_graph_scores, prune_graph
from safetensors.torch import load_file


def main():
    payload = json.loads(sys.stdin.read())
    with open(payload["graph_json"], encoding="utf-8") as f:
        doc = json.load(f)
    model = Model.model_validate(doc)
    tensors = load_file(payload["adjacency"])
    n_logits = int(tensors["probabilities"].shape[0])
    graph = SimpleNamespace(  # the attributes prune_graph and compute_graph_scores read
        adjacency_matrix=tensors["A"],
        logit_probabilities=tensors["probabilities"],
        input_tokens=list(range(payload["n_tokens"])),
        logit_targets=list(range(n_logits)),
        selected_features=list(range(payload["n_features"])),
        cfg=SimpleNamespace(n_layers=payload["n_layers"]),
    )
    node_mask, edge_mask, cumulative = prune_graph(graph, payload["node_threshold"], payload["edge_threshold"])
    replacement, completeness = compute_graph_scores(graph)
    out = {
        "peer_version": circuit_tracer.__version__,
        "n_nodes": len(model.nodes),
        "n_links": len(model.links),
        "node_ids": [n.node_id for n in model.nodes],
        "node_mask": node_mask.tolist(),
        "n_edges": int(edge_mask.sum()),
        "cumulative_scores": cumulative.tolist(),
        "replacement": replacement,
        "completeness": completeness,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
