"""Scoring a ranking of heads (or edges) against a ground-truth set.

- ROC AUC: the probability that a random true member outranks a random non-member,
  ties counting one half (the Mann–Whitney U statistic), so it needs no threshold.
- Precision, recall and F1 at the top-|GT| selection, and at the threshold with the best F1.
- The TPR/TNR harmonic mean, 2·TPR·TNR/(TPR+TNR), best over thresholds: what O'Neill &
  Bui's code reports as "F1". It is labelled as such, never as F1.
"""

from __future__ import annotations

from collections.abc import Hashable


def roc_auc(scores: dict[Hashable, float], truth: set) -> float:
    pos = [s for k, s in scores.items() if k in truth]
    neg = [s for k, s in scores.items() if k not in truth]
    if not pos or not neg:
        raise ValueError("ROC AUC needs at least one member and one non-member of the ground truth")
    ranked = sorted(scores.values())
    # average ranks (1-based), ties sharing the mean rank
    rank_of: dict[float, float] = {}
    i = 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j] == ranked[i]:
            j += 1
        rank_of[ranked[i]] = (i + 1 + j) / 2
        i = j
    u = sum(rank_of[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def roc_curve(scores: dict[Hashable, float], truth: set) -> list[tuple[float, float]]:
    """(FPR, TPR) points from the strictest threshold to the loosest, (0,0) to (1,1)."""
    n_pos = sum(1 for k in scores if k in truth)
    n_neg = len(scores) - n_pos
    points = [(0.0, 0.0)]
    for threshold in sorted(set(scores.values()), reverse=True):
        chosen = {k for k, s in scores.items() if s >= threshold}
        tp = len(chosen & truth)
        points.append(((len(chosen) - tp) / n_neg, tp / n_pos))
    return points


def _prf(chosen: set, truth: set) -> dict[str, float]:
    tp = len(chosen & truth)
    precision = tp / len(chosen) if chosen else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def score_ranking(scores: dict[Hashable, float], truth: set) -> dict:
    """Every number the circuit tables report, for one method against one ground truth."""
    truth = {t for t in truth if t in scores}
    ordered = sorted(scores, key=lambda k: (-scores[k], str(k)))
    top = set(ordered[: len(truth)])
    thresholds = sorted(set(scores.values()), reverse=True)
    best, best_hm = None, 0.0
    n_neg = len(scores) - len(truth)
    for t in thresholds:
        chosen = {k for k, s in scores.items() if s >= t}
        row = _prf(chosen, truth)
        if best is None or row["f1"] > best["f1"]:
            best = {**row, "threshold": t, "size": len(chosen)}
        tpr = row["recall"]
        tnr = (n_neg - len(chosen - truth)) / n_neg if n_neg else 0.0
        if tpr + tnr:
            best_hm = max(best_hm, 2 * tpr * tnr / (tpr + tnr))
    at_top = _prf(top, truth)
    return {
        "roc_auc": roc_auc(scores, truth),
        "precision": at_top["precision"],
        "recall": at_top["recall"],
        "f1": at_top["f1"],
        "best_threshold": best,
        "tpr_tnr_harmonic_mean": best_hm,
        "n_truth": len(truth),
        "n_candidates": len(scores),
        "roc_curve": roc_curve(scores, truth),
    }
