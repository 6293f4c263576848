"""Attribution-graph influence, pruning and scores (circuits.graph_pruning) on hand-checked graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuits.graph_pruning import Layout, find_threshold, graph_scores, prune_graph


def numeric_case(with_error: bool = True):
    """methods-2.md §F: nodes T, E (error), F, L with A[F,T]=2, A[F,E]=2, A[L,F]=3, A[L,T]=1,
    logit weight 1 on L; laid out in saelab's order [F][E][T][L]."""
    F, E, T, L = 0, 1, 2, 3
    A = torch.zeros(4, 4, dtype=torch.float64)
    A[F, T], A[L, F], A[L, T] = 2.0, 3.0, 1.0
    if with_error:
        A[F, E] = 2.0
    return A, Layout(n_features=1, n_errors=1, n_inputs=1, n_logits=1), torch.tensor([1.0], dtype=torch.float64)


def test_numeric_case_scores():
    A, layout, w = numeric_case()
    replacement, completeness = graph_scores(A, layout, w)
    assert replacement == pytest.approx(0.625)
    assert completeness == pytest.approx(0.8636, abs=1e-4)
    assert completeness == pytest.approx(2.375 / 2.75)  # (0.625 + 0.375 + 0.75·0.5 + 1) / (0.625 + 0.375 + 0.75 + 1)


def test_numeric_case_influence_and_without_error():
    A, layout, w = numeric_case()
    pruned = prune_graph(A, layout, w, node_threshold=1.0, edge_threshold=1.0)
    np.testing.assert_allclose(pruned.influence.numpy(), [0.75, 0.375, 0.625, 0.0])  # F, E, T, L
    A, layout, w = numeric_case(with_error=False)
    replacement, completeness = graph_scores(A, layout, w)
    assert replacement == pytest.approx(1.0)
    assert completeness == pytest.approx(1.0)
    assert prune_graph(A, layout, w, 1.0, 1.0).influence[2] == pytest.approx(1.0)  # I_T = 1


def dense_influence(A: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w ((I − Â)^{-1} − I): the all-path influence by a matrix inverse, not a power series."""
    N = np.abs(A)
    s = N.sum(1, keepdims=True)
    N = np.divide(N, s, out=np.zeros_like(N), where=s > 0)
    return w @ (np.linalg.inv(np.eye(len(A)) - N) - np.eye(len(A)))


def chain_graph():
    """Features f0..f3, one error, two tokens, one logit. f0 and f1 carry the logit; f2 and f3 a sliver."""
    layout = Layout(n_features=4, n_errors=1, n_inputs=2, n_logits=1)
    A = torch.zeros(layout.n, layout.n, dtype=torch.float64)
    f0, f1, f2, f3, e, t0, t1, logit = range(8)
    A[f0, t0] = 1.0
    A[f1, t1] = 1.0
    A[f1, f0] = 1.0
    A[f2, t0] = 1.0
    A[f3, f2] = 1.0
    A[logit, f1] = 10.0
    A[logit, f0] = 5.0
    A[logit, f3] = 0.2
    A[logit, e] = 0.3
    return A, layout, torch.tensor([1.0], dtype=torch.float64)


def test_influence_matches_matrix_inverse():
    A, layout, w = chain_graph()
    weights = np.zeros(layout.n)
    weights[-1] = 1.0
    pruned = prune_graph(A, layout, w, 1.0, 1.0)
    np.testing.assert_allclose(pruned.influence.numpy(), dense_influence(A.numpy(), weights), atol=1e-12)


def test_pruning_keeps_the_nodes_carrying_the_threshold():
    A, layout, w = chain_graph()
    pruned = prune_graph(A, layout, w, node_threshold=0.8, edge_threshold=1.0)
    infl = pruned.influence
    # by hand: row logit normalised over 15.5: f1 0.645, f0 0.323, f3 0.013, e 0.019; f1's row halves
    # to f0 and t1; so f0 = 0.323 + 0.323 = 0.645, f1 = 0.645, t1 = 0.323, t0 = 0.645 + ..., f2, f3 tiny
    order = torch.argsort(infl, descending=True)
    total = infl.sum()
    cum = torch.cumsum(infl[order], 0) / total
    needed = set(order[: int(torch.searchsorted(cum, torch.tensor(0.8, dtype=cum.dtype))) + 1].tolist())
    kept = set(pruned.node_mask.nonzero().flatten().tolist())
    assert needed - {5, 6, 7} <= kept  # every node needed to reach 80% is kept
    assert infl[list(kept - {5, 6, 7})].sum() + infl[[5, 6]].sum() >= 0.8 * total
    assert {0, 1} <= kept and not {2, 3, 4} & kept  # f0, f1 kept; f2, f3 and the error pruned
    assert {5, 6, 7} <= kept  # inputs and logits always


def test_edge_pruning_drops_nodes_left_without_edges():
    A, layout, w = chain_graph()
    pruned = prune_graph(A, layout, w, node_threshold=1.0, edge_threshold=0.9)
    # every node passes the node threshold; the weak f2→f3→logit path loses its edges,
    # and then f2 and f3 (no kept out-edge) are dropped
    assert not pruned.node_mask[2] and not pruned.node_mask[3]
    assert pruned.node_mask[0] and pruned.node_mask[1]
    assert not pruned.edge_mask[:, ~pruned.node_mask].any() and not pruned.edge_mask[~pruned.node_mask].any()


def test_find_threshold():
    scores = torch.tensor([0.1, 0.5, 0.4])
    assert find_threshold(scores, 0.5) == pytest.approx(0.5)
    assert find_threshold(scores, 0.8) == pytest.approx(0.4)
    assert find_threshold(scores, 1.0) == pytest.approx(0.1)


def test_cumulative_scores_rank_nodes():
    A, layout, w = chain_graph()
    pruned = prune_graph(A, layout, w)
    top = int(torch.argmax(pruned.influence))
    assert pruned.cumulative_scores[top] == pytest.approx(float(pruned.influence.max() / pruned.influence.sum()))
    assert float(pruned.cumulative_scores.max()) == pytest.approx(1.0)


def test_salient_logits_stop_at_the_token_crossing_the_probability():
    from circuits.replacement_model import salient_logits

    logits = torch.log(torch.tensor([0.05, 0.6, 0.3, 0.04, 0.01]))
    ids, probs = salient_logits(logits, max_n_logits=10, desired_logit_prob=0.85)
    assert ids.tolist() == [1, 2]  # 0.6 < 0.85 <= 0.9: the crossing token is included
    np.testing.assert_allclose(probs.numpy(), [0.6, 0.3], rtol=1e-5)
    assert salient_logits(logits, max_n_logits=1, desired_logit_prob=0.99)[0].tolist() == [1]
