"""Circuit discovery: the scorer, the discrete-SAE scores, and baselines on a planted circuit."""

from __future__ import annotations

import pytest
import torch

from circuits.discrete_sae import node_scores_from_codes, pair_scores_from_codes
from circuits.graph import Edge, Graph, Node
from circuits.scoring import roc_auc, score_ranking
from circuits.tasks import ioi
from circuits.tasks.base import TaskBatch


# ------------------------------------------------------------------ the scorer


def test_roc_auc_on_hand_made_rankings():
    assert roc_auc({"a": 3, "b": 2, "c": 1}, {"a"}) == 1.0
    assert roc_auc({"a": 1, "b": 2, "c": 3}, {"a"}) == 0.0
    # one positive between two negatives: beats one of two → 0.5
    assert roc_auc({"n1": 3, "p": 2, "n2": 1}, {"p"}) == 0.5
    # ties count one half
    assert roc_auc({"p": 1, "n": 1}, {"p"}) == 0.5
    # 2 positives {4, 2}, 3 negatives {3, 1, 0}: pairs won 3 + 2 = 5 of 6
    assert roc_auc({"p1": 4, "n1": 3, "p2": 2, "n2": 1, "n3": 0}, {"p1", "p2"}) == pytest.approx(5 / 6)


def test_precision_recall_at_top_k_and_best_threshold():
    scores = {"p1": 0.9, "n1": 0.8, "p2": 0.7, "n2": 0.2, "p3": 0.1}
    s = score_ranking(scores, {"p1", "p2", "p3"})
    # top-3 = {p1, n1, p2}: precision 2/3, recall 2/3
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    # best F1: all five chosen → P 3/5, R 1 → F1 0.75 (vs 2/3 at top 3, 2/3 at top 1)
    assert s["best_threshold"]["f1"] == pytest.approx(0.75)
    # TPR/TNR harmonic mean: at the top-1 threshold TPR 1/3, TNR 1 → 0.5; at top-3 (2/3, 1/2) → 0.571
    assert s["tpr_tnr_harmonic_mean"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    curve = s["roc_curve"]
    assert curve[0] == (0.0, 0.0) and curve[-1] == (1.0, 1.0)


# ------------------------------------------------------------ discrete-SAE scores


def test_node_and_pair_scores_on_a_hand_made_code_table():
    # 3 heads; rows are prompts, entries are codes
    pos = torch.tensor([[1, 5, 7], [2, 5, 7], [3, 5, 8]])
    neg = torch.tensor([[1, 5, 7], [1, 6, 7], [9, 6, 7]])
    # head 0: pos {1,2,3} − neg {1,9} = {2,3} → 2; head 1: {5} − {5,6} = 0; head 2: {7,8} − {7} = 1
    assert node_scores_from_codes(pos, neg).tolist() == [2.0, 0.0, 1.0]
    pairs = pair_scores_from_codes(pos, neg)
    # (0,1): pos {(1,5),(2,5),(3,5)} − neg {(1,5),(1,6),(9,6)} = 2
    # (0,2): pos {(1,7),(2,7),(3,8)} − neg {(1,7),(9,7)} = 2
    # (1,2): pos {(5,7),(5,8)} − neg {(5,7),(6,7)} = 1
    assert pairs == {(0, 1): 2, (0, 2): 2, (1, 2): 1}


# ------------------------------------------------------------ a planted circuit


def planted_model():
    """A 2-layer, 2-head GPT-2 where only head 1.0 moves information: every other head
    and both MLPs write nothing. Head 1.0 attends uniformly and copies token identities
    to the last position, where the tied unembedding reads them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from organism.tokenizer import build_tokenizer
    from sae.model import wrap

    tok = build_tokenizer()
    d, v = 32, len(tok)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=d, n_positions=16, vocab_size=v,
                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    hf = GPT2LMHeadModel(cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in hf.parameters():
            p.zero_()
        hf.transformer.wte.weight.normal_(0, 1.0)
        for block in hf.transformer.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        hf.transformer.ln_f.weight.fill_(1.0)
        attn = hf.transformer.h[1].attn
        d_head = d // 2
        # value of head 0 = first d_head dims of the (normalised) input, written back in place
        attn.c_attn.weight[:, 2 * d: 2 * d + d_head] = torch.eye(d, d_head)
        attn.c_proj.weight[:d_head, :] = 4 * torch.eye(d_head, d)
    hf.tie_weights()
    return wrap(hf, tok, "planted"), tok


def planted_batch(tok, n=12):
    names = ["John", "Mary", "Anna", "Mark", "Paul", "Kyle"]
    ids = [tok.encode(" " + w, add_special_tokens=False)[0] for w in names]
    filler = tok.encode(" the", add_special_tokens=False)[0]
    rows, corrupt, ans, dis = [], [], [], []
    for i in range(n):
        a, b = ids[i % 6], ids[(i + 1) % 6]
        rows.append([tok.bos_token_id, a, filler, filler, filler])
        corrupt.append([tok.bos_token_id, b, filler, filler, filler])
        ans.append(a)
        dis.append(b)
    end = torch.full((n,), 4)
    return TaskBatch(task="planted", prompts=[""] * n, corrupt_prompts=[""] * n, tokens=torch.tensor(rows),
                     corrupt_tokens=torch.tensor(corrupt), lengths=torch.full((n,), 5), positions={"END": end},
                     answers=torch.tensor(ans), distractors=torch.tensor(dis), template_ids=torch.zeros(n, dtype=torch.long))


@pytest.fixture(scope="module")
def planted():
    model, tok = planted_model()
    return model, tok, planted_batch(tok)


def test_the_planted_circuit_carries_the_metric(planted):
    model, _, batch = planted
    clean = ioi.logit_diff(model(batch.tokens), batch).mean()
    corrupt = ioi.logit_diff(model(batch.corrupt_tokens), batch).mean()
    assert clean > 1.0 and corrupt < -1.0


def test_patching_finds_the_planted_head(planted):
    from circuits.patching import node_patching

    model, _, batch = planted
    scores, _ = node_patching(model, batch, ioi.logit_diff)
    assert scores[Node("head", 1, 0)] > 0.9
    assert all(abs(s) < 1e-4 for n, s in scores.items() if n != Node("head", 1, 0))


def test_acdc_recovers_the_planted_edges(planted):
    from circuits.acdc import acdc
    from circuits.patching import EdgePatcher

    model, _, batch = planted
    patcher = EdgePatcher(model, batch, ioi.logit_diff)
    assert patcher.metric([]) == pytest.approx(patcher.clean_metric)
    result = acdc(patcher, tau=0.05)
    assert result.nodes() == {Node("head", 1, 0)}
    assert result.kept == {Edge(Node("embed"), Node("head", 1, 0), "v"), Edge(Node("head", 1, 0), Node("logits"), "resid")}
    # every edge was visited at most once
    assert result.forward_passes <= len(Graph.of(model).edges)


def test_eap_ranks_the_planted_edges_first(planted):
    from circuits.patching import EdgePatcher

    model, _, batch = planted
    scores = EdgePatcher(model, batch, ioi.logit_diff).edge_attributions()
    top = sorted(scores, key=lambda e: -abs(scores[e]))[:2]
    assert set(top) == {Edge(Node("embed"), Node("head", 1, 0), "v"), Edge(Node("head", 1, 0), Node("logits"), "resid")}


def test_edge_patching_all_inputs_of_the_logits_gives_the_corrupted_run(organism):
    from circuits.patching import EdgePatcher

    model, tok = organism
    batch = ioi.make_batch(tok, 8, seed=2)
    patcher = EdgePatcher(model, batch, ioi.logit_diff)
    graph = patcher.graph
    into_logits = [e for e in graph.edges if e.receiver.kind == "logits"]
    assert patcher.metric(into_logits) == pytest.approx(patcher.corrupt_metric, abs=1e-3)
    assert patcher.metric([]) == pytest.approx(patcher.clean_metric, abs=1e-4)


def test_graph_shape():
    g = Graph(n_layers=2, n_heads=3)
    assert len(g.senders) == 1 + 2 * (3 + 1)
    # MLP 1 sees embed, layer 0 (3 heads + mlp0) and layer 1's heads
    assert len(g.upstream(Node("mlp", 1))) == 1 + 4 + 3
    assert len(Graph(2, 3, parallel_attn_mlp=True).upstream(Node("mlp", 1))) == 1 + 4
    assert Node.parse("mlp3") == Node("mlp", 3) and str(Node("head", 2, 5)) == "2.5"
