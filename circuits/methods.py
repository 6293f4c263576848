"""Every circuit-discovery method behind one call, scored against every ground truth.

``run_method(model, tokenizer, task, method, MethodConfig(...))`` returns a
``MethodResult``: scores per head (and per MLP and per edge where the method gives them),
the wall-clock seconds of the run end to end (SAE training included), the number of
forward passes, and what was patched or ablated with which metric. ``evaluate`` scores
it against a ground truth.

Methods: ``discrete-sae`` (O'Neill & Bui), ``acdc`` (Conmy et al.), ``patching`` (node
activation patching), ``eap`` (Syed et al.), ``attn-sae`` (Kissane et al.'s attention
SAEs), ``feature-circuit`` (Marks et al.'s sparse feature circuits, from a run directory of
SAEs at every layer's attention output, MLP output and residual stream, mapped to heads
and MLPs), and ``mean-diff``, a baseline with no SAE and no patching: each head's score is
‖E_pos x − E_neg x‖ over the same pooled head outputs the discrete-SAE method reads, so
what the SAE and its codes add over a plain positive-vs-negative contrast is visible.
Both read the paper's negatives (``paper_contrast``); the patching methods read the
task's corrupted prompts (IOI: ABC), as the organism's ground truth does.

Devices: a method runs where the model is (``sae.model.model_device``, set by ``saelab
circuit --device``); prompts are built there and every tensor a method makes is made
there, and scores leave as Python floats.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pydantic import Field

from circuits.graph import Edge, Graph, Node
from circuits.scoring import score_ranking
from circuits.tasks import TASKS
from sae.config import FrozenConfig
from sae.model import model_device

METHODS = ("discrete-sae", "acdc", "patching", "eap", "attn-sae", "mean-diff", "feature-circuit")


class MethodConfig(FrozenConfig):
    """Options of a circuit-discovery run; each method reads the ones it needs."""

    n_prompts: int = Field(100, ge=2, description="Task prompts (positive/clean, each with its negative/corrupted).")
    seed: int = Field(0, description="Seeds the prompts, the SAE training subset and the SAE initialisation.")
    n_train: int = Field(10, ge=1, description="discrete-sae: prompts the SAE is trained on (the paper: 10).")
    n_codes: int = Field(200, ge=2, description="discrete-sae: latents of the codebook (the paper: 200).")
    family: str | None = Field(None, description="discrete-sae: a registry family instead of the paper's ReLU SAE.")
    k: int | None = Field(None, ge=1, description="discrete-sae: k of k-sparse families (default 8).")
    scale_inputs: bool = Field(
        False,
        description="discrete-sae: scale head vectors to mean norm √d before the "
        "paper's SAE (the lab trainer's convention; the paper uses raw ones).",
    )
    center_heads: bool = Field(
        True,
        description="discrete-sae / mean-diff: centre each head vector over d_model (TransformerLens' "
        "center_writing_weights, as the paper's GPT-2 is read); false keeps the raw write.",
    )
    position: str = Field(
        "mean",
        pattern="^(mean|last)$",
        description="discrete-sae / mean-diff: head outputs averaged over positions, or the last.",
    )
    acdc_metric: str = Field(
        "kl",
        pattern="^(kl|task)$",
        description="acdc: threshold the KL from the clean output (Conmy et al.) or the task metric.",
    )
    taus: tuple[float, ...] = Field(
        (0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
        min_length=1,
        description="acdc: the τ grid, in units of the clean-vs-corrupted metric difference.",
    )
    validation_prompts: int = Field(40, ge=2, description="acdc: prompts of the validation split that chooses τ.")
    attn_sae_dir: str | None = Field(None, description="attn-sae: per-layer hook_z SAEs (trained there if missing).")
    attn_sae_tokens: int = Field(500_000, gt=0, description="attn-sae: training tokens per layer SAE.")
    sae_dir: str | None = Field(
        None,
        description="feature-circuit: run directory with an SAE at every layer's hook_attn_out, hook_mlp_out "
        "and hook_resid_post (configs/feature_circuit.yaml).",
    )
    ig_steps: int = Field(
        10, ge=1, description="feature-circuit: integrated-gradient steps (the paper: 10); 1 is attribution patching."
    )
    node_threshold: float = Field(
        0.1, ge=0, description="feature-circuit: nodes with |effect| above this, in metric units (the paper: 0.1)."
    )
    edge_threshold: float = Field(
        0.01, ge=0, description="feature-circuit: edges with |effect| above this, in metric units (the paper: 0.01)."
    )
    progress: bool = Field(False, description="Show progress bars.")


@dataclass
class MethodResult:
    task: str
    method: str
    node_scores: dict[Node, float]
    seconds: float
    n_prompts: int
    edge_scores: dict[Edge, float] | None = None
    pair_scores: dict[frozenset, float] | None = None
    #: other head rankings the method defines (discrete-sae: the paper's edge method)
    alt_head_scores: dict[str, dict[Node, float]] = field(default_factory=dict)
    forward_passes: int | None = None
    details: dict = field(default_factory=dict)
    #: top-level figures of the results document beyond the common ones (feature-circuit:
    #: faithfulness, completeness, n_nodes, n_error_nodes, n_edges)
    summary: dict = field(default_factory=dict)

    @property
    def head_scores(self) -> dict[Node, float]:
        return {n: s for n, s in self.node_scores.items() if n.kind == "head"}


def make_batches(tokenizer, task: str, n_prompts: int, seed: int, device=None):
    """The task's module and ``n_prompts`` of its prompts, as tensors on ``device``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    module = TASKS[task]
    return module, module.make_batch(tokenizer, n_prompts, seed=seed, device=device)


def paper_contrast(tokenizer, task: str, n_prompts: int, seed: int, device=None):
    """Positives and the paper's negatives (``paper_negatives``), for the methods that
    contrast pooled head outputs rather than patch."""
    module, batch = make_batches(tokenizer, task, n_prompts, seed, device)
    return module.paper_negatives(tokenizer, batch, seed)


def run_discrete_sae(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    from circuits.discrete_sae import discrete_sae_circuit

    batch = paper_contrast(tokenizer, task, cfg.n_prompts, cfg.seed, model_device(model))
    start = time.time()
    res = discrete_sae_circuit(
        model,
        batch,
        n_train=cfg.n_train,
        family=cfg.family,
        position=cfg.position,
        seed=cfg.seed,
        n_codes=cfg.n_codes,
        k=cfg.k,
        scale_inputs=cfg.scale_inputs,
        center=cfg.center_heads,
    )
    return MethodResult(
        task,
        "discrete-sae",
        res.node_scores,
        time.time() - start,
        cfg.n_prompts,
        pair_scores=res.pair_scores,
        alt_head_scores={"edge_method": res.edge_node_scores},
        forward_passes=2,
        details={
            "sae": cfg.family or "relu (the paper's SAE)",
            "n_train_prompts": cfg.n_train,
            "n_codes": cfg.n_codes,
            "timings": res.timings,
            "codebook": res.codebook,
            "hook": "blocks.L.attn.hook_result (z_h W_O^h)",
            "activation": f"head output z_h W_O^h, {cfg.position} over positions, "
            + ("centred over d_model" if cfg.center_heads else "not centred"),
            "node_score": "codes on positives never seen on negatives",
            "contrast": "positive = clean prompts, negative = the paper's negatives "
            "(IOI: IO -> new name, S1 -> IO; greater-than: YY = 01)",
        },
    )


def run_mean_diff(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    from circuits.discrete_sae import head_outputs

    batch = paper_contrast(tokenizer, task, cfg.n_prompts, cfg.seed, model_device(model))
    start = time.time()
    pos = head_outputs(model, batch.tokens, batch.lengths, cfg.position, cfg.center_heads)
    neg = head_outputs(model, batch.corrupt_tokens, batch.lengths, cfg.position, cfg.center_heads)
    diff = (pos.mean(0) - neg.mean(0)).norm(dim=-1)
    heads = Graph.of(model).heads
    return MethodResult(
        task,
        "mean-diff",
        dict(zip(heads, diff.tolist(), strict=True)),
        time.time() - start,
        cfg.n_prompts,
        forward_passes=2,
        details={
            "hook": "blocks.L.attn.hook_result (z_h W_O^h)",
            "activation": f"head output z_h W_O^h, {cfg.position} over positions, "
            + ("centred over d_model" if cfg.center_heads else "not centred"),
            "node_score": "||mean over positives - mean over negatives||",
        },
    )


def run_patching(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    from circuits.patching import node_patching

    module, batch = make_batches(tokenizer, task, cfg.n_prompts, cfg.seed, model_device(model))
    start = time.time()
    scores, passes = node_patching(model, batch, module.metric)
    return MethodResult(
        task,
        "patching",
        {n: abs(s) for n, s in scores.items()},
        time.time() - start,
        cfg.n_prompts,
        forward_passes=passes,
        details={
            "ablation": "corrupted-prompt activation (node output: head z, MLP out)",
            "metric": module.metric.__name__,
            "node_score": "|fraction of the clean-vs-corrupted metric gap one patch removes|",
            "signed_scores": {str(n): s for n, s in scores.items()},
        },
    )


def run_eap(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    from circuits.patching import eap_scores, node_scores_from_edges

    module, batch = make_batches(tokenizer, task, cfg.n_prompts, cfg.seed, model_device(model))
    start = time.time()
    scores, passes = eap_scores(model, batch, module.metric)
    graph = Graph.of(model)
    nodes = node_scores_from_edges(scores, graph.heads + graph.mlps)
    return MethodResult(
        task,
        "eap",
        nodes,
        time.time() - start,
        cfg.n_prompts,
        edge_scores={e: abs(s) for e, s in scores.items()},
        forward_passes=passes,
        details={
            "ablation": "corrupted-prompt activation (first-order, per edge)",
            "metric": module.metric.__name__,
            "passes": "2 forward + 1 backward",
            "node_score": "largest |attribution| over the node's outgoing edges",
        },
    )


def run_acdc(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    """The τ grid on the scoring prompts gives the ranking; τ is chosen on a separate
    validation split, and the reported runtime is the one run at that τ."""
    from circuits.acdc import acdc_grid

    module, batch = make_batches(tokenizer, task, cfg.n_prompts, cfg.seed, model_device(model))
    _, val = make_batches(tokenizer, task, cfg.validation_prompts, cfg.seed + 1000, model_device(model))
    graph = Graph.of(model)
    grid = acdc_grid(model, batch, val, module.metric, metric=cfg.acdc_metric, taus=cfg.taus, progress=cfg.progress)
    run = grid.chosen
    return MethodResult(
        task,
        "acdc",
        grid.node_scores(graph.heads + graph.mlps),
        run.seconds,
        cfg.n_prompts,
        edge_scores=grid.edge_scores(graph.edges),
        forward_passes=run.forward_passes,
        details={
            "taus": sorted(cfg.taus),
            "chosen_tau": grid.chosen_tau,
            "validation_prompts": cfg.validation_prompts,
            "validation_recovered": {str(t): r for t, r in grid.validation_recovered.items()},
            "ablation": "corrupted-prompt activation per edge",
            "metric": ("KL(clean || patched) at END" if cfg.acdc_metric == "kl" else module.metric.__name__),
            "threshold_on": (
                "increase in KL / KL(clean || corrupted)"
                if cfg.acdc_metric == "kl"
                else "|change in metric| / |clean - corrupted|"
            ),
            "seconds_per_tau": {str(r.tau): r.seconds for r in grid.runs},
            "forward_passes_per_tau": {str(r.tau): r.forward_passes for r in grid.runs},
            "circuit_at_chosen_tau": sorted(str(n) for n in run.nodes()),
            "edges_kept_at_chosen_tau": len(run.kept),
            "n_edges": len(graph.edges),
        },
    )


def run_attn_sae(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    from circuits.attn_sae import attn_sae_circuit

    _, batch = make_batches(tokenizer, task, cfg.n_prompts, cfg.seed, model_device(model))
    res = attn_sae_circuit(model, tokenizer, batch, cfg.attn_sae_dir, cfg.attn_sae_tokens, progress=cfg.progress)
    return MethodResult(
        task, "attn-sae", res.node_scores, res.seconds, cfg.n_prompts, forward_passes=2, details=res.details
    )


def run_feature_circuit(model, tokenizer, task: str, cfg: MethodConfig) -> MethodResult:
    from circuits.feature_attribution import model_sites
    from circuits.feature_circuits import feature_circuit, load_site_saes

    device = model_device(model)
    saes = load_site_saes(cfg.sae_dir, model_sites(model.cfg.n_layers), device)
    module, batch = make_batches(tokenizer, task, cfg.n_prompts, cfg.seed, device)
    start = time.time()
    res = feature_circuit(
        model,
        batch,
        module.metric,
        saes,
        steps=cfg.ig_steps,
        node_threshold=cfg.node_threshold,
        edge_threshold=cfg.edge_threshold,
        progress=cfg.progress,
    )
    return MethodResult(
        task,
        "feature-circuit",
        res.node_scores,
        time.time() - start,
        cfg.n_prompts,
        forward_passes=res.forward_passes,
        details={**res.details, "sae": str(cfg.sae_dir), "metric": module.metric.__name__},
        summary=res.summary,
    )


RUNNERS = {
    "discrete-sae": run_discrete_sae,
    "acdc": run_acdc,
    "patching": run_patching,
    "eap": run_eap,
    "attn-sae": run_attn_sae,
    "mean-diff": run_mean_diff,
    "feature-circuit": run_feature_circuit,
}


def run_method(model, tokenizer, task: str, method: str, cfg: MethodConfig | None = None) -> MethodResult:
    try:
        runner = RUNNERS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}") from None
    return runner(model, tokenizer, task, cfg or MethodConfig())


def evaluate(result: MethodResult, truth) -> dict:
    """Scores of ``result`` against one ground truth: heads always; heads and MLPs, edges
    and the method's other head rankings when both sides have them.

    ``edge_roc_auc`` is only ever an AUC over edges (sender → receiver input: ACDC, EAP).
    The discrete-SAE method has no edge ranking: its co-occurrence scores rank unordered
    head pairs, scored as ``pair_roc_auc`` against the pairs a ground-truth edge joins (a
    lab quantity, not in the paper), and the figure the paper reports as its "edge" ROC
    AUC is the head-level AUC of its edge method, ``edge_method_roc_auc`` (from
    ``alt_head_scores["edge_method"]``)."""
    out = {"ground_truth": truth.name, **score_ranking(result.head_scores, truth.heads)}
    mlps = {n for n in result.node_scores if n.kind == "mlp"}
    if mlps and truth.mlps:
        out["node_roc_auc_with_mlps"] = score_ranking(result.node_scores, truth.nodes)["roc_auc"]
    if result.edge_scores is not None and truth.edges:
        gt_edges = {Edge(s, r, i) for s, r, i in truth.edges} & set(result.edge_scores)
        if gt_edges and len(gt_edges) < len(result.edge_scores):
            edge = score_ranking(result.edge_scores, gt_edges, curve=False)
            out["edge_roc_auc"] = edge["roc_auc"]
            out["n_truth_edges"] = edge["n_truth"]
            out["edge_unit"] = "edge: sender -> receiver input (q, k, v, mlp in, logits)"
    pairs = truth.head_pairs()
    if result.pair_scores is not None and pairs:
        # a head-pair ranking is not an edge ranking: it is kept apart, under its own name
        out["pair_roc_auc"] = score_ranking(result.pair_scores, pairs, curve=False)["roc_auc"]
        out["n_truth_pairs"] = len(pairs & set(result.pair_scores))
        out["pair_unit"] = "unordered head pair (joined by a ground-truth edge)"
    for name, scores in result.alt_head_scores.items():
        out[f"{name}_roc_auc"] = score_ranking(scores, truth.heads, curve=False)["roc_auc"]
    return out
