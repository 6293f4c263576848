"""Faithfulness and completeness of sparse feature circuits by mean ablation (methods-2 §E).

Every SAE is spliced with its error term; a node outside the kept set has its value (a
latent's code, or the whole error vector) replaced by its mean over the corrupted prompts
of the same template, position by position (``circuits.ablation.template_means``: the
lab's mean ablation; the paper means over the batch of patch inputs, which for prompts of
one template is the same thing). Sites are computed in order, so an ablation upstream
reaches the codes downstream.

- Faithfulness F(C) = (m(C) − m(∅)) / (m(M) − m(∅)): C kept, the rest ablated; ∅ ablates
  every node; M is the plain model. F(all) = 1 and F(∅) = 0 by construction.
- Completeness (the paper's form) (m(M minus C) − m(∅)) / (m(M) − m(∅)): only C ablated; near 0
  when C holds everything the model uses.

Errors (the paper's ``handle_errors``): ``"nodes"`` (default) treats each site's error as a
node ranked with the latents (the complement's errors are ablated); ``"keep"`` never
ablates an error (F and the empty circuit both keep them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from circuits.ablation import template_means
from circuits.feature_attribution import ERROR, SiteActs, spliced

ERROR_MODES = ("nodes", "keep")


class FeatureAblator:
    """Runs the clean prompts with any set of feature/error nodes mean-ablated."""

    def __init__(self, run, saes: Sequence, batch, metric, corrupt: Sequence[SiteActs]):
        self.run, self.saes, self.batch, self.metric = run, list(saes), batch, metric
        self.mean_f = [template_means(batch, c.f) for c in corrupt]
        self.mean_e = [template_means(batch, c.e) for c in corrupt]
        self._empty: dict[str, float] = {}
        with torch.no_grad():
            self.full = float(metric(run(batch.tokens, None), batch).mean())

    def empty(self, errors: str) -> float:
        """m(∅): every latent ablated, errors too unless kept."""
        if errors not in self._empty:
            self._empty[errors] = self.metric_with(*_masks(self.saes, set(), False, errors))
        return self._empty[errors]

    @torch.no_grad()
    def metric_with(self, keep_f: Sequence[torch.Tensor], keep_e: Sequence[bool]) -> float:
        """Mean metric with latents where ``keep_f[i]`` (bool ``[d_sae]``) is False and errors
        where ``keep_e[i]`` is False replaced by their means."""

        def edit(i, f, e):
            f = torch.where(keep_f[i].to(f.device), f, self.mean_f[i].to(f.dtype))
            return f, (e if keep_e[i] else self.mean_e[i].to(e.dtype))

        return float(self.metric(self.run(self.batch.tokens, spliced(self.saes, edit)), self.batch).mean())


def ranked_nodes(feature_totals: Sequence[torch.Tensor], error_totals: Sequence[float]) -> list[tuple[int, int, float]]:
    """Every node ``(site, index, |effect|)`` (``ERROR`` for errors), largest effect first;
    ties broken by site and index so the order is deterministic."""
    nodes = [(i, j, float(v)) for i, tot in enumerate(feature_totals) for j, v in enumerate(tot.abs().tolist())]
    nodes += [(i, ERROR, abs(e)) for i, e in enumerate(error_totals)]
    return sorted(nodes, key=lambda n: (-n[2], n[0], n[1]))


def circuit_of(ranked, n_features: int, errors: str) -> set[tuple[int, int]]:
    """The top ``n_features`` latents; with errors as nodes, the errors whose |effect| is at
    least the last kept latent's (one threshold for both kinds); all nodes at the end."""
    out, count = set(), 0
    n_total = sum(1 for _, j, _ in ranked if j != ERROR)
    if n_features == 0:
        return out
    for i, j, _ in ranked:
        if j == ERROR:
            if errors == "nodes" and (count < n_features or n_features >= n_total):
                out.add((i, j))
            continue
        if count >= n_features:
            break
        out.add((i, j))
        count += 1
    if n_features >= n_total and errors == "nodes":
        out |= {(i, j) for i, j, _ in ranked}
    return out


def _masks(saes, nodes: set[tuple[int, int]], complement: bool, errors: str):
    keep_f, keep_e = [], []
    for i, sae in enumerate(saes):
        d_sae = sae.W_dec.shape[0]
        inside = torch.zeros(d_sae, dtype=torch.bool)
        idx = [j for (s, j) in nodes if s == i and j != ERROR]
        if idx:
            inside[idx] = True
        err_in = (i, ERROR) in nodes
        keep_f.append(~inside if complement else inside)
        keep_e.append(True if errors == "keep" else (not err_in if complement else err_in))
    return keep_f, keep_e


def scores(ablator: FeatureAblator, nodes: set[tuple[int, int]], errors: str = "nodes") -> dict[str, float]:
    """Faithfulness and completeness of ``nodes``, with the m(∅) and m(M) they normalise by."""
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    saes = ablator.saes
    empty = ablator.empty(errors)
    kept = ablator.metric_with(*_masks(saes, nodes, False, errors))
    without = ablator.metric_with(*_masks(saes, nodes, True, errors))
    gap = ablator.full - empty
    return {
        "faithfulness": (kept - empty) / gap if gap else float("nan"),
        "completeness": (without - empty) / gap if gap else float("nan"),
        "metric_circuit": kept,
        "metric_complement": without,
        "metric_empty": empty,
        "metric_full": ablator.full,
    }


def curve_sizes(n_total: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... up to and including every latent."""
    sizes, base = [0], 1
    while base < n_total:
        sizes += [s for s in (base, 2 * base, 5 * base) if s < n_total]
        base *= 10
    return [*sizes, n_total]


def curves(ablator: FeatureAblator, ranked, errors: str = "nodes", sizes: Sequence[int] | None = None) -> list[dict]:
    """Faithfulness and completeness against the number of latents kept (errors apart)."""
    n_total = sum(1 for _, j, _ in ranked if j != ERROR)
    rows = []
    for n in sizes if sizes is not None else curve_sizes(n_total):
        nodes = circuit_of(ranked, n, errors)
        s = scores(ablator, nodes, errors)
        rows.append(
            {
                "n_features": n,
                "n_errors": sum(1 for _, j in nodes if j == ERROR),
                "faithfulness": s["faithfulness"],
                "completeness": s["completeness"],
            }
        )
    return rows
