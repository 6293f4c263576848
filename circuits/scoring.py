"""Scoring a ranking of heads (or edges) against a ground-truth set.

- ROC AUC: the probability that a random true member outranks a random non-member,
  ties counting one half: the Mann–Whitney U statistic over |members|·|non-members|,
  from scipy's average ranks (as sklearn's ``roc_auc_score``), so it needs no threshold.
- The ROC curve: (FPR, TPR) at every distinct score used as a threshold (select every
  candidate scoring at least it), from (0, 0) to (1, 1).
- Precision, recall and F1 at the top-|GT| selection (ties broken by name), and at the
  threshold with the best F1.
- The TPR/TNR harmonic mean, 2·TPR·TNR/(TPR+TNR), best over thresholds: what O'Neill &
  Bui's code reports as "F1". It is labelled as such, never as F1.

Everything is one sort, O(n log n), so 30k-edge rankings score in milliseconds.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from scipy.stats import rankdata


def _groups(scores: dict[Hashable, float], truth: set) -> list[tuple[float, int, int]]:
    """(score, members, non-members) per distinct score, highest score first."""
    out: list[tuple[float, int, int]] = []
    for key, s in sorted(scores.items(), key=lambda kv: -kv[1]):
        hit = key in truth
        if out and out[-1][0] == s:
            _, p, n = out[-1]
            out[-1] = (s, p + hit, n + (not hit))
        else:
            out.append((s, int(hit), int(not hit)))
    return out


def roc_auc(scores: dict[Hashable, float], truth: set) -> float:
    member = np.fromiter((k in truth for k in scores), dtype=bool, count=len(scores))
    n_pos = int(member.sum())
    n_neg = len(scores) - n_pos
    if not n_pos or not n_neg:
        raise ValueError("ROC AUC needs at least one member and one non-member of the ground truth")
    ranks = rankdata(np.fromiter(scores.values(), dtype=np.float64, count=len(scores)))  # ties: average rank
    u = float(ranks[member].sum()) - n_pos * (n_pos + 1) / 2  # Mann–Whitney U of the members
    return u / (n_pos * n_neg)


def roc_curve(scores: dict[Hashable, float], truth: set) -> list[tuple[float, float]]:
    """(FPR, TPR) points from the strictest threshold to the loosest, (0,0) to (1,1)."""
    n_pos = sum(1 for k in scores if k in truth)
    n_neg = len(scores) - n_pos
    points, tp, fp = [(0.0, 0.0)], 0, 0
    for _, p, n in _groups(scores, truth):
        tp, fp = tp + p, fp + n
        points.append((fp / n_neg if n_neg else 0.0, tp / n_pos if n_pos else 0.0))
    return points


def _prf(tp: int, chosen: int, n_truth: int) -> dict[str, float]:
    precision = tp / chosen if chosen else 0.0
    recall = tp / n_truth if n_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def score_ranking(scores: dict[Hashable, float], truth: set, curve: bool = True) -> dict:
    """Every number the circuit tables report, for one method against one ground truth
    (members of ``truth`` the method does not score are left out)."""
    truth = {t for t in truth if t in scores}
    n_truth, n_neg = len(truth), len(scores) - len(truth)
    ordered = sorted(scores, key=lambda k: (-scores[k], str(k)))
    at_top = _prf(sum(1 for k in ordered[:n_truth] if k in truth), n_truth, n_truth)
    best, best_hm, tp, chosen = None, 0.0, 0, 0
    for s, p, n in _groups(scores, truth):
        tp, chosen = tp + p, chosen + p + n
        row = _prf(tp, chosen, n_truth)
        if best is None or row["f1"] > best["f1"]:
            best = {**row, "threshold": s, "size": chosen}
        tpr, tnr = row["recall"], ((n_neg - (chosen - tp)) / n_neg if n_neg else 0.0)
        if tpr + tnr:
            best_hm = max(best_hm, 2 * tpr * tnr / (tpr + tnr))
    return {
        "roc_auc": roc_auc(scores, truth),
        "precision": at_top["precision"],
        "recall": at_top["recall"],
        "f1": at_top["f1"],
        "best_threshold": best,
        "tpr_tnr_harmonic_mean": best_hm,
        "n_truth": n_truth,
        "n_candidates": len(scores),
        **({"roc_curve": roc_curve(scores, truth)} if curve else {}),
    }
