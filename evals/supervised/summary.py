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


def l0_matched(l0: float, target: float, tolerance: float) -> bool:
    return abs(l0 - target) <= tolerance * target


def table_rows(doc: dict) -> list[dict]:
    """One row per (dictionary, cross-section). ``l0_matched``: the L0 on the evaluation prompts
    is within the tolerance of the target (supervised dictionaries are always compared);
    ``failed``: FVU ≥ 1, i.e. the reconstruction is no better than the mean activation."""
    target, tolerance = doc["config"]["saes"]["l0"], doc["config"]["saes"]["l0_tolerance"]
    rows = []
    for key, entry in doc["results"].items():
        info = doc["dictionaries"][key]
        for xs, suff in entry["sufficiency"].items():
            nec, interp = entry["necessity"][xs], entry["interpretability"][xs]
            success, magnitude, by_k = control_summary(entry["control"][xs])
            row = {
                "dictionary": key,
                "label": info["label"],
                "kind": info["kind"],
                "cross_section": xs,
                "l0": suff["l0"],
                "fvu": suff["fvu"],
                "sufficiency": suff["score"],
                "l0_matched": info["kind"] == "supervised" or l0_matched(suff["l0"], target, tolerance),
                "failed": suff["fvu"] is not None and suff["fvu"] >= 1.0,
                "sufficiency_gap_recovered": suff["gap_recovered"],
                "necessity": nec["score"],
                "heldout_sufficiency": suff.get("heldout_template", {}).get("score"),
                "heldout_necessity": nec.get("heldout_template", {}).get("score"),
                "control": success,
                "control_on_changed": _on_changed(entry["control"][xs]),
                "edit_magnitude": magnitude,
                "interpretable_fraction": interp["fraction_interpretable"],
                "causal_sufficiency": interp["causal"]["sufficiency"],
                "causal_sufficiency_reconstruction": interp["causal"].get("sufficiency_reconstruction"),
                "causal_necessity": interp["causal"]["necessity"],
            }
            row.update({f"control@{k}": v for k, v in by_k.items()})
            rows.append(row)
    return rows


def _on_changed(ctrl: dict) -> float | None:
    """Success on the prompts whose prediction the patch changes, over the informative
    attributes (SAEs at their largest k)."""
    values = []
    for a in ctrl.get("headline_attributes", []):
        entry = ctrl["attributes"][a]
        if "by_k" in entry:
            entry = entry["by_k"][max(entry["by_k"], key=int)]
        if entry.get("success_on_changed") is not None:
            values.append(entry["success_on_changed"])
    return sum(values) / len(values) if values else None


def _rows(doc: dict, xs: str) -> list[dict]:
    return [r for r in doc["table"] if r["cross_section"] == xs]


def _comparable(rows: list[dict], kind: str) -> list[dict]:
    """Rows of one kind that enter summaries: at matched L0 and not failed."""
    return [r for r in rows if r["kind"] == kind and r["l0_matched"] and not r["failed"]]


def acceptance(doc: dict) -> dict:
    """The issue's acceptance numbers at the primary cross-section."""
    xs = doc["primary_cross_section"]
    rows = {r["dictionary"]: r for r in _rows(doc, xs)}
    mean = rows.get("supervised_mean", {})
    arch = {k: d["architecture"] for k, d in doc["dictionaries"].items()}
    task = sorted({arch[r["dictionary"]] for r in _comparable(list(rows.values()), "task")})
    full = sorted({arch[r["dictionary"]] for r in _comparable(list(rows.values()), "full")})
    off = sorted(k for k, r in rows.items() if r["kind"] != "supervised" and not r["l0_matched"])
    failed = sorted(k for k, r in rows.items() if r["failed"])
    suff, ctrl = mean.get("sufficiency"), mean.get("control")
    return {
        "cross_section": xs,
        "thresholds": ACCEPTANCE,
        "supervised_mean_sufficiency": suff,
        "supervised_mean_control": ctrl,
        "mean_ablation_ratio": doc["baselines"].get(xs, {}).get("mean_ablation_ratio"),
        "control_attributes": doc["results"]
        .get("supervised_mean", {})
        .get("control", {})
        .get(xs, {})
        .get("headline_attributes", []),
        "met": suff is not None
        and ctrl is not None
        and suff >= ACCEPTANCE["sufficiency"]
        and ctrl >= ACCEPTANCE["control"],
        "task_architectures": task,
        "full_architectures": full,
        "outside_l0_band": off,
        "failed": failed,
        "compares_three_architectures": len(task) >= 3 and len(full) >= 3,
        "l0_target": doc["config"]["saes"]["l0"],
        "l0_tolerance": doc["config"]["saes"]["l0_tolerance"],
        "l0_at_cross_section": {k: r["l0"] for k, r in rows.items()},
    }


def random_decoder_finding(doc: dict) -> dict | None:
    """Is the random-decoder control about as bad as the full-distribution SAEs? Compared
    with the full-distribution (and task) families at matched L0 that did not fail."""
    metrics = ("sufficiency", "necessity", "control")
    per_xs, diffs, task_diffs = {}, {m: [] for m in metrics}, {m: [] for m in metrics}
    used: set[str] = set()
    for xs in sorted({r["cross_section"] for r in doc["table"]}):
        rows = _rows(doc, xs)
        rnd = [r for r in rows if r["dictionary"] == "random_decoder_task"]
        full, task = _comparable(rows, "full"), _comparable(rows, "task")
        if not rnd or not full:
            continue
        used |= {r["dictionary"] for r in full}
        entry = {}
        for m in metrics:
            f = [r[m] for r in full if r[m] is not None]
            t = [r[m] for r in task if r[m] is not None]
            value = rnd[0][m]
            entry[m] = {
                "random_decoder": value,
                "full_mean": sum(f) / len(f) if f else None,
                "task_mean": sum(t) / len(t) if t else None,
            }
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
        "full_families": sorted(used),
        "random_minus_full": mean_diff,
        "random_minus_task": mean_task_diff,
        "about_as_bad_as_full": bool(known) and all(abs(d) <= ABOUT_AS_BAD for d in known),
        "per_cross_section": per_xs,
    }
