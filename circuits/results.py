"""The ``circuit`` results file: what ``saelab circuit``, the bench, the notebooks, the
report and the explorer write and read. Keep it stable; add keys, never rename them.

One run of one method (``kind: "circuit"``, ``schema_version: 1``)::

    kind, schema_version       "circuit", 1
    task                       "ioi" | "greater-than"
    model                      "organism", "organism-b", a directory or a hub name (a document
                               without it means "organism")
    n_layers, n_heads          the model's shape (heads per layer)
    method                     discrete-sae | acdc | patching | eap | attn-sae | mean-diff |
                               feature-circuit
    hook, sae                  what the method read, and the SAE it trained or loaded (or null)
    config                     the MethodConfig of the run
    ground_truth               name of the primary ground truth (null when none applies)
    roc_auc, precision, recall, f1, tpr_tnr_harmonic_mean
                               head scores against the primary ground truth (null when none):
                               node ROC AUC; P/R/F1 at the top-|GT| heads; the O'Neill & Bui
                               TPR/TNR harmonic mean (not an F1)
    seconds                    wall-clock seconds end to end (SAE training included; ACDC: one
                               run at the τ chosen on validation prompts)
    n_prompts, forward_passes  prompts scored on; forward passes of the timed run (if counted)
    heads                      [{head "L.H", layer, index, score, in_ground_truth}], best first
    mlps                       {"mlpL": score} for methods that score MLPs
    top_edges                  [{edge "s->r[input]", score}] (≤ 100, best first) for edge methods
    by_ground_truth            {name: every score of ``circuits.scoring.score_ranking`` (with
                               roc_curve [[fpr, tpr], ...] and best_threshold) plus, where both
                               sides have them, node_roc_auc_with_mlps, edge_roc_auc with its
                               edge_unit and n_truth_edges (edges only: ACDC, EAP),
                               edge_method_roc_auc (discrete-sae: the head-level AUC of the
                               paper's edge method, the figure the paper calls its edge ROC
                               AUC), pair_roc_auc with pair_unit and n_truth_pairs
                               (discrete-sae: its head-pair co-occurrence ranking against
                               the head pairs a ground-truth edge joins; not the paper's)}
    ground_truths              {name: {heads: ["L.H"], mlps: ["mlpL"], source}}
    details                    method-specific: ablation, metric, timings, chosen τ, ...
    faithfulness, completeness, n_nodes, n_error_nodes, n_edges
                               feature-circuit only: the circuit at the node threshold (latents
                               counted in n_nodes, error nodes apart); its curves are in details
    repeats (optional)         {seeds, roc_auc, seconds, roc_auc_mean, roc_auc_sd}: the same run
                               over several seeds (top-level numbers are the first seed's)

A sweep of the discrete-SAE method (``kind: "circuit"`` with a ``sweep`` key and no
``heads``)::

    sweep                      {parameter, values, ground_truth, rows: [{value, roc_auc_mean,
                               roc_auc_sd, roc_auc (per seed), seconds_mean, ...}]}
"""

from __future__ import annotations

from circuits.graph import Edge

SCHEMA_VERSION = 1
TOP_EDGES = 100


def result_json(res, model_name: str, n_layers: int, n_heads: int, truths: list, config: dict) -> dict:
    """The results document of one ``MethodResult`` scored against ``truths`` (first = primary)."""
    from circuits.methods import evaluate

    scored = [evaluate(res, t) for t in truths]
    top = scored[0] if scored else {}
    truth_heads = truths[0].heads if truths else set()
    heads = sorted(res.head_scores.items(), key=lambda kv: (-kv[1], kv[0]))
    edges: list[tuple[Edge, float]] = []
    if res.edge_scores:
        edges = sorted(res.edge_scores.items(), key=lambda kv: (-abs(kv[1]), str(kv[0])))[:TOP_EDGES]
    details = {k: v for k, v in res.details.items() if k not in ("signed_scores", "hook", "sae")}
    doc = {
        "kind": "circuit",
        "schema_version": SCHEMA_VERSION,
        "task": res.task,
        "model": model_name,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "method": res.method,
        "hook": res.details.get("hook"),
        "sae": res.details.get("sae"),
        "config": config,
        "ground_truth": top.get("ground_truth"),
        **{k: top.get(k) for k in ("roc_auc", "precision", "recall", "f1", "tpr_tnr_harmonic_mean")},
        "seconds": res.seconds,
        "n_prompts": res.n_prompts,
        "forward_passes": res.forward_passes,
        "heads": [
            {"head": str(n), "layer": n.layer, "index": n.head, "score": s, "in_ground_truth": n in truth_heads}
            for n, s in heads
        ],
        "mlps": {str(n): s for n, s in sorted(res.node_scores.items()) if n.kind == "mlp"},
        "top_edges": [{"edge": str(e), "score": s} for e, s in edges],
        "by_ground_truth": {s["ground_truth"]: s for s in scored},
        "ground_truths": {
            t.name: {
                "heads": sorted(str(n) for n in t.heads),
                "mlps": sorted(str(n) for n in t.mlps),
                "source": t.source,
            }
            for t in truths
        },
        "details": details,
    }
    doc.update({k: v for k, v in res.summary.items() if k not in doc})  # a method's own figures, never a common key
    return doc


def with_repeats(first: dict, others: list[dict]) -> dict:
    """``first`` with a ``repeats`` block summarising it and ``others`` (other seeds)."""
    import statistics

    runs = [first, *others]
    aucs = [r["roc_auc"] for r in runs if r.get("roc_auc") is not None]
    out = dict(first)
    out["repeats"] = {
        "seeds": [r["config"]["seed"] for r in runs],
        "roc_auc": aucs,
        "seconds": [r["seconds"] for r in runs],
        "roc_auc_mean": statistics.mean(aucs) if aucs else None,
        "roc_auc_sd": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
        "seconds_mean": statistics.mean(r["seconds"] for r in runs),
        "by_ground_truth": {
            name: {"roc_auc_mean": statistics.mean(v), "roc_auc_sd": statistics.stdev(v) if len(v) > 1 else 0.0}
            for name in first["by_ground_truth"]
            for v in [[r["by_ground_truth"][name]["roc_auc"] for r in runs]]
        },
    }
    return out


def check(doc: dict) -> dict:
    """``doc`` if it is a circuit results document this code reads, else ValueError."""
    if doc.get("kind") != "circuit":
        raise ValueError(f"not a circuit results document (kind {doc.get('kind')!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"circuit results schema_version {doc.get('schema_version')!r}; this saelab reads {SCHEMA_VERSION}"
        )
    return doc
