"""Influence, pruning and the replacement / completeness scores of an attribution graph.

A port of circuit-tracer's ``graph.py`` (PyPI ``circuit-tracer==0.5.0``: ``normalize_matrix``,
``compute_influence``, ``find_threshold``, ``prune_graph``, ``compute_graph_scores``), over
plain tensors and a ``Layout`` instead of a ``Graph`` object. ``A[target, source]`` is the
direct effect of a source on a target; nodes are ordered
``[features][errors][inputs][logits]`` where *inputs* are the token embeddings followed by
saelab's explicit constant node (biases and positional embeddings, see
``circuits.replacement_model``). The constant node is treated like a token everywhere
circuit-tracer treats tokens specially: it is always kept by pruning and it counts as an
input in the replacement score (circuit-tracer has no such node, so its scores leave the
biases' share of the logit out of the adjacency altogether).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    """How many nodes of each kind, in the order ``[features][errors][inputs][logits]``."""

    n_features: int
    n_errors: int
    n_inputs: int  # token embeddings plus the constant node
    n_logits: int

    @property
    def n(self) -> int:
        return self.n_features + self.n_errors + self.n_inputs + self.n_logits

    @property
    def errors(self) -> slice:
        return slice(self.n_features, self.n_features + self.n_errors)

    @property
    def inputs(self) -> slice:
        start = self.n_features + self.n_errors
        return slice(start, start + self.n_inputs)

    @property
    def logits(self) -> slice:
        return slice(self.n - self.n_logits, self.n)


def normalize_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """``|A|`` with every row summing to one (rows without in-edges stay zero)."""
    normalized = matrix.abs()
    return normalized / normalized.sum(dim=1, keepdim=True).clamp(min=1e-10)


def compute_influence(A: torch.Tensor, logit_weights: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """``w Σ_{k≥1} A^k``: the total (all-path) influence of every node on the weighted logits.
    The graph is acyclic, so the series ends after at most depth-many products."""
    current = logit_weights @ A
    influence = current.clone()
    for _ in range(max_iter):
        if not current.any():
            return influence
        current = current @ A
        influence += current
    raise RuntimeError(f"influence did not converge after {max_iter} iterations (is the graph acyclic?)")


def logit_weights(layout: Layout, probabilities: torch.Tensor) -> torch.Tensor:
    w = torch.zeros(layout.n, dtype=probabilities.dtype, device=probabilities.device)
    w[layout.logits] = probabilities
    return w


def node_influence(A: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return compute_influence(normalize_matrix(A), weights)


def find_threshold(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """The score at which the nodes (or edges) ranked above it first carry ``threshold`` of the total."""
    sorted_scores = torch.sort(scores, descending=True).values
    cumulative = torch.cumsum(sorted_scores, dim=0) / torch.sum(sorted_scores)
    tau = torch.tensor(threshold, dtype=cumulative.dtype, device=cumulative.device)
    index = int(torch.searchsorted(cumulative, tau).item())
    return sorted_scores[min(index, len(cumulative) - 1)]


@dataclass(frozen=True)
class Pruned:
    node_mask: torch.Tensor  # [n] bool
    edge_mask: torch.Tensor  # [n, n] bool, [target, source]
    cumulative_scores: torch.Tensor  # [n]: the cumulative influence fraction at each node's rank
    influence: torch.Tensor  # [n]: node influence in the unpruned graph


def prune_graph(
    A: torch.Tensor,
    layout: Layout,
    probabilities: torch.Tensor,
    node_threshold: float = 0.8,
    edge_threshold: float = 0.98,
) -> Pruned:
    """circuit-tracer's pruning: keep the nodes carrying ``node_threshold`` of the influence
    (inputs and logits always), then the edges carrying ``edge_threshold`` of the edge scores
    ``Â'[t,s]·(I'[t] + w[t])`` in the node-pruned graph, then drop, until nothing changes,
    feature/error nodes left without a kept out-edge and features without a kept in-edge."""
    if not 0.0 <= node_threshold <= 1.0:
        raise ValueError("node_threshold must be between 0 and 1")
    if not 0.0 <= edge_threshold <= 1.0:
        raise ValueError("edge_threshold must be between 0 and 1")
    w = logit_weights(layout, probabilities.to(A.dtype))
    influence = node_influence(A, w)
    node_mask = influence >= find_threshold(influence, node_threshold)
    always = layout.n_inputs + layout.n_logits
    node_mask[-always:] = True

    pruned = A.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    normalized = normalize_matrix(pruned)
    edge_scores = normalized * (compute_influence(normalized, w) + w)[:, None]
    edge_mask = edge_scores >= find_threshold(edge_scores.flatten(), edge_threshold)

    inner = layout.n - always  # features and errors
    while True:
        before = node_mask.clone()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[:inner] &= edge_mask[:, :inner].any(0)  # an out-edge
        node_mask[: layout.n_features] &= edge_mask[: layout.n_features].any(1)  # an in-edge
        if torch.equal(node_mask, before):
            break

    sorted_scores, order = torch.sort(influence, descending=True)
    cumulative = torch.zeros_like(influence)
    cumulative[order] = torch.cumsum(sorted_scores, dim=0) / torch.sum(sorted_scores)
    return Pruned(node_mask, edge_mask, cumulative, influence)


def graph_scores(A: torch.Tensor, layout: Layout, probabilities: torch.Tensor) -> tuple[float, float]:
    """``(replacement, completeness)`` as circuit-tracer's ``compute_graph_scores``.

    Replacement: the share of the inputs' end-to-end influence on the logits that does not
    come from error nodes, ``I_inputs / (I_inputs + I_errors)``. Completeness: every node's
    fraction of non-error (normalised) in-edges, weighted by its influence plus its logit
    weight, ``Σ_n (1 − Σ_{s∈err} Â[n,s])(I_n + w_n) / Σ_n (I_n + w_n)``.
    """
    w = logit_weights(layout, probabilities.to(A.dtype))
    normalized = normalize_matrix(A)
    influence = compute_influence(normalized, w)
    inputs = influence[layout.inputs].sum()
    errors = influence[layout.errors].sum()
    replacement = inputs / (inputs + errors)
    non_error = 1 - normalized[:, layout.errors].sum(dim=-1)
    weight = influence + w
    completeness = (non_error * weight).sum() / weight.sum()
    return float(replacement), float(completeness)
