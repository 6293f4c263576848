"""ACDC (Conmy et al., 2023): iterative edge-level patching with a threshold τ.

Receivers are visited from the logits backwards; for each input of a receiver that is
still connected to the output, its incoming edges are tried one at a time, latest sender
first. An edge is removed (from then on fed from the corrupted run) when removing it
changes the metric by less than τ; otherwise it is kept and its sender becomes a
receiver to visit. Inputs of receivers no longer connected to the output are removed
without a forward pass.

The metric is either, as in Conmy et al., the KL divergence of the next-token
distribution at END from the clean model's (``"kl"``: an edge goes when the KL grows by
less than τ; removals that lower the KL always go), or the task metric (``"task"``: an
edge goes when the metric moves by less than τ *in either direction*, so edges whose
removal raises it, such as negative name movers, count too). τ is in units of the
clean-vs-corrupted difference of the metric (KL(clean ‖ corrupted) for ``"kl"``), so one
grid serves every model and task.

The corrupted activations are cached once per run (``EdgePatcher``); each trial is one
batched forward pass over all prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from circuits.graph import Edge, Graph, Node
from circuits.patching import EdgePatcher
from sae.progress import progress_bar

#: The fixed τ grid (fractions of the clean-vs-corrupted metric difference).
TAUS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
#: A validation circuit must keep this fraction of the task-metric gap for its τ to be chosen.
VALIDATION_TARGET = 0.8


@dataclass
class AcdcResult:
    tau: float
    kept: set[Edge]
    forward_passes: int
    seconds: float
    final_metric: float
    removed: set[Edge] = field(default_factory=set, repr=False)

    def nodes(self) -> set[Node]:
        """Heads and MLPs that send at least one kept edge."""
        return {e.sender for e in self.kept if e.sender.kind in ("head", "mlp")}


def acdc(patcher: EdgePatcher, tau: float, progress=None) -> AcdcResult:
    """One ACDC run at threshold ``tau`` on the patcher's prompts."""
    start, passes0 = time.time(), patcher.forward_passes
    graph = patcher.graph
    signed = patcher.metric_name == "kl"
    removed: set[Edge] = set()
    patched: set[Edge] = set()  # removed edges into live receivers: the only ones that matter
    current = patcher.clean_metric
    alive = {Node("logits")}
    for receiver, site in reversed(graph.receiver_inputs):
        incoming = [Edge(s, receiver, site) for s in reversed(graph.upstream(receiver))]
        if receiver not in alive:
            # every reader of this receiver already takes its corrupted output, so what
            # it reads changes nothing: its inputs go without a pass and without a patch
            removed.update(incoming)
        else:
            for edge in incoming:
                trial = patcher.metric(patched | {edge})
                change = (trial - current) if signed else abs(trial - current)
                if change / patcher.gap < tau:
                    removed.add(edge)
                    patched.add(edge)
                    current = trial
                else:
                    alive.add(edge.sender)
        if progress is not None:
            progress.update(1)
    kept = set(graph.edges) - removed
    return AcdcResult(
        tau=tau,
        kept=kept,
        forward_passes=patcher.forward_passes - passes0,
        seconds=time.time() - start,
        final_metric=current,
        removed=removed,
    )


@dataclass
class AcdcGrid:
    """ACDC over the τ grid on the scoring prompts, with τ chosen on validation prompts."""

    runs: list[AcdcResult]
    validation_recovered: dict[float, float]
    chosen_tau: float
    chosen: AcdcResult  # the run at the chosen τ: its seconds and passes include its own caching
    metric: str

    def node_scores(self, nodes: list[Node]) -> dict[Node, float]:
        """A node's score is the largest τ at which it is still in the circuit (0 if never):
        a ranking consistent with every circuit of the grid."""
        scores = dict.fromkeys(nodes, 0.0)
        for res in self.runs:
            for n in res.nodes():
                if n in scores:
                    scores[n] = max(scores[n], res.tau)
        return scores

    def edge_scores(self, edges: list[Edge]) -> dict[Edge, float]:
        scores = dict.fromkeys(edges, 0.0)
        for res in self.runs:
            for e in res.kept:
                scores[e] = max(scores[e], res.tau)
        return scores


def _timed_run(model, batch, task_metric, metric: str, tau: float, bar) -> AcdcResult:
    """One run end to end, its own corrupted-activation caching included."""
    start = time.time()
    patcher = EdgePatcher(model, batch, task_metric, metric=metric)
    res = acdc(patcher, tau, bar)
    res.seconds, res.forward_passes = time.time() - start, patcher.forward_passes
    return res


def acdc_grid(
    model,
    batch,
    validation,
    task_metric,
    metric: str = "kl",
    taus=TAUS,
    target: float = VALIDATION_TARGET,
    progress: bool = False,
) -> AcdcGrid:
    """Run the grid on ``validation`` to choose τ (the largest whose circuit keeps ≥
    ``target`` of the task-metric gap there; the smallest τ if none does), then on
    ``batch`` at every τ for the ranking."""
    taus = sorted(set(taus))
    per_run = len(Graph.of(model).receiver_inputs)
    bar = progress_bar(total=2 * len(taus) * per_run, desc="ACDC τ grid", disable=not progress, leave=False)
    val_patcher = EdgePatcher(model, validation, task_metric, metric=metric)
    recovered = {}
    for tau in taus:
        res = acdc(val_patcher, tau, bar)
        recovered[tau] = val_patcher.task_recovered(res.removed)
    passing = [t for t in taus if recovered[t] >= target]
    chosen_tau = max(passing) if passing else min(taus)
    runs = [_timed_run(model, batch, task_metric, metric, tau, bar) for tau in taus]
    bar.close()
    chosen = next(r for r in runs if r.tau == chosen_tau)
    return AcdcGrid(runs=runs, validation_recovered=recovered, chosen_tau=chosen_tau, chosen=chosen, metric=metric)
