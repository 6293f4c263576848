"""The report section for ``circuit`` results (``evals.report`` builds the page).

The section is described with ``sae.report``'s ``Section`` and ``Table``; ``evals``, which
renders it, sits above ``circuits`` and is not imported here.
"""

from __future__ import annotations

from circuits import figures
from circuits.compare import model_of, runs, summary_rows, verdicts
from sae.report import Section, Table

COLUMNS = [
    "model",
    "task",
    "method",
    "ground_truth",
    "roc_auc",
    "roc_auc_sd",
    "seeds",
    "edge_roc_auc",
    "edge_method_roc_auc",
    "pair_roc_auc",
    "node_roc_auc_with_mlps",
    "precision",
    "recall",
    "f1",
    "tpr_tnr_harmonic_mean",
    "seconds",
    "fraction_of_acdc_time",
    "forward_passes",
    "n_prompts",
]


def circuit_section(results: list[dict]) -> Section:
    section = Section(
        title="Circuit discovery",
        intro="Each method ranks the model's heads (and MLPs and edges where it can) for a task; the ranking is "
        "scored against ground-truth circuits that no method under test defined. Node ROC AUC needs no "
        "threshold; precision, recall and F1 are at the top-|ground truth| heads; the TPR/TNR harmonic mean "
        "is what O'Neill & Bui's code calls F1. Edge ROC AUC is over edges (ACDC, EAP); for the "
        "discrete-SAE method, edge_method_roc_auc is the head-level AUC of the paper's edge method (the "
        "figure the paper reports as its edge ROC AUC) and pair_roc_auc its head-pair ranking against the "
        "head pairs a ground-truth edge joins (the lab's, not the paper's). Seconds are wall-clock, end to "
        "end, SAE training included; ACDC's are one run at the threshold chosen on validation prompts.",
    )
    single = runs(results)
    for model, task in sorted({(model_of(d), d["task"]) for d in single}):
        docs = [d for d in single if (model_of(d), d["task"]) == (model, task)]
        truths = sorted({t for d in docs for t in d["by_ground_truth"]})
        primary = next((d["ground_truth"] for d in docs if d.get("ground_truth")), None)
        section.figures.append(figures.heatmap_grid(docs, primary))
        for truth in truths:
            section.figures.append(figures.roc_figure(docs, truth))
    if single:
        section.figures.append(figures.runtime_figure(single))
        rows = summary_rows(single)
        section.tables.append(
            Table(
                caption="Methods side by side (node ROC AUC: mean over seeds where repeated)",
                columns=COLUMNS,
                rows=rows,
            )
        )
        section.notes.extend(verdicts(single))
    for doc in results:
        if "sweep" in doc:
            section.figures.append(figures.sweep_figure(doc))
            sw = doc["sweep"]
            section.tables.append(
                Table(
                    caption=f"{model_of(doc)} · {doc['task']}: discrete-SAE sweep over {sw['parameter']} "
                    f"against {sw['ground_truth']} ({len(sw['seeds'])} seeds)",
                    columns=["value", "roc_auc_mean", "roc_auc_sd", "seconds_mean", "train_rows_without_code_mean"],
                    rows=sw["rows"],
                )
            )
    for doc in single:
        codebook = (doc.get("details") or {}).get("codebook") or {}
        if codebook.get("train_rows_without_code", 0) > 0.5:
            section.notes.append(
                f"{model_of(doc)} · {doc['task']} / {doc['method']}: the codebook encodes "
                f"{codebook['train_rows_without_code']:.0%} of its "
                "own training rows with no active latent (the L1 penalty outweighs the reconstruction at this "
                "activation scale), so most codes come from untrained encoder directions."
            )
        rho = codebook.get("score_vs_codes_used_spearman")
        if rho is not None and rho > 0.8:
            section.notes.append(
                f"{model_of(doc)} · {doc['task']} / {doc['method']}: the node score follows how many distinct "
                f"codes a head uses on positives (Spearman ρ = {rho:.2f}): heads with varied outputs collect "
                "positive-only codes whether or not they are in the circuit."
            )
    return section
