"""Flat summaries of a results document: the comparison table, the acceptance check, and
Makelov et al.'s random-decoder finding, restated for this model."""

from __future__ import annotations

#: "about as bad": the random-decoder control is within this of the full-distribution mean
#: on every metric (averaged over the cross-sections both cover)
ABOUT_AS_BAD = 0.1
ACCEPTANCE = {"sufficiency": 0.8, "control": 0.8}


def control_summary(ctrl: dict) -> tuple[float | None, float | None, dict]:
    """(headline success, its edit magnitude, success per k): SAEs at their largest k."""
    if "success_by_k" in ctrl:
        by_k = ctrl["success_by_k"]
        top = max(by_k, key=int)
        return by_k[top], ctrl["edit_magnitude_by_k"][top], by_k
    return ctrl.get("success"), ctrl.get("edit_magnitude"), {}


def table_rows(doc: dict) -> list[dict]:
    rows = []
    for key, entry in doc["results"].items():
        info = doc["dictionaries"][key]
        for xs, suff in entry["sufficiency"].items():
            nec, interp = entry["necessity"][xs], entry["interpretability"][xs]
            success, magnitude, by_k = control_summary(entry["control"][xs])
            row = {
                "dictionary": key, "label": info["label"], "kind": info["kind"], "cross_section": xs,
                "l0": suff["l0"], "fvu": suff["fvu"], "sufficiency": suff["score"],
                "sufficiency_gap_recovered": suff["gap_recovered"], "necessity": nec["score"],
                "heldout_sufficiency": suff.get("heldout_template", {}).get("score"),
                "heldout_necessity": nec.get("heldout_template", {}).get("score"),
                "control": success, "edit_magnitude": magnitude,
                "interpretable_fraction": interp["fraction_interpretable"],
                "causal_sufficiency": interp["causal"]["sufficiency"],
                "causal_necessity": interp["causal"]["necessity"],
            }
            row.update({f"control@{k}": v for k, v in by_k.items()})
            rows.append(row)
    return rows


def _rows(doc: dict, xs: str) -> list[dict]:
    return [r for r in doc["table"] if r["cross_section"] == xs]


def acceptance(doc: dict) -> dict:
    """The issue's acceptance numbers at the primary cross-section."""
    xs = doc["primary_cross_section"]
    rows = {r["dictionary"]: r for r in _rows(doc, xs)}
    mean = rows.get("supervised_mean", {})
    arch = {k: d["architecture"] for k, d in doc["dictionaries"].items()}
    task = sorted({arch[k] for k, r in rows.items() if r["kind"] == "task"})
    full = sorted({arch[k] for k, r in rows.items() if r["kind"] == "full"})
    suff, ctrl = mean.get("sufficiency"), mean.get("control")
    return {
        "cross_section": xs,
        "thresholds": ACCEPTANCE,
        "supervised_mean_sufficiency": suff,
        "supervised_mean_control": ctrl,
        "mean_ablation_ratio": doc["baselines"].get(xs, {}).get("mean_ablation_ratio"),
        "control_attributes": doc["results"].get("supervised_mean", {}).get("control", {}).get(xs, {})
        .get("headline_attributes", []),
        "met": suff is not None and ctrl is not None and suff >= ACCEPTANCE["sufficiency"]
        and ctrl >= ACCEPTANCE["control"],
        "task_architectures": task,
        "full_architectures": full,
        "compares_three_architectures": len(task) >= 3 and len(full) >= 3,
        "l0_target": doc["config"]["saes"]["l0"],
        "l0_at_cross_section": {k: r["l0"] for k, r in rows.items()},
    }


def random_decoder_finding(doc: dict) -> dict | None:
    """Is the random-decoder control about as bad as the full-distribution SAEs?"""
    metrics = ("sufficiency", "necessity", "control")
    per_xs, diffs, task_diffs = {}, {m: [] for m in metrics}, {m: [] for m in metrics}
    for xs in {r["cross_section"] for r in doc["table"]}:
        rows = _rows(doc, xs)
        rnd = [r for r in rows if r["dictionary"] == "random_decoder_task"]
        full = [r for r in rows if r["kind"] == "full"]
        task = [r for r in rows if r["kind"] == "task"]
        if not rnd or not full:
            continue
        entry = {}
        for m in metrics:
            f = [r[m] for r in full if r[m] is not None]
            t = [r[m] for r in task if r[m] is not None]
            value = rnd[0][m]
            entry[m] = {"random_decoder": value, "full_mean": sum(f) / len(f) if f else None,
                        "task_mean": sum(t) / len(t) if t else None}
            if value is not None and f:
                diffs[m].append(value - entry[m]["full_mean"])
            if value is not None and t:
                task_diffs[m].append(value - entry[m]["task_mean"])
        per_xs[xs] = entry
    if not per_xs:
        return None
    mean_diff = {m: sum(v) / len(v) if v else None for m, v in diffs.items()}
    mean_task_diff = {m: sum(v) / len(v) if v else None for m, v in task_diffs.items()}
    known = [d for d in mean_diff.values() if d is not None]
    return {
        "tolerance": ABOUT_AS_BAD,
        "random_minus_full": mean_diff,
        "random_minus_task": mean_task_diff,
        "about_as_bad_as_full": bool(known) and all(abs(d) <= ABOUT_AS_BAD for d in known),
        "per_cross_section": per_xs,
    }
