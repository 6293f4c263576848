"""Feature interpretability against attribute predicates (Makelov et al. §4.4).

A feature is read as the set of prompts on which it is active (code > 0). Its F1 against
a binary predicate of the prompt measures how well that set and the predicate coincide;
F1 = α guarantees precision and recall ≥ α/(2 − α). Predicates:

- single attribute values: IO = v, S = v, Pos = p;
- attribute × position: IO = v ∧ Pos = p, S = v ∧ Pos = p;
- name sets: for each feature, the union of its j best single IO (or S) names, j ≤
  ``max_name_set`` (the paper's greedy groups), and the names' gender (IO or S male/female).

Each feature keeps its best predicate. The *coverage* of an attribute is the mean, over
its values, of the best F1 any feature reaches for that value: whether the dictionary
has a feature for each value at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from evals.supervised.metrics import f1_scores, name_set_f1
from evals.supervised.prompts import POS_VALUES, PromptSpec, gender_of

GROUPS = ("IO", "S", "Pos", "IO×Pos", "S×Pos", "IO set", "S set", "IO gender", "S gender")


@dataclass
class Predicates:
    masks: torch.Tensor  # [n, p] bool
    labels: list[str]
    groups: list[str]


def predicates(specs: Sequence[PromptSpec]) -> Predicates:
    """Every fixed predicate with at least one true prompt."""
    masks, labels, groups = [], [], []

    def add(mask: list[bool], label: str, group: str) -> None:
        if any(mask):
            masks.append(torch.tensor(mask))
            labels.append(label)
            groups.append(group)

    ios, ss = sorted({p.io for p in specs}), sorted({p.s for p in specs})
    for attr, values in (("IO", ios), ("S", ss)):
        get = (lambda p: p.io) if attr == "IO" else (lambda p: p.s)
        for v in values:
            add([get(p) == v for p in specs], f"{attr}={v}", attr)
        for v in values:
            for pos in POS_VALUES:
                add([get(p) == v and p.pos == pos for p in specs], f"{attr}={v} & Pos={pos}", f"{attr}×Pos")
        for g in ("male", "female"):
            add([gender_of(get(p)) == g for p in specs], f"{attr} {g}", f"{attr} gender")
    for pos in POS_VALUES:
        add([p.pos == pos for p in specs], f"Pos={pos}", "Pos")
    return Predicates(torch.stack(masks, 1), labels, groups)


@dataclass
class FeatureF1:
    """Per feature: whether it fires on the prompts, its best F1, and the predicate."""

    live: torch.Tensor  # [m] bool
    best_f1: torch.Tensor  # [m]
    labels: list[str]
    groups: list[str]
    coverage: dict[str, float]  # attribute → mean over values of the best F1 of any feature


def feature_f1(codes: torch.Tensor, specs: Sequence[PromptSpec], max_name_set: int = 10) -> FeatureF1:
    active = codes > 0
    live = active.any(0)
    preds = predicates(specs)
    scores = f1_scores(active, preds.masks)  # [m, p]
    scores[~live] = 0.0
    best, where = scores.max(-1)
    labels = [preds.labels[i] for i in where.tolist()]
    groups = [preds.groups[i] for i in where.tolist()]
    for attr in ("IO", "S"):
        names = sorted({p.value(attr) for p in specs})
        values = torch.tensor([names.index(p.value(attr)) for p in specs])
        sets, order = name_set_f1(active, values, len(names), max_name_set)
        if sets.shape[1] < 2:
            continue
        set_best, set_size = sets[:, 1:].max(-1)  # unions of two or more names
        for i in (set_best > best).nonzero().flatten().tolist():
            members = sorted(names[v] for v in order[i, : int(set_size[i]) + 2].tolist())
            best[i] = set_best[i]
            labels[i] = f"{attr}∈{{{','.join(members)}}}"
            groups[i] = f"{attr} set"
    best = torch.where(live, best, torch.zeros_like(best))
    coverage = {}
    for attr in ("IO", "S", "Pos"):
        cols = [j for j, g in enumerate(preds.groups) if g == attr]
        coverage[attr] = float(scores[:, cols].max(0).values.mean()) if cols and codes.shape[1] else 0.0
    return FeatureF1(live, best, labels, groups, coverage)


def summarise(result: FeatureF1, threshold: float, top: int = 5) -> dict:
    """Counts and fractions of one location's features; the best ``top`` features by F1."""
    live = result.live
    n_live = int(live.sum())
    good = live & (result.best_f1 >= threshold)
    by_group = dict.fromkeys(GROUPS, 0)
    for i in good.nonzero().flatten().tolist():
        by_group[result.groups[i]] += 1
    order = torch.argsort(result.best_f1, descending=True)[:top].tolist()
    return {
        "n_features": int(live.numel()),
        "n_live": n_live,
        "fraction_interpretable": float(good.sum()) / n_live if n_live else 0.0,
        "mean_best_f1": float(result.best_f1[live].mean()) if n_live else 0.0,
        "interpretable_by_group": by_group,
        "coverage": result.coverage,
        "top_features": [
            {"feature": i, "f1": round(float(result.best_f1[i]), 4), "predicate": result.labels[i]}
            for i in order
            if bool(live[i])
        ],
    }
