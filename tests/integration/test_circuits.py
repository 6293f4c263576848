"""Circuit discovery: the scorer, the discrete-SAE scores, and baselines on a planted circuit."""

from __future__ import annotations

import pytest
import torch

from circuits.discrete_sae import edge_node_scores, node_scores_from_codes, pair_scores_from_codes
from circuits.graph import Edge, Graph, Node
from circuits.scoring import roc_auc, roc_curve, score_ranking
from circuits.tasks import ioi
from circuits.tasks.base import TaskBatch
from sae.architectures import trainable

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


def test_roc_curve_and_ties_on_a_hand_made_ranking():
    # scores: p1 3, (p2 2, n1 2) tied, n2 1
    scores = {"p1": 3, "p2": 2, "n1": 2, "n2": 1}
    assert roc_curve(scores, {"p1", "p2"}) == [(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]
    # pairs: p1 beats n1, n2 (2); p2 ties n1 (0.5), beats n2 (1) → 3.5 / 4
    assert roc_auc(scores, {"p1", "p2"}) == pytest.approx(3.5 / 4)
    # members the method does not score are left out of the truth
    assert score_ranking(scores, {"p1", "p2", "elsewhere"})["n_truth"] == 2
    with pytest.raises(ValueError):
        roc_auc({"a": 1, "b": 2}, {"a", "b"})


def test_scorer_matches_a_brute_force_count_on_random_rankings():
    import random

    rng = random.Random(0)
    for _ in range(20):
        scores = {i: rng.choice([0, 1, 2, 3, 4.5]) for i in range(30)}
        truth = set(rng.sample(range(30), 7))
        pos = [scores[i] for i in truth]
        neg = [scores[i] for i in scores if i not in truth]
        brute = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
        assert roc_auc(scores, truth) == pytest.approx(brute)


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


def test_codes_used_and_the_rank_correlation_diagnostic():
    from circuits.discrete_sae import codes_used, spearman

    pos = torch.tensor([[1, 5, 7], [2, 5, 7], [3, 5, 8]])
    assert codes_used(pos).tolist() == [3.0, 1.0, 2.0]
    assert spearman(torch.tensor([2.0, 0.0, 1.0]), codes_used(pos)) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    # ties at their average rank: centred ranks (−½, −½, 1) and (−1, 0, 1) → 1.5 / √(1.5 · 2)
    assert spearman(torch.tensor([1.0, 1.0, 5.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(1.5 / 3**0.5)
    assert spearman(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 2.0])) == 0.0


def test_the_papers_edge_method_counts_endpoints_of_the_top_pairs():
    # ordered pairs by score: (0,1) (1,0) [3], (0,2) (2,0) [1], (1,2) (2,1) [0]
    pairs = {(0, 1): 3, (0, 2): 1, (1, 2): 0}
    # endpoints in order: 0 1, 1 0, 0 2, 2 0, 1 2, 2 1
    assert edge_node_scores(pairs, 3, k=4).tolist() == [2.0, 2.0, 0.0]
    assert edge_node_scores(pairs, 3, k=6).tolist() == [3.0, 2.0, 1.0]
    assert edge_node_scores(pairs, 4, k=12).tolist() == [4.0, 4.0, 4.0, 0.0]


def test_the_papers_sae_keeps_unit_rows_and_learns():
    from circuits.codebook import DiscreteSAE, train_discrete_sae

    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 3
    x = centres[torch.arange(64) % 4] + 0.1 * torch.randn(64, 16)
    torch.manual_seed(1)
    untrained = DiscreteSAE(16, n_codes=8)
    sae = train_discrete_sae(x, n_codes=8, seed=1, epochs=100)
    for w in (sae.E, sae.D):
        assert torch.allclose(w.norm(dim=-1), torch.ones(w.shape[0]), atol=1e-5)
    with torch.no_grad():
        assert float(sae.loss(x)) < 0.75 * float(untrained.loss(x))
    # deterministic given the seed
    again = train_discrete_sae(x, n_codes=8, seed=1, epochs=100)
    assert torch.equal(sae.encode(x).argmax(-1), again.encode(x).argmax(-1))


def test_ioi_negatives_are_built_as_the_papers_code_builds_them(organism):
    """sae-circuits data/ioi.py: the IO mention becomes a new name, the first S mention
    becomes the IO name, the subject S stays; clean prompts are unchanged."""
    _, tok = organism
    batch = ioi.make_batch(tok, 24, seed=5)
    neg = ioi.paper_negatives(tok, batch, seed=5)
    assert torch.equal(neg.tokens, batch.tokens) and torch.equal(neg.lengths, batch.lengths)
    assert neg.corrupt_tokens.shape == batch.tokens.shape
    for i in range(len(batch)):
        io, s = int(batch.answers[i]), int(batch.distractors[i])  # the IO and S name tokens
        row = neg.corrupt_tokens[i]
        new_name = int(row[batch.positions["IO"][i]])
        assert int(row[batch.positions["S1"][i]]) == io
        assert int(row[batch.positions["S2"][i]]) == s
        assert new_name not in (io, s)
        # nothing else differs from the clean prompt
        differ = (row != batch.tokens[i]).nonzero().flatten().tolist()
        assert set(differ) <= {int(batch.positions["IO"][i]), int(batch.positions["S1"][i])}
    first = batch.attributes[0]
    n3 = tok.decode([int(neg.corrupt_tokens[0][batch.positions["IO"][0]])]).strip()
    names = (n3, first["IO"]) if first["order"] == "ABBA" else (first["IO"], n3)
    expected, _ = ioi.render(ioi.TEMPLATES[first["template"]], *names, first["S"], first["place"], first["object"])
    assert neg.corrupt_prompts[0] == expected
    again = ioi.paper_negatives(tok, batch, seed=5)
    assert torch.equal(again.corrupt_tokens, neg.corrupt_tokens)


def test_greater_than_negatives_are_the_01_corruption(organism):
    from circuits.tasks import greater_than

    _, tok = organism
    batch = greater_than.make_batch(tok, 6, seed=0)
    assert greater_than.paper_negatives(tok, batch, seed=0) is batch
    yy = batch.corrupt_tokens[torch.arange(len(batch)), batch.positions["YY"]]
    assert (yy == greater_than.year_token_ids(tok)[1]).all()  # the start year's YY is 01


def test_head_outputs_are_the_centred_per_head_writes(organism, hf_organism):
    """z_h W_O^h − b_V^h W_O^h from the bridge's hook_z and the plain HF copy's c_attn
    value bias and c_proj, averaged over real positions, centred over d_model
    (TransformerLens' fold_value_biases and center_writing_weights)."""
    from circuits.discrete_sae import head_outputs

    model, tok = organism
    batch = ioi.make_batch(tok, 4, seed=0)
    got = head_outputs(model, batch.tokens, batch.lengths, "mean")
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, names_filter=names)
    n_heads, d_head = model.cfg.n_heads, model.cfg.d_head
    real = (torch.arange(batch.tokens.shape[1])[None, :] < batch.lengths[:, None]).float()
    expected = []
    for layer, name in enumerate(names):
        w = hf_organism.transformer.h[layer].attn.c_proj.weight.detach()  # Conv1D: [in, out]
        z = cache[name].reshape(*cache[name].shape[:2], n_heads, d_head)
        writes = torch.einsum("bshd,hdm->bshm", z, w.reshape(n_heads, d_head, -1))
        b_v = hf_organism.transformer.h[layer].attn.c_attn.bias.detach()[2 * model.cfg.d_model :]
        writes = writes - torch.einsum("hd,hdm->hm", b_v.reshape(n_heads, d_head), w.reshape(n_heads, d_head, -1))
        expected.append((writes * real[:, :, None, None]).sum(1) / batch.lengths[:, None, None])
    expected = torch.cat(expected, dim=1)
    expected = expected - expected.mean(-1, keepdim=True)
    assert got.shape == (4, model.cfg.n_layers * n_heads, model.cfg.d_model)
    assert torch.allclose(got, expected, atol=1e-5)
    assert got.mean(-1).abs().max() < 1e-6


def test_head_outputs_fold_the_value_biases_out_and_still_sum_to_the_attention_output(organism):
    """Per layer, the folded head vectors plus Σ_h b_V^h W_O^h + b_O are the attention
    output (all centred over d_model); without the fold they would overshoot by
    Σ_h b_V^h W_O^h."""
    from circuits.discrete_sae import head_outputs, value_bias_writes

    model, tok = organism
    batch = ioi.make_batch(tok, 4, seed=0)
    got = head_outputs(model, batch.tokens, batch.lengths, "last")
    names = [f"blocks.{layer}.hook_attn_out" for layer in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens, names_filter=names)
    n_heads, last = model.cfg.n_heads, batch.lengths - 1
    folded = value_bias_writes(model).detach().reshape(model.cfg.n_layers, n_heads, -1)
    assert folded.norm(dim=-1).min() > 1e-3  # the organism has value biases: the check can fail

    def centre(x):
        return x - x.mean(-1, keepdim=True)

    for layer, name in enumerate(names):
        attn_out = cache[name][torch.arange(4), last]
        heads = got[:, layer * n_heads : (layer + 1) * n_heads].sum(1)
        bias = folded[layer].sum(0) + model.b_O[layer].detach()
        torch.testing.assert_close(heads + centre(bias), centre(attn_out), atol=1e-5, rtol=1e-5)


def test_the_finder_counts_codes_on_every_prompt_not_only_the_training_ones(organism):
    """The paper trains on 10 prompts and scores codes on all 250 + 250."""
    from circuits.discrete_sae import discrete_sae_circuit

    model, tok = organism
    batch = ioi.paper_negatives(tok, ioi.make_batch(tok, 12, seed=0), seed=0)
    res = discrete_sae_circuit(model, batch, n_train=4, seed=0, n_codes=16)
    n_heads = model.cfg.n_layers * model.cfg.n_heads
    assert res.codes_pos.shape == (12, n_heads) and res.codes_neg.shape == (12, n_heads)
    assert res.node_scores == {
        h: float(v)
        for h, v in zip(Graph.of(model).heads, node_scores_from_codes(res.codes_pos, res.codes_neg), strict=True)
    }


@pytest.mark.parametrize("family", trainable())
def test_every_family_can_stand_in_for_the_codebook(family):
    from circuits.codebook import train_codebook

    torch.manual_seed(0)
    x = torch.randn(40, 16)
    g = torch.randn(40, 16) if family == "gsae" else None
    encode = train_codebook(x, family=family, seed=0, n_codes=12, grads=g, epochs=40)
    acts = encode(x)
    assert acts.shape == (40, 12) and torch.isfinite(acts).all()
    again = train_codebook(x, family=family, seed=0, n_codes=12, grads=g, epochs=40)
    assert torch.equal(acts.argmax(-1), again(x).argmax(-1))


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
    cfg = GPT2Config(
        n_layer=2, n_head=2, n_embd=d, n_positions=16, vocab_size=v, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0
    )
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
        attn.c_attn.weight[:, 2 * d : 2 * d + d_head] = torch.eye(d, d_head)
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
    return TaskBatch(
        task="planted",
        prompts=[""] * n,
        corrupt_prompts=[""] * n,
        tokens=torch.tensor(rows),
        corrupt_tokens=torch.tensor(corrupt),
        lengths=torch.full((n,), 5),
        positions={"END": end},
        answers=torch.tensor(ans),
        distractors=torch.tensor(dis),
        template_ids=torch.zeros(n, dtype=torch.long),
    )


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


PLANTED_EDGES = {Edge(Node("embed"), Node("head", 1, 0), "v"), Edge(Node("head", 1, 0), Node("logits"), "resid")}


@pytest.mark.parametrize("metric", ["task", "kl"])
def test_acdc_recovers_the_planted_edges(planted, metric):
    from circuits.acdc import acdc
    from circuits.patching import EdgePatcher

    model, _, batch = planted
    patcher = EdgePatcher(model, batch, ioi.logit_diff, metric=metric)
    assert patcher.metric([]) == pytest.approx(patcher.clean_metric)
    result = acdc(patcher, tau=0.05)
    assert result.nodes() == {Node("head", 1, 0)}
    assert result.kept == PLANTED_EDGES
    # every edge was tried at most once
    assert result.forward_passes <= len(Graph.of(model).edges)
    # the circuit alone keeps the whole clean-vs-corrupted gap
    assert patcher.task_recovered(result.removed) == pytest.approx(1.0, abs=1e-4)


def test_acdc_grid_chooses_tau_on_validation_and_ranks_the_planted_head_first(planted):
    from circuits.acdc import acdc_grid

    model, tok, batch = planted
    validation = planted_batch(tok, n=6)
    grid = acdc_grid(model, batch, validation, ioi.logit_diff, metric="kl", taus=(0.05, 0.5))
    assert grid.chosen_tau == 0.5 and grid.validation_recovered[0.5] == pytest.approx(1.0, abs=1e-4)
    graph = Graph.of(model)
    nodes = grid.node_scores(graph.heads + graph.mlps)
    assert nodes[Node("head", 1, 0)] == 0.5 and sum(nodes.values()) == 0.5
    edges = grid.edge_scores(graph.edges)
    assert {e for e, s in edges.items() if s > 0} == PLANTED_EDGES
    # the timed run includes its own caching: two more forward passes than its trials
    assert grid.chosen.forward_passes >= 2 and grid.chosen.seconds > 0


def test_eap_ranks_the_planted_edges_first(planted):
    from circuits.patching import eap_scores, node_scores_from_edges

    model, _, batch = planted
    scores, passes = eap_scores(model, batch, ioi.logit_diff)
    assert passes == 3  # two forward passes and one backward
    top = sorted(scores, key=lambda e: -abs(scores[e]))[:2]
    assert set(top) == PLANTED_EDGES
    assert all(abs(s) < 1e-4 for e, s in scores.items() if e not in PLANTED_EDGES)
    graph = Graph.of(model)
    nodes = node_scores_from_edges(scores, graph.heads + graph.mlps)
    assert max(nodes, key=nodes.get) == Node("head", 1, 0)


def test_eap_matches_the_exact_effect_of_patching_an_edge_to_first_order(organism):
    """On the organism, EAP's estimate of patching one edge into the logits correlates with
    the exact effect (not perfectly: the final layer norm is not linear)."""
    from circuits.patching import EdgePatcher, eap_scores

    model, tok = organism
    batch = ioi.make_batch(tok, 8, seed=3)
    scores, _ = eap_scores(model, batch, ioi.logit_diff)
    patcher = EdgePatcher(model, batch, ioi.logit_diff)
    edges = [e for e in patcher.graph.edges if e.receiver.kind == "logits"][::3]
    exact = torch.tensor([patcher.metric([e]) - patcher.clean_metric for e in edges])
    approx = torch.tensor([scores[e] for e in edges])
    assert torch.corrcoef(torch.stack([exact, approx]))[0, 1] > 0.8


def test_edge_patching_all_inputs_of_the_logits_gives_the_corrupted_run(organism):
    from circuits.patching import EdgePatcher

    model, tok = organism
    batch = ioi.make_batch(tok, 8, seed=2)
    patcher = EdgePatcher(model, batch, ioi.logit_diff)
    graph = patcher.graph
    into_logits = [e for e in graph.edges if e.receiver.kind == "logits"]
    assert patcher.metric(into_logits) == pytest.approx(patcher.corrupt_metric, abs=1e-3)
    assert patcher.metric([]) == pytest.approx(patcher.clean_metric, abs=1e-4)


def test_an_mlp_input_patch_reaches_only_that_mlp(organism):
    """Patching embed → mlp0 changes the residual stream only through mlp0's output (a
    patch written into the residual itself would also reach every later reader)."""
    from circuits.graph import per_head_hooks
    from circuits.patching import EdgePatcher

    model, tok = organism
    batch = ioi.make_batch(tok, 4, seed=1)
    patcher = EdgePatcher(model, batch, ioi.logit_diff)
    names = ["blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"]
    store = {}

    def save(name):
        def hook(act, hook):
            store[name] = act.detach().clone()
            return act

        return hook

    with torch.no_grad(), per_head_hooks(model):
        _, clean = model.run_with_cache(batch.tokens, names_filter=names)
        hooks = patcher._hooks([Edge(Node("embed"), Node("mlp", 0), "in")]) + [(n, save(n)) for n in names]
        model.run_with_hooks(batch.tokens, fwd_hooks=hooks)
    mlp_change = store["blocks.0.hook_mlp_out"] - clean["blocks.0.hook_mlp_out"]
    assert mlp_change.abs().max() > 1e-3
    resid_change = store["blocks.1.hook_resid_pre"] - clean["blocks.1.hook_resid_pre"]
    assert torch.allclose(resid_change, mlp_change, atol=1e-4)


def test_graph_shape():
    g = Graph(n_layers=2, n_heads=3)
    assert len(g.senders) == 1 + 2 * (3 + 1)
    # MLP 1 sees embed, layer 0 (3 heads + mlp0) and layer 1's heads
    assert len(g.upstream(Node("mlp", 1))) == 1 + 4 + 3
    assert len(Graph(2, 3, parallel_attn_mlp=True).upstream(Node("mlp", 1))) == 1 + 4
    assert Node.parse("mlp3") == Node("mlp", 3) and str(Node("head", 2, 5)) == "2.5"
