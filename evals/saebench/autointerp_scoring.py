"""Autointerp scores: delphi's classifier metrics and SAEBench's per-latent score.

delphi (EleutherAI/delphi, read at eai-delphi 0.1.3 on PyPI, ``scorers/classifier`` and
``log/result_analysis.py``): each test example has a true label (1: an activating example,
0: a non-activating one) and a prediction; the headline ``accuracy`` is **balanced**,
(TPR + TNR) / 2. Failed predictions (the judge's reply could not be parsed, the request
failed) are left out of the counts, as delphi sets ``correct = None`` for them; they are
counted separately.

SAEBench (sae-bench 0.6.0, ``evals/autointerp/main.py``): the judge names which of the
shuffled scoring examples activate; the latent's score is the plain fraction of examples
classified correctly (``score_predictions``), and ``autointerp_score`` is its mean over
latents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def confusion(labels: Sequence[bool], predictions: Sequence[bool | None]) -> dict[str, int]:
    """TP, TN, FP, FN over the examples with a prediction, and how many had none."""
    out = {"tp": 0, "tn": 0, "fp": 0, "fn": 0, "failed": 0}
    for y, p in zip(labels, predictions, strict=True):
        if p is None:
            out["failed"] += 1
        elif y:
            out["tp" if p else "fn"] += 1
        else:
            out["fp" if p else "tn"] += 1
    return out


def classifier_metrics(labels: Sequence[bool], predictions: Sequence[bool | None]) -> dict[str, float | int]:
    """delphi's ``compute_classification_metrics``: balanced accuracy (TPR + TNR) / 2, precision, recall, F1.

    As delphi, a rate whose denominator is zero counts as 0 (so one class alone caps the balanced
    accuracy at 0.5)."""
    return metrics_from_confusion(confusion(labels, predictions))


def metrics_from_confusion(c: dict[str, int]) -> dict[str, float | int]:
    pos, neg = c["tp"] + c["fn"], c["tn"] + c["fp"]
    tpr = c["tp"] / pos if pos else 0.0
    tnr = c["tn"] / neg if neg else 0.0
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    f1 = 2 * precision * tpr / (precision + tpr) if precision + tpr > 0 else 0.0
    return {
        "balanced_accuracy": (tpr + tnr) / 2,
        "precision": precision,
        "recall": tpr,
        "true_negative_rate": tnr,
        "f1": f1,
        **c,
    }


def pooled(confusions: Sequence[dict[str, int]]) -> dict[str, float | int]:
    """delphi's aggregate (``get_agg_metrics``): one confusion matrix summed over every latent's examples."""
    total = {k: sum(c[k] for c in confusions) for k in ("tp", "tn", "fp", "fn", "failed")}
    return metrics_from_confusion(total)


def saebench_score(predicted: Sequence[int], active: Sequence[bool]) -> float:
    """SAEBench's per-latent score: the share of examples (numbered from 1) classified correctly."""
    chosen = set(predicted)
    return sum((i in chosen) == a for i, a in enumerate(active, start=1)) / len(active)


def parse_saebench_predictions(reply: str) -> list[int] | None:
    """SAEBench's ``parse_predictions``: comma-separated example numbers or "None"; None if malformed."""
    parts = reply.strip().rstrip(".").replace("and", ",").replace("None", "").split(",")
    items = [p.strip() for p in parts if p.strip()]
    if not all(p.isdigit() for p in items):
        return None
    return [int(p) for p in items]


def parse_explanation_saebench(reply: str) -> str:
    """SAEBench's ``parse_explanation``: the text after the last "activates on", without a final period."""
    return reply.split("activates on")[-1].rstrip(".").strip()


def parse_explanation_delphi(reply: str) -> str | None:
    """delphi's ``parse_explanation``: the text after ``[EXPLANATION]:`` (None when absent)."""
    import re

    match = re.search(r"\[EXPLANATION\]:\s*(.*)", reply, re.DOTALL)
    return match.group(1).strip() if match else None


def parse_delphi_predictions(reply: str, n: int) -> list[bool]:
    """delphi's ``Classifier._parse``: the first ``[...]`` list, of exactly ``n`` 0/1 entries.

    Raises ValueError naming what is wrong (delphi logs it and records the batch as failed).
    """
    import json
    import re

    match = re.search(r"\[.*?\]", reply, re.DOTALL)
    if match is None:
        raise ValueError(f"no [...] list in the reply {reply[:60]!r}")
    try:
        raw = json.loads(match.group(0))
    except ValueError as err:
        raise ValueError(f"the list {match.group(0)[:60]!r} is not valid JSON") from err
    if not isinstance(raw, list) or len(raw) != n or not all(v in (0, 1, True, False) for v in raw):
        raise ValueError(f"expected a list of {n} zeros and ones, got {match.group(0)[:60]!r}")
    return [bool(v) for v in raw]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1, as SAEBench's ``tensor.std()``) of the finite values."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
