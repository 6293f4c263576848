"""Methods side by side: table rows and plain-language verdicts from ``circuit`` results.

Pure functions over results documents (``circuits.results``), shared by the bench, the
report, the notebooks and the explorer.
"""

from __future__ import annotations

REFERENCE = "discrete-sae"
BASELINE_FOR_TIME = "acdc"


def _auc(doc: dict, truth: str) -> tuple[float | None, float | None]:
    """(mean, sd) node ROC AUC of ``doc`` against ``truth``: over seeds when repeated."""
    rep = (doc.get("repeats") or {}).get("by_ground_truth", {}).get(truth)
    if rep:
        return rep["roc_auc_mean"], rep["roc_auc_sd"]
    scored = doc.get("by_ground_truth", {}).get(truth)
    return (scored["roc_auc"], None) if scored else (None, None)


def _seconds(doc: dict) -> float:
    rep = doc.get("repeats")
    return rep["seconds_mean"] if rep else doc["seconds"]


def model_of(doc: dict) -> str:
    """The model a results document was run on; documents written before the second
    organism and bench rows without a ``model`` field mean the first organism."""
    return doc.get("model") or "organism"


def runs(docs: list[dict]) -> list[dict]:
    """The single-run documents (sweeps left out)."""
    return [d for d in docs if "sweep" not in d and "heads" in d]


def summary_rows(docs: list[dict]) -> list[dict]:
    """One row per (model, task, method, ground truth): AUCs, P/R/F1, seconds, passes, and
    the time as a fraction of the ACDC run on the same model and task."""
    docs = runs(docs)
    acdc = {(model_of(d), d["task"]): _seconds(d) for d in docs if d["method"] == BASELINE_FOR_TIME}
    rows = []
    for d in docs:
        where = (model_of(d), d["task"])
        for truth, scored in d["by_ground_truth"].items():
            mean, sd = _auc(d, truth)
            secs = _seconds(d)
            rows.append(
                {
                    "model": where[0],
                    "task": d["task"],
                    "method": d["method"],
                    "ground_truth": truth,
                    "roc_auc": mean,
                    "roc_auc_sd": sd,
                    "seeds": len((d.get("repeats") or {}).get("seeds", [0])),
                    "edge_roc_auc": scored.get("edge_roc_auc"),
                    "edge_unit": scored.get("edge_unit"),
                    "node_roc_auc_with_mlps": scored.get("node_roc_auc_with_mlps"),
                    "edge_method_roc_auc": scored.get("edge_method_roc_auc"),
                    "pair_roc_auc": scored.get("pair_roc_auc"),
                    "precision": scored["precision"],
                    "recall": scored["recall"],
                    "f1": scored["f1"],
                    "tpr_tnr_harmonic_mean": scored["tpr_tnr_harmonic_mean"],
                    "seconds": secs,
                    "forward_passes": d.get("forward_passes"),
                    "n_prompts": d["n_prompts"],
                    "fraction_of_acdc_time": secs / acdc[where] if acdc.get(where) else None,
                }
            )
    rows.sort(key=lambda r: (r["model"], r["task"], r["ground_truth"], -(r["roc_auc"] or 0)))
    return rows


def verdicts(docs: list[dict], reference: str = REFERENCE) -> list[str]:
    """Sentences saying, per task and ground truth, which methods beat ``reference`` on
    node ROC AUC, on time, or on both, and whether it meets the 1/20-of-ACDC time bar
    (per model too, the model named when there are several)."""
    rows = summary_rows(docs)
    several = len({r["model"] for r in rows}) > 1
    out = []
    for model, task_name, truth in sorted({(r["model"], r["task"], r["ground_truth"]) for r in rows}):
        group = [r for r in rows if (r["model"], r["task"], r["ground_truth"]) == (model, task_name, truth)]
        task = f"{model} / {task_name}" if several else task_name
        ref = next((r for r in group if r["method"] == reference), None)
        if ref is None or ref["roc_auc"] is None:
            continue
        for r in group:
            if r["method"] == reference or r["roc_auc"] is None:
                continue
            better_auc, faster = r["roc_auc"] > ref["roc_auc"], r["seconds"] < ref["seconds"]
            if better_auc or faster:
                what = "on AUC and on speed" if better_auc and faster else ("on AUC" if better_auc else "on speed")
                out.append(
                    f"{task} vs {truth}: {r['method']} beats {reference} {what} "
                    f"(AUC {r['roc_auc']:.3f} vs {ref['roc_auc']:.3f}; "
                    f"{r['seconds']:.2f} s vs {ref['seconds']:.2f} s)."
                )
        if ref["fraction_of_acdc_time"] is not None:
            ok = "meets" if ref["fraction_of_acdc_time"] <= 1 / 20 else "misses"
            out.append(
                f"{task}: {reference} takes {ref['fraction_of_acdc_time']:.3f} of one ACDC run's time "
                f"({ok} the 1/20 bar)."
            )
    return list(dict.fromkeys(out))
