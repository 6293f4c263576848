"""Attribution graphs on the organism (circuits.attribution_graph): the replacement model,
its edges, the graph JSON and ``saelab graph``. Random-weight transcoders: nothing here
needs trained features, only the bookkeeping to be exact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from circuits.attribution_graph import build_graph
from circuits.graph_json import graph_json
from circuits.replacement_model import _raw

PROMPT = "When Mary and John went to the store, John gave a drink to"
SCHEMA = Path(__file__).resolve().parents[2] / "circuits" / "schemas" / "attribution_graph.schema.json"
MLP_IN, MLP_OUT = "blocks.{}.mlp.hook_in", "blocks.{}.hook_mlp_out"


def random_transcoders(d: int, n_layers: int, d_sae: int = 64, k: int = 4, skip_layer: int | None = 1) -> list:
    """TopK transcoders with random weights and non-zero biases; one with a skip path."""
    from sae.architectures import sae_class

    cls = sae_class("topk")
    out = []
    for layer in range(n_layers):
        torch.manual_seed(layer)
        skip = layer == skip_layer
        cfg = cls.config_class(
            architecture="topk", d_in=d, d_sae=d_sae, k=k, d_out=d, apply_b_dec_to_input=False, skip=skip
        )
        tc = cls(cfg)
        with torch.no_grad():
            tc.b_enc.normal_(0, 0.5)
            tc.b_dec.normal_(0, 0.5)
            if skip:
                tc.W_skip.normal_(0, 0.05)
        out.append(tc.eval().requires_grad_(False))
    return out


@pytest.fixture(scope="module")
def transcoders(organism):
    model, _ = organism
    return random_transcoders(model.cfg.d_model, model.cfg.n_layers)


@pytest.fixture(scope="module")
def graph(organism, transcoders):
    model, _ = organism
    return build_graph(model, transcoders, PROMPT, max_n_logits=3, desired_logit_prob=0.999)


def true_targets(graph, transcoders) -> torch.Tensor:
    """Feature pre-activations and demeaned target logits read off the true model's run."""
    rm = graph.replacement
    idx = rm.features.index
    pre = torch.stack(
        [
            rm.run.mlp_in[layer][pos] @ transcoders[layer].W_enc[:, feat] + transcoders[layer].b_enc[feat]
            for layer, pos, feat in idx.tolist()
        ]
    )
    logits = rm.run.logits
    return torch.cat([pre, logits[rm.target_tokens] - logits.mean()])


def test_edges_recompute_every_target(graph, transcoders):
    rm, lay, A = graph.replacement, graph.layout, graph.adjacency
    assert lay.n_features > 0 and lay.n_logits >= 1
    rows = torch.cat([A[: lay.n_features], A[lay.logits]])
    truth = true_targets(graph, transcoders)
    torch.testing.assert_close(rows.sum(1), truth, atol=2e-5, rtol=1e-5)
    # a TopK feature's activation is its pre-activation: the in-edges recompute the activation
    torch.testing.assert_close(rm.features.activation, truth[: lay.n_features], atol=2e-5, rtol=1e-5)
    # sources have no in-edges, logits no out-edges, and nothing reads a later layer
    assert not A[lay.errors].any() and not A[lay.inputs].any() and not A[:, lay.logits].any()
    layers = rm.features.index[:, 0]
    later = layers[:, None] <= layers[None, :]
    assert not A[: lay.n_features, : lay.n_features][later].any()


def test_replacement_model_reproduces_all_logits(organism, graph):
    """At c = 1 the frozen model (errors included) is the model: every logit, not only the targets."""
    model, _ = organism
    rm = graph.replacement
    everything = dataclasses.replace(rm, target_tokens=torch.arange(model.cfg.d_vocab))
    out = everything.targets_at_prompt()[rm.n_features :]
    with torch.no_grad():
        logits = model(rm.run.tokens[None])[0, -1]
    torch.testing.assert_close(out, logits - logits.mean(), atol=2e-5, rtol=1e-5)


def test_constant_node_and_errors_matter(graph):
    """Dropping the constant node or the errors breaks the recomputation: both carry weight."""
    lay, A = graph.layout, graph.adjacency
    bias_col = lay.inputs.stop - 1
    assert A[lay.logits, bias_col].abs().max() > 1e-3
    assert A[lay.logits][:, lay.errors].abs().max() > 1e-3
    replacement, completeness = graph.scores()
    assert 0.0 < replacement < 1.0 and 0.0 < completeness < 1.0


@pytest.fixture(scope="module")
def relu_gpt2(organism_tokenizer):
    """A random GPT-2 whose MLPs are ReLU: a ReLU transcoder with the MLP's weights is exact."""
    from transformers import GPT2Config

    from sae.model import random_model

    cfg = GPT2Config(
        n_layer=2, n_head=4, n_embd=32, n_positions=32, vocab_size=len(organism_tokenizer), activation_function="relu"
    )
    return random_model(cfg, organism_tokenizer, seed=1)


def test_exact_transcoders_give_zero_errors_and_full_scores(relu_gpt2):
    from sae.architectures import sae_class

    model, _ = relu_gpt2
    cls = sae_class("relu")
    exact = []
    for block in _raw(model.original_model.transformer).h:
        mlp = _raw(_raw(block).mlp)
        c_fc, c_proj = _raw(mlp.c_fc), _raw(mlp.c_proj)
        d, d_mlp = c_fc.weight.shape
        tc = cls(cls.config_class(architecture="relu", d_in=d, d_sae=d_mlp, d_out=d))
        with torch.no_grad():
            tc.W_enc.copy_(c_fc.weight)
            tc.b_enc.copy_(c_fc.bias)
            tc.W_dec.copy_(c_proj.weight)
            tc.b_dec.copy_(c_proj.bias)
        exact.append(tc.eval().requires_grad_(False))
    graph = build_graph(model, exact, "Mary gave a drink to John", max_n_logits=2, desired_logit_prob=0.999)
    rm = graph.replacement
    assert rm.errors.abs().max() < 1e-5
    # zero error nodes: the replacement model alone reproduces the model's logits
    everything = dataclasses.replace(rm, target_tokens=torch.arange(model.cfg.d_vocab))
    c = torch.ones(1, rm.n_sources)
    c[:, graph.layout.errors] = 0
    with torch.no_grad():
        out = everything.forward(c)[0, rm.n_features :]
        logits = model(rm.run.tokens[None])[0, -1]
    torch.testing.assert_close(out, logits - logits.mean(), atol=1e-5, rtol=1e-5)
    replacement, completeness = graph.scores()
    assert replacement == pytest.approx(1.0, abs=1e-4)
    assert completeness == pytest.approx(1.0, abs=1e-4)


def validate(doc: dict) -> None:
    import jsonschema

    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(doc)


def test_graph_json_validates_and_recomputes_logits(graph, organism):
    _, tokenizer = organism
    full = graph.prune(1.0, 1.0)
    doc = graph_json(graph, full, tokenizer, "ioi", "saelab:organism", ["tc0", "tc1", "tc2", "tc3"], 1.0)
    validate(doc)
    ids = [n["node_id"] for n in doc["nodes"]]
    assert len(ids) == len(set(ids)), "node ids collide"
    assert {link["source"] for link in doc["links"]} | {link["target"] for link in doc["links"]} <= set(ids)
    targets = graph.replacement.targets_at_prompt()[graph.layout.n_features :]
    logits = [n for n in doc["nodes"] if n["feature_type"] == "logit"]
    assert [n["is_target_logit"] for n in logits] == [True] + [False] * (len(logits) - 1)
    for node, value in zip(logits, targets, strict=True):
        into = sum(link["weight"] for link in doc["links"] if link["target"] == node["node_id"])
        assert into == pytest.approx(float(value), abs=1e-4)
    pruned = graph.prune(0.8, 0.98)
    small = graph_json(graph, pruned, tokenizer, "ioi", "saelab:organism", [], 0.8)
    validate(small)
    assert len(small["nodes"]) < len(doc["nodes"])
    bad = json.loads(json.dumps(small))
    bad["nodes"][0].pop("jsNodeId")
    with pytest.raises(Exception, match="jsNodeId"):
        validate(bad)


def test_saelab_graph_cli(transcoders, tmp_path, capsys):
    from sae.saving import save_sae
    from saelab.cli import main

    run = tmp_path / "tcs"
    for layer, tc in enumerate(transcoders):
        meta = {"hook": MLP_IN.format(layer), "hook_out": MLP_OUT.format(layer), "model": "organism"}
        save_sae(tc, run / f"tc{layer}", metadata=meta)
    out = tmp_path / "graph.json"
    assert main(["graph", PROMPT, "--transcoders", str(run), "--out", str(out), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("replacement_score", "completeness_score", "n_nodes", "n_nodes_pruned", "kept_fraction"):
        assert key in summary
    assert 0 < summary["n_nodes_pruned"] < summary["n_nodes"]
    assert 0 < summary["replacement_score_without_constant"] <= 1
    assert summary["kept_fraction"] == pytest.approx(summary["n_nodes_pruned"] / summary["n_nodes"])
    doc = json.loads(out.read_text())
    validate(doc)
    assert doc["metadata"]["transcoder_list"] == ["tc0", "tc1", "tc2", "tc3"]
    assert doc["saelab"]["replacement_score"] == summary["replacement_score"]


def test_edges_match_finite_differences_in_the_frozen_bridge(organism, graph, transcoders):
    """methods-2.md §F: in the model with attention patterns, LayerNorm scales and every MLP
    output frozen (bar a skip transcoder's linear path), adding δ·W_dec[f] at a feature's
    (layer, pos) moves a target by A[t,s]·δ/a_s. Run through the bridge's own hooks:
    independent of the explicit frozen model."""
    model, _ = organism
    rm, lay, A = graph.replacement, graph.layout, graph.adjacency
    run = rm.run
    frozen = {}
    for layer in range(model.cfg.n_layers):
        frozen[f"blocks.{layer}.ln1.hook_scale"] = run.ln1_scale[layer][None, :, None]
        frozen[f"blocks.{layer}.ln2.hook_scale"] = run.ln2_scale[layer][None, :, None]
        frozen[f"blocks.{layer}.attn.hook_pattern"] = run.pattern[layer][None]
    frozen["ln_final.hook_scale"] = run.ln_final_scale[None, :, None]

    def targets(extra: dict[int, torch.Tensor]) -> torch.Tensor:
        hooks = [(name, lambda act, hook, v=v: v.expand_as(act).clone()) for name, v in frozen.items()]
        store = {}

        def mlp_out(act, hook, layer):
            # frozen, except a skip transcoder's linear path (live, as circuit-tracer's
            # skip + (mlp_out - skip).detach())
            out = run.mlp_out[layer] + extra.get(layer, 0)
            skip = transcoders[layer].skip_output(store[layer] - run.mlp_in[layer])
            if skip is not None:
                out = out + skip
            return out[None].clone()

        for layer in range(model.cfg.n_layers):
            hooks.append((f"blocks.{layer}.mlp.hook_in", lambda act, hook, la=layer: store.__setitem__(la, act[0])))
            hooks.append((f"blocks.{layer}.hook_mlp_out", lambda act, hook, la=layer: mlp_out(act, hook, la)))
        with torch.no_grad():
            logits = model.run_with_hooks(run.tokens[None], fwd_hooks=hooks)[0, -1]
        pre = torch.stack(
            [
                store[la][p] @ transcoders[la].W_enc[:, f] + transcoders[la].b_enc[f]
                for la, p, f in rm.features.index.tolist()
            ]
        )
        return torch.cat([pre, logits[rm.target_tokens] - logits.mean()])

    base = targets({})
    torch.testing.assert_close(base, graph.replacement.targets_at_prompt(), atol=2e-5, rtol=1e-5)
    rows = torch.cat([torch.arange(lay.n_features), torch.arange(lay.n - lay.n_logits, lay.n)])
    layers = rm.features.index[:, 0]
    # the strongest source feature of the first layer, and one error node
    first = int(torch.nonzero(layers == 0)[A[rows][:, : lay.n_features][:, layers == 0].abs().sum(0).argmax()])
    layer, pos, feat = rm.features.index[first].tolist()
    delta = 0.5
    bump = torch.zeros_like(run.mlp_out[0])
    bump[pos] = delta * transcoders[layer].W_dec[feat]
    moved = targets({layer: bump})
    expected = A[rows, first] * delta / rm.features.activation[first]
    torch.testing.assert_close(moved - base, expected, atol=5e-4, rtol=1e-3)
    assert expected.abs().max() > 1e-2  # the check is not vacuous
    err_layer, err_pos = 1, rm.n_pos - 1
    col = lay.n_features + err_layer * rm.n_pos + err_pos
    bump = torch.zeros_like(run.mlp_out[0])
    bump[err_pos] = delta * rm.errors[err_layer, err_pos]
    moved = targets({err_layer: bump})
    torch.testing.assert_close(moved - base, A[rows, col] * delta, atol=5e-4, rtol=1e-3)


def test_circuit_tracer_reads_the_graph_and_agrees_on_pruning_and_scores(graph, organism, tmp_path):
    """circuit-tracer 0.5.0 itself (the peer venv, ``bench/peers.py``): its pydantic ``Model``
    parses our JSON, and its ``prune_graph`` / ``compute_graph_scores`` on our adjacency
    (without the constant node, which it does not have) give our masks and scores."""
    from safetensors.torch import save_file

    from bench.peers import run_peer, venv
    from circuits.graph_pruning import Layout, prune_graph

    if not (venv("circuit_tracer") / ".saelab-pins.json").exists():
        pytest.skip("no circuit_tracer peer venv: build it with bench.peers.peer_python(peer='circuit_tracer')")
    _, tokenizer = organism
    pruned = graph.prune(0.8, 0.98)
    doc = graph_json(graph, pruned, tokenizer, "ioi", "saelab:organism", ["tc0", "tc1", "tc2", "tc3"], 0.8)
    (tmp_path / "graph.json").write_text(json.dumps(doc))
    lay = graph.layout
    keep = torch.ones(lay.n, dtype=torch.bool)
    keep[lay.inputs.stop - 1] = False  # the constant node
    A = graph.adjacency[keep][:, keep].contiguous()
    save_file({"A": A, "probabilities": graph.probabilities.contiguous()}, tmp_path / "adjacency.safetensors")
    payload = {
        "graph_json": str(tmp_path / "graph.json"),
        "adjacency": str(tmp_path / "adjacency.safetensors"),
        "n_features": lay.n_features,
        "n_tokens": graph.replacement.n_pos,
        "n_layers": graph.replacement.weights.n_layers,
        "node_threshold": 0.8,
        "edge_threshold": 0.98,
    }
    peer = run_peer("circuit_tracer_graph.py", payload, peer="circuit_tracer", timeout=600)
    assert peer["peer_version"] == "0.5.0"
    assert peer["node_ids"] == [n["node_id"] for n in doc["nodes"]] and peer["n_links"] == len(doc["links"])
    ours_scores = graph.scores_without_constant()
    assert peer["replacement"] == pytest.approx(ours_scores[0], rel=1e-5)
    assert peer["completeness"] == pytest.approx(ours_scores[1], rel=1e-5)
    smaller = Layout(lay.n_features, lay.n_errors, lay.n_inputs - 1, lay.n_logits)
    ours = prune_graph(A, smaller, graph.probabilities, 0.8, 0.98)
    assert peer["node_mask"] == ours.node_mask.tolist()
    assert peer["n_edges"] == int(ours.edge_mask.sum())
    torch.testing.assert_close(torch.tensor(peer["cumulative_scores"]), ours.cumulative_scores, rtol=1e-5, atol=1e-6)
