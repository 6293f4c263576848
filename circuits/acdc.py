"""ACDC (Conmy et al., 2023): iterative edge-level patching with a threshold τ.

Receivers are visited from the logits backwards; for each input of a receiver that is
still connected to the output, its incoming edges are tried one at a time, latest sender
first. An edge is removed (from then on fed from the corrupted run) when removing it
moves the task metric by less than τ, measured as a fraction of the clean-vs-corrupted
metric gap; otherwise it is kept and its sender becomes a receiver to visit. Changes are
taken in absolute value, so edges that *raise* the metric when removed (negative name
movers and the like) count as important too — the original ACDC thresholds a KL
divergence, which has no sign. Inputs of receivers no longer connected to the output are
removed without a forward pass.

The corrupted activations are cached once (``EdgePatcher``); each trial is one batched
forward pass over all prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from circuits.graph import Edge, Node
from circuits.patching import EdgePatcher


@dataclass
class AcdcResult:
    tau: float
    kept: set[Edge]
    forward_passes: int
    seconds: float
    final_metric: float

    def nodes(self) -> set[Node]:
        """Heads and MLPs that send at least one kept edge."""
        return {e.sender for e in self.kept if e.sender.kind in ("head", "mlp")}


def acdc(patcher: EdgePatcher, tau: float, progress=None) -> AcdcResult:
    start, passes0 = time.time(), patcher.forward_passes
    graph = patcher.graph
    removed: set[Edge] = set()
    current = patcher.clean_metric
    alive = {Node("logits")}
    inputs = list(reversed(graph.receiver_inputs))
    for receiver, site in inputs:
        incoming = [Edge(s, receiver, site) for s in reversed(graph.upstream(receiver))]
        if receiver not in alive:
            removed.update(incoming)
            continue
        for edge in incoming:
            trial = patcher.metric(removed | {edge})
            if abs(current - trial) / patcher.gap < tau:
                removed.add(edge)
                current = trial
            else:
                alive.add(edge.sender)
        if progress is not None:
            progress.update(1)
    kept = set(graph.edges) - removed
    return AcdcResult(tau=tau, kept=kept, forward_passes=patcher.forward_passes - passes0,
                      seconds=time.time() - start, final_metric=current)


def node_scores_from_grid(results: list[AcdcResult], nodes: list[Node]) -> dict[Node, float]:
    """A node's score is the largest τ at which it is still in the circuit (0 if never):
    a ranking consistent with every circuit of the grid."""
    scores = dict.fromkeys(nodes, 0.0)
    for res in results:
        for n in res.nodes():
            if n in scores:
                scores[n] = max(scores[n], res.tau)
    return scores
