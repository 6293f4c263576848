"""Patching on the circuit graph: edges, nodes and their gradients, over a TransformerBridge.

``EdgePatcher.metric(patched)`` runs the clean prompts with each patched edge s → r
carrying the sender's *corrupted* output into that one receiver input: the receiver
reads resid − out_s(current) + out_s(corrupted), every other reader of s is untouched.
Current sender outputs are captured during the same forward pass, so patches upstream
cascade correctly. Corrupted outputs are cached once per batch.

The per-head hooks it needs (per-head results, per-head q/k/v inputs, the MLP input)
are switched on only inside these calls.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

from circuits.graph import Edge, Graph, Node, per_head_hooks
from circuits.tasks.base import TaskBatch

Metric = Callable[[torch.Tensor, TaskBatch], torch.Tensor]


def sender_hook(node: Node) -> str:
    if node.kind == "embed":
        return "blocks.0.hook_resid_pre"
    if node.kind == "head":
        return f"blocks.{node.layer}.attn.hook_result"
    return f"blocks.{node.layer}.hook_mlp_out"


def receiver_hook(node: Node, site: str, n_layers: int) -> str:
    if node.kind == "head":
        return f"blocks.{node.layer}.hook_{site}_input"
    if node.kind == "mlp":
        return f"blocks.{node.layer}.hook_mlp_in"
    return f"blocks.{n_layers - 1}.hook_resid_post"


def _select(node: Node, act: torch.Tensor) -> torch.Tensor:
    return act[:, :, node.head] if node.kind == "head" else act


class EdgePatcher:
    """Clean prompts with chosen edges fed from the corrupted run."""

    def __init__(self, model, batch: TaskBatch, metric: Metric):
        self.model, self.batch, self.metric_fn = model, batch, metric
        self.graph = Graph.of(model)
        self.forward_passes = 0
        names = sorted({sender_hook(n) for n in self.graph.senders})
        with torch.no_grad(), per_head_hooks(model):
            corrupt_logits, cache = model.run_with_cache(batch.corrupt_tokens, names_filter=names)
            clean_logits, clean_cache = model.run_with_cache(batch.tokens, names_filter=names)
        self.forward_passes += 2
        self.corrupt = {n: _select(n, cache[sender_hook(n)]) for n in self.graph.senders}
        self.clean = {n: _select(n, clean_cache[sender_hook(n)]) for n in self.graph.senders}
        self.clean_metric = float(metric(clean_logits, batch).mean())
        self.corrupt_metric = float(metric(corrupt_logits, batch).mean())

    @property
    def gap(self) -> float:
        """|M(clean) − M(corrupted)|: the scale in which effects are normalised."""
        return abs(self.clean_metric - self.corrupt_metric) or 1.0

    def _hooks(self, patched: Iterable[Edge]) -> list:
        by_input: dict[str, dict[Node, list[Node]]] = defaultdict(lambda: defaultdict(list))
        for e in patched:
            by_input[receiver_hook(e.receiver, e.input, self.graph.n_layers)][e.receiver].append(e.sender)
        if not by_input:
            return []
        needed = {s for receivers in by_input.values() for senders in receivers.values() for s in senders}
        current: dict[Node, torch.Tensor] = {}
        hooks = []
        for hook_name in sorted({sender_hook(n) for n in needed}):
            nodes = [n for n in needed if sender_hook(n) == hook_name]

            def capture(act, hook, nodes=nodes):  # noqa: ARG001
                for n in nodes:
                    current[n] = _select(n, act)
                return act

            hooks.append((hook_name, capture))
        for hook_name, receivers in by_input.items():
            def patch(act, hook, receivers=receivers):  # noqa: ARG001
                act = act.clone()
                for receiver, senders in receivers.items():
                    delta = sum(self.corrupt[s] - current[s] for s in senders)
                    if receiver.kind == "head":
                        act[:, :, receiver.head] += delta
                    else:
                        act += delta
                return act

            hooks.append((hook_name, patch))
        return hooks

    @torch.no_grad()
    def logits(self, patched: Iterable[Edge]) -> torch.Tensor:
        with per_head_hooks(self.model):
            out = self.model.run_with_hooks(self.batch.tokens, fwd_hooks=self._hooks(list(patched)))
        self.forward_passes += 1
        return out

    def metric(self, patched: Iterable[Edge]) -> float:
        """Mean task metric with ``patched`` edges fed from the corrupted run."""
        return float(self.metric_fn(self.logits(patched), self.batch).mean())

    def edge_attributions(self) -> dict[Edge, float]:
        """EAP (Syed et al.): (out_s(corr) − out_s(clean)) · ∂M/∂input_r, summed over prompts
        and positions, for every edge, from one clean forward and one backward pass (the
        corrupted outputs are the cached ones)."""
        graph, n_layers = self.graph, self.graph.n_layers
        inputs: dict[str, torch.Tensor] = {}

        def track(act, hook):  # noqa: ARG001 - parameters are frozen: start the graph here
            return act.detach().requires_grad_(True)

        def keep(name):
            def hook(act, hook):  # noqa: ARG001
                # a copy: some hook points (the MLP input) alias the residual stream, whose
                # gradient also flows around the receiver; the copy feeds the receiver only
                inputs[name] = act.clone()
                return inputs[name]
            return hook

        names = sorted({receiver_hook(r, s, n_layers) for r, s in graph.receiver_inputs})
        with torch.enable_grad(), per_head_hooks(self.model):
            logits = self.model.run_with_hooks(self.batch.tokens,
                                               fwd_hooks=[("hook_embed", track)] + [(n, keep(n)) for n in names])
            total = self.metric_fn(logits, self.batch).sum()
            grads = dict(zip(names, torch.autograd.grad(total, [inputs[n] for n in names])))
        self.forward_passes += 2  # the clean forward and its backward
        scores = {}
        diffs = {n: (self.corrupt[n] - self.clean[n]) for n in graph.senders}
        for edge in graph.edges:
            grad = grads[receiver_hook(edge.receiver, edge.input, n_layers)]
            grad = grad[:, :, edge.receiver.head] if edge.receiver.kind == "head" else grad
            scores[edge] = float((diffs[edge.sender] * grad).sum() / len(self.batch))
        return scores


@torch.no_grad()
def node_patching(model, batch: TaskBatch, metric: Metric) -> tuple[dict[Node, float], int]:
    """Activation patching per node: each head's output (z) and each MLP's output is set
    to its value on the corrupted prompt; the score is the fraction of the clean-vs-
    corrupted metric gap that this single patch removes."""
    graph = Graph.of(model)
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(graph.n_layers)] + \
            [f"blocks.{layer}.hook_mlp_out" for layer in range(graph.n_layers)]
    clean_logits = model(batch.tokens)
    corrupt_logits, cache = model.run_with_cache(batch.corrupt_tokens, names_filter=names)
    clean = float(metric(clean_logits, batch).mean())
    gap = abs(clean - float(metric(corrupt_logits, batch).mean())) or 1.0
    scores = {}
    for node in graph.heads + graph.mlps:
        if node.kind == "head":
            corrupt_z = cache[f"blocks.{node.layer}.attn.hook_z"][:, :, node.head]

            def hook(act, hook, h=node.head, value=corrupt_z):  # noqa: ARG001
                act = act.clone()
                act[:, :, h] = value
                return act

            name = f"blocks.{node.layer}.attn.hook_z"
        else:
            value = cache[f"blocks.{node.layer}.hook_mlp_out"]

            def hook(act, hook, value=value):  # noqa: ARG001
                return value

            name = f"blocks.{node.layer}.hook_mlp_out"
        patched = float(metric(model.run_with_hooks(batch.tokens, fwd_hooks=[(name, hook)]), batch).mean())
        scores[node] = (clean - patched) / gap
    return scores, 2 + len(scores)
