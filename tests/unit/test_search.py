"""The Search page's data: the token index against a hand count, explanation files in the
formats read, and a feature's place in circuit and graph documents."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.feature_places import circuit_places, feature_places, graph_places, site_hook
from app.search import by_explanation, by_token, prompt_top_features, read_explanations, token_index


def test_token_index_matches_a_hand_count():
    # 6 positions of tokens [0, 1, 2, 1, 2, 1]; feature 0 fired 4 times, 2 kept in its sample
    # (on positions 1 and 3: token 1, values 2 and 4); feature 1 fired once, on position 2 (token 2, 3.0)
    flat = np.array([0, 1, 2, 1, 2, 1])
    where = np.array([[1, 3, -1], [2, -1, -1]])
    value = np.array([[2.0, 4.0, 0.0], [3.0, 0.0, 0.0]])
    count = np.array([4, 1])
    t = token_index(where, value, count, flat, ["<s>", "a", "b"], per_token=5).to_pandas()
    row = t[(t.token_id == 1) & (t.feature == 0)].iloc[0]
    # each sample entry stands for 4/2 = 2 firings: est. sum 2·(2+4) = 12 over 3 occurrences of token 1
    assert row.score == pytest.approx(12 / 3)
    assert row.fire_rate == pytest.approx(min(2 * 2 / 3, 1.0))
    row = t[(t.token_id == 2) & (t.feature == 1)].iloc[0]
    assert row.score == pytest.approx(3.0 / 2) and row.fire_rate == pytest.approx(0.5)
    assert set(zip(t.token_id, t.feature, strict=True)) == {(1, 0), (2, 1)}
    assert by_token(t, "A").feature.tolist() == [0]  # case-insensitive
    assert by_token(t, "zzz").empty


def test_token_index_keeps_the_best_per_token():
    flat = np.zeros(10, dtype=int)
    where = np.array([[0], [1], [2]])
    value = np.array([[1.0], [3.0], [2.0]])
    t = token_index(where, value, np.array([1, 1, 1]), flat, ["x"], per_token=2).to_pandas()
    assert t.feature.tolist() == [1, 2] and t["rank"].tolist() == [0, 1]


def test_explanations_in_every_format(tmp_path):
    sae = tmp_path / "run" / "topk"
    sae.mkdir(parents=True)
    (sae / "autointerp.json").write_text(
        json.dumps({"explanations": [{"latent": 3, "explanation": "the word store", "score": 0.8}]})
    )
    (tmp_path / "run" / "saebench.json").write_text(
        json.dumps(
            {
                "kind": "autointerp",
                "sae": "topk",
                "eval_result_unstructured": {"5": {"explanation": "names of people", "score": 0.5}, "3": "dup"},
            }
        )
    )
    (tmp_path / "run" / "other.json").write_text(
        json.dumps({"kind": "autointerp", "sae": "another", "explanations": [{"latent": 9, "explanation": "x"}]})
    )
    table, files = read_explanations(sae, "topk", [tmp_path / "run"])
    assert table.feature.tolist() == [3, 5] and len(files) == 2
    assert table.set_index("feature").loc[3, "explanation"] == "the word store"  # the SAE's own file first
    assert table.set_index("feature").loc[5, "score"] == 0.5
    assert by_explanation(table, "Names").feature.tolist() == [5]
    assert by_explanation(table, "word store").feature.tolist() == [3]
    assert by_explanation(table, "store names").empty  # every word must match
    empty, files = read_explanations(tmp_path / "run" / "none", "none", [])
    assert empty.empty and files == []


def test_prompt_top_features():
    import torch

    codes = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 2.0], [3.0, 0.0, 0.5]])
    t = prompt_top_features(codes, k=3)
    assert t.feature.tolist() == [0, 2] and t["at"].tolist() == [2, 1] and t.positions.tolist() == [2, 2]


def test_feature_places(tmp_path):
    circuit = {
        "kind": "circuit",
        "method": "feature-circuit",
        "task": "ioi",
        "details": {
            "top_nodes": [{"node": "mlp0/7", "effect": 0.1}, {"node": "attn1/42", "effect": -0.3}],
            "top_edges": [{"source": "attn1/42", "target": "y", "effect": 0.2}],
        },
    }
    assert site_hook("attn1") == "blocks.1.hook_attn_out" and site_hook("x1") is None
    rows = circuit_places(circuit, "blocks.1.hook_attn_out", 42)
    assert [r["role"] for r in rows] == ["node", "edge out"] and rows[0]["rank"] == 2
    assert circuit_places(circuit, "blocks.1.hook_attn_out", 4) == []
    graph = {
        "nodes": [
            {"node_id": "1_42_3", "layer": "1", "feature": 42, "influence": 0.5},
            {"id": "a", "hook": "blocks.1.hook_attn_out", "latent": 42},
            {"id": "b", "hook": "blocks.2.hook_attn_out", "latent": 42},
        ],
        "links": [{"source": "1_42_3", "target": "a"}, {"source": "b", "target": "1_42_3"}],
    }
    rows = graph_places(graph, "blocks.1.hook_attn_out", "attn1", 42)
    assert [r["matched by"] for r in rows] == ["layer only", "hook"]
    assert (rows[0]["edges in"], rows[0]["edges out"], rows[1]["edges in"]) == (1, 1, 1)
    (tmp_path / "c.json").write_text(json.dumps(circuit))
    (tmp_path / "g.json").write_text(json.dumps({"kind": "graph", **graph}))
    found = feature_places([tmp_path], "blocks.1.hook_attn_out", "attn1", 42)
    assert [f["kind"] for f in found] == ["feature circuit", "graph"]


def test_circuit_tracer_graph_nodes_are_read_by_their_id():
    """circuit-tracer's JSON: ``feature`` is a Cantor number; the index is in ``layer_feature_pos``."""
    graph = {
        "metadata": {"transcoder_list": ["tc0", "tc1"]},
        "nodes": [
            {"node_id": "1_42_3", "feature": 999, "layer": "1", "feature_type": "cross layer transcoder"},
            {"node_id": "0_42_3", "feature": 42, "layer": "0", "feature_type": "cross layer transcoder"},
            {"node_id": "1_-1_3", "feature": 42, "layer": "1", "feature_type": "mlp reconstruction error"},
            {"node_id": "E_42_0", "feature": 42, "layer": "E", "feature_type": "embedding"},
        ],
        "links": [{"source": "1_42_3", "target": "27_5_3", "weight": 0.1}],
    }
    rows = graph_places(graph, "blocks.1.hook_mlp_out", "tc1", 42)
    assert [(r["node"], r["matched by"], r["edges out"]) for r in rows] == [("1_42_3", "transcoder_list", 1)]
    assert graph_places(graph, "blocks.1.hook_mlp_out", "tc1", 999) == []
    graph["metadata"] = {}
    assert [r["matched by"] for r in graph_places(graph, "blocks.0.hook_mlp_out", "x", 42)] == ["layer only"]
