"""Patching on the circuit graph: edges, nodes and their gradients, over a TransformerBridge.

``EdgePatcher.metric(patched)`` runs the clean prompts with each patched edge s → r
carrying the sender's *corrupted* output into that one receiver input: the receiver
reads resid − out_s(current) + out_s(corrupted), every other reader of s is untouched.
Current sender outputs are captured during the same forward pass, so patches upstream
cascade correctly. Corrupted outputs are cached once.

``eap_scores`` is edge attribution patching (Syed et al.): one corrupted forward pass,
one clean forward pass and one backward pass for every edge at once.

The per-head hooks these need (per-head results and per-head q/k/v inputs) are switched
on only inside these calls.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

from circuits.graph import Edge, Graph, Node, per_head_hooks
from circuits.tasks.base import TaskBatch, end_logits

Metric = Callable[[torch.Tensor, TaskBatch], torch.Tensor]


def sender_hook(node: Node) -> str:
    if node.kind == "embed":
        return "blocks.0.hook_resid_pre"
    if node.kind == "head":
        return f"blocks.{node.layer}.attn.hook_result"
    return f"blocks.{node.layer}.hook_mlp_out"


def receiver_hook(node: Node, site: str, n_layers: int) -> str:
    """Where a receiver input is read: per-head q/k/v inputs; an MLP's input before its
    layer norm (``ln2.hook_in``: TransformerBridge's ``hook_mlp_in`` writes through to the
    residual stream, so a patch there would reach every later reader too); the final
    residual stream, which only the logits read."""
    if node.kind == "head":
        return f"blocks.{node.layer}.hook_{site}_input"
    if node.kind == "mlp":
        return f"blocks.{node.layer}.ln2.hook_in"
    return f"blocks.{n_layers - 1}.hook_resid_post"


def _select(node: Node, act: torch.Tensor) -> torch.Tensor:
    return act[:, :, node.head] if node.kind == "head" else act


def kl_metric(clean_logits: torch.Tensor) -> Metric:
    """KL(clean ‖ patched) of the next-token distribution at END, per prompt: ACDC's
    default metric (Conmy et al.). Zero on the clean run, larger the more is broken."""

    def metric(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
        ref = end_logits(clean_logits, batch).log_softmax(-1)
        out = end_logits(logits, batch).log_softmax(-1)
        return (ref.exp() * (ref - out)).sum(-1)

    return metric


class EdgePatcher:
    """Clean prompts with chosen edges fed from the corrupted run.

    ``metric`` is the task metric (``"task"``) or the KL divergence from the clean
    output (``"kl"``); ``task_metric`` is always the task's, for faithfulness checks.
    """

    def __init__(self, model, batch: TaskBatch, task_metric: Metric, metric: str = "task"):
        if metric not in ("task", "kl"):
            raise ValueError(f"unknown patching metric {metric!r} (task or kl)")
        self.model, self.batch, self.task_metric = model, batch, task_metric
        self.graph = Graph.of(model)
        self.forward_passes = 0
        names = sorted({sender_hook(n) for n in self.graph.senders})
        with torch.no_grad(), per_head_hooks(model):
            corrupt_logits, cache = model.run_with_cache(batch.corrupt_tokens, names_filter=names)
            clean_logits = model(batch.tokens)
        self.forward_passes += 2
        self.corrupt = {n: _select(n, cache[sender_hook(n)]) for n in self.graph.senders}
        self.metric_name = metric
        self.metric_fn = task_metric if metric == "task" else kl_metric(clean_logits)
        self.clean_metric = float(self.metric_fn(clean_logits, batch).mean())
        self.corrupt_metric = float(self.metric_fn(corrupt_logits, batch).mean())
        self.clean_task = float(task_metric(clean_logits, batch).mean())
        self.corrupt_task = float(task_metric(corrupt_logits, batch).mean())

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

            def capture(act, hook, nodes=nodes):
                for n in nodes:
                    current[n] = _select(n, act)
                return act

            hooks.append((hook_name, capture))
        for hook_name, receivers in by_input.items():

            def patch(act, hook, receivers=receivers):
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
        """Mean metric with ``patched`` edges fed from the corrupted run."""
        return float(self.metric_fn(self.logits(patched), self.batch).mean())

    def task_recovered(self, patched: Iterable[Edge]) -> float:
        """Fraction of the clean-vs-corrupted task-metric gap kept with ``patched`` removed."""
        value = float(self.task_metric(self.logits(patched), self.batch).mean())
        gap = self.clean_task - self.corrupt_task
        return (value - self.corrupt_task) / gap if gap else 1.0


def eap_scores(model, batch: TaskBatch, metric: Metric) -> tuple[dict[Edge, float], int]:
    """EAP (Syed et al.): (out_s(corr) − out_s(clean)) · ∂M/∂input_r per edge, summed over
    positions and averaged over prompts. Returns the signed scores and the number of
    passes (two forward, one backward)."""
    graph = Graph.of(model)
    n_layers = graph.n_layers
    sender_names = sorted({sender_hook(n) for n in graph.senders})
    with torch.no_grad(), per_head_hooks(model):
        _, corrupt_cache = model.run_with_cache(batch.corrupt_tokens, names_filter=sender_names)
    clean_senders: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}

    def track(act, hook):
        return act.detach().requires_grad_(True)

    def save_sender(name):
        def hook(act, hook):
            clean_senders[name] = act.detach()
            return act

        return hook

    def keep(name):
        def hook(act, hook):
            # a copy: the final residual is also the last block's output, whose gradient
            # flows on; the copy feeds the receiver only
            inputs[name] = act.clone()
            return inputs[name]

        return hook

    receiver_names = sorted({receiver_hook(r, s, n_layers) for r, s in graph.receiver_inputs})
    hooks = (
        [("hook_embed", track)] + [(n, save_sender(n)) for n in sender_names] + [(n, keep(n)) for n in receiver_names]
    )
    with torch.enable_grad(), per_head_hooks(model):
        logits = model.run_with_hooks(batch.tokens, fwd_hooks=hooks)
        total = metric(logits, batch).sum()
        grads = dict(zip(receiver_names, torch.autograd.grad(total, [inputs[n] for n in receiver_names]), strict=True))
    senders = graph.senders
    # every sender's (corrupted − clean) output, one row each: a receiver's upstream
    # senders are then scored with one matrix-vector product
    diffs = torch.stack(
        [_select(n, corrupt_cache[sender_hook(n)]) - _select(n, clean_senders[sender_hook(n)]) for n in senders]
    ).flatten(1)
    row = {n: i for i, n in enumerate(senders)}
    scores = {}
    for receiver, site in graph.receiver_inputs:
        grad = grads[receiver_hook(receiver, site, n_layers)]
        grad = grad[:, :, receiver.head] if receiver.kind == "head" else grad
        upstream = graph.upstream(receiver)
        rows = diffs.index_select(0, torch.tensor([row[n] for n in upstream], device=diffs.device))
        values = (rows @ grad.flatten()) / len(batch)
        scores.update({Edge(n, receiver, site): v for n, v in zip(upstream, values.tolist(), strict=True)})
    return scores, 3


def node_scores_from_edges(edge_scores: dict[Edge, float], nodes: list[Node]) -> dict[Node, float]:
    """A node's score is its largest |score| over its outgoing edges: at any threshold on
    edge scores, a node is in the circuit exactly when one of its edges is (the node ROC
    convention of Conmy et al. and auto-circuit)."""
    out = dict.fromkeys(nodes, 0.0)
    for e, s in edge_scores.items():
        if e.sender in out:
            out[e.sender] = max(out[e.sender], abs(s))
    return out


@torch.no_grad()
def node_patching(model, batch: TaskBatch, metric: Metric) -> tuple[dict[Node, float], int]:
    """Activation patching per node: each head's output (z) and each MLP's output is set
    to its value on the corrupted prompt; the score is the fraction of the clean-vs-
    corrupted metric gap that this single patch removes (signed)."""
    graph = Graph.of(model)
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(graph.n_layers)] + [
        f"blocks.{layer}.hook_mlp_out" for layer in range(graph.n_layers)
    ]
    clean_logits = model(batch.tokens)
    corrupt_logits, cache = model.run_with_cache(batch.corrupt_tokens, names_filter=names)
    clean = float(metric(clean_logits, batch).mean())
    gap = abs(clean - float(metric(corrupt_logits, batch).mean())) or 1.0
    scores = {}
    for node in graph.heads + graph.mlps:
        if node.kind == "head":
            corrupt_z = cache[f"blocks.{node.layer}.attn.hook_z"][:, :, node.head]

            def hook(act, hook, h=node.head, value=corrupt_z):
                act = act.clone()
                act[:, :, h] = value
                return act

            name = f"blocks.{node.layer}.attn.hook_z"
        else:
            value = cache[f"blocks.{node.layer}.hook_mlp_out"]

            def hook(act, hook, value=value):
                return value

            name = f"blocks.{node.layer}.hook_mlp_out"
        patched = float(metric(model.run_with_hooks(batch.tokens, fwd_hooks=[(name, hook)]), batch).mean())
        scores[node] = (clean - patched) / gap
    return scores, 2 + len(scores)
