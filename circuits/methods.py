"""Every circuit-discovery method behind one call, scored against every ground truth.

``run_method(model, task, method, ...)`` returns a ``MethodResult``: scores per head (and
per MLP and per edge where the method gives them), the wall-clock seconds of the run
end to end (SAE training included), the number of forward passes, and what was patched
or ablated with which metric. ``evaluate`` scores it against ground truths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from circuits.graph import Edge, Graph, Node
from circuits.scoring import score_ranking
from circuits.tasks import TASKS

METHODS = ("discrete-sae", "acdc", "patching", "eap", "attn-sae")
ACDC_TAUS = (0.003, 0.01, 0.03, 0.1, 0.3)


@dataclass
class MethodResult:
    task: str
    method: str
    node_scores: dict[Node, float]
    seconds: float
    n_prompts: int
    edge_scores: dict[Edge, float] | None = None
    pair_scores: dict[frozenset, float] | None = None
    forward_passes: int | None = None
    details: dict = field(default_factory=dict)

    @property
    def head_scores(self) -> dict[Node, float]:
        return {n: s for n, s in self.node_scores.items() if n.kind == "head"}


def _batches(tokenizer, task: str, n_prompts: int, seed: int):
    module = TASKS[task]
    return module, module.make_batch(tokenizer, n_prompts, seed=seed)


def run_discrete_sae(model, tokenizer, task, n_prompts=250, seed=0, family=None, n_train=10, **_):
    from circuits.discrete_sae import discrete_sae_circuit

    _, batch = _batches(tokenizer, task, n_prompts, seed)
    start = time.time()
    res = discrete_sae_circuit(model, batch, n_train=n_train, family=family, seed=seed)
    return MethodResult(task, "discrete-sae", res.node_scores, time.time() - start, n_prompts,
                        pair_scores=res.pair_scores, forward_passes=2,
                        details={"sae": family or "relu (paper)", "n_train_prompts": n_train, "codes": 200,
                                 "timings": res.timings, "activation": "head output z_h W_O^h, mean over positions"})


def run_patching(model, tokenizer, task, n_prompts=100, seed=0, **_):
    from circuits.patching import node_patching

    module, batch = _batches(tokenizer, task, n_prompts, seed)
    start = time.time()
    scores, passes = node_patching(model, batch, module.metric)
    return MethodResult(task, "patching", {n: abs(s) for n, s in scores.items()}, time.time() - start, n_prompts,
                        forward_passes=passes,
                        details={"ablation": "corrupted-prompt activation (node output)", "metric": module.__name__,
                                 "signed_scores": {str(n): s for n, s in scores.items()}})


def run_eap(model, tokenizer, task, n_prompts=100, seed=0, **_):
    from circuits.patching import EdgePatcher

    module, batch = _batches(tokenizer, task, n_prompts, seed)
    start = time.time()
    patcher = EdgePatcher(model, batch, module.metric)
    scores = patcher.edge_attributions()
    graph = patcher.graph
    nodes = {n: 0.0 for n in graph.heads + graph.mlps}
    for e, s in scores.items():
        if e.sender in nodes:
            nodes[e.sender] += abs(s)
    return MethodResult(task, "eap", nodes, time.time() - start, n_prompts,
                        edge_scores={e: abs(s) for e, s in scores.items()}, forward_passes=patcher.forward_passes,
                        details={"ablation": "corrupted-prompt activation (linearised)", "metric": module.__name__,
                                 "node_score": "sum of |attribution| over the node's outgoing edges"})


def run_acdc(model, tokenizer, task, n_prompts=100, seed=0, taus=ACDC_TAUS, progress=False, **_):
    """A τ grid on the scoring prompts gives the ranking; τ is chosen on a separate
    validation split (the largest τ whose circuit keeps ≥ 80% of the clean-vs-corrupted
    gap there), and the reported runtime is one run at that τ."""
    from tqdm.auto import tqdm

    from circuits.acdc import acdc, node_scores_from_grid
    from circuits.patching import EdgePatcher

    module, batch = _batches(tokenizer, task, n_prompts, seed)
    _, val = _batches(tokenizer, task, max(20, n_prompts // 2), seed + 1000)
    graph = Graph.of(model)
    grid = []
    patcher = EdgePatcher(model, batch, module.metric)
    val_patcher = EdgePatcher(model, val, module.metric)
    chosen, val_runs = min(taus), {}
    bar = tqdm(total=2 * len(taus) * len(graph.receiver_inputs), desc=f"ACDC {task}", disable=not progress, leave=False)
    for tau in sorted(taus):
        v = acdc(val_patcher, tau, bar)
        val_runs[tau] = (v.final_metric - val_patcher.corrupt_metric) / (val_patcher.clean_metric - val_patcher.corrupt_metric)
        if val_runs[tau] >= 0.8:
            chosen = tau
        grid.append(acdc(patcher, tau, bar))
    bar.close()
    timed = EdgePatcher(model, batch, module.metric)
    start = time.time()
    run = acdc(timed, chosen)
    seconds = time.time() - start + 0.0
    nodes = node_scores_from_grid(grid, graph.heads + graph.mlps)
    kept_at = {}
    for res in grid:
        for e in res.kept:
            kept_at[e] = max(kept_at.get(e, 0.0), res.tau)
    return MethodResult(task, "acdc", nodes, seconds, n_prompts,
                        edge_scores={e: kept_at.get(e, 0.0) for e in graph.edges},
                        forward_passes=run.forward_passes + 2,
                        details={"taus": list(sorted(taus)), "chosen_tau": chosen, "validation_recovered": val_runs,
                                 "ablation": "corrupted-prompt activation per edge", "metric": module.__name__,
                                 "threshold_on": "|change in metric| / |clean - corrupted|",
                                 "circuit_at_chosen_tau": sorted(str(n) for n in run.nodes()),
                                 "edges_kept_at_chosen_tau": len(run.kept)})


RUNNERS = {"discrete-sae": run_discrete_sae, "acdc": run_acdc, "patching": run_patching, "eap": run_eap}


def run_method(model, tokenizer, task: str, method: str, **kwargs) -> MethodResult:
    if method == "attn-sae":
        from circuits.attn_sae import run_attn_sae

        return run_attn_sae(model, tokenizer, task, **kwargs)
    try:
        runner = RUNNERS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}") from None
    return runner(model, tokenizer, task, **kwargs)


def evaluate(result: MethodResult, truth) -> dict:
    """Scores of ``result`` against one ground truth: heads always, edges when both have them."""
    out = {"ground_truth": truth.name, **score_ranking(result.head_scores, truth.heads)}
    if result.edge_scores is not None and truth.edges:
        gt_edges = {Edge(s, r, i) for s, r, i in truth.edges}
        candidates = {e: s for e, s in result.edge_scores.items()}
        if gt_edges & set(candidates):
            edge = score_ranking(candidates, gt_edges)
            out["edge_roc_auc"] = edge["roc_auc"]
    if result.pair_scores is not None and truth.head_pairs():
        out["edge_roc_auc"] = score_ranking(result.pair_scores, truth.head_pairs())["roc_auc"]
    return out
