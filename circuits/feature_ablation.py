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
    """Runs the clean prompts with sets of feature/error nodes mean-ablated. Several sets run
    in one forward pass (the prompts repeated once per set, ``max_rows`` rows at most): a
    pass costs about the same for a few prompts as for a few hundred rows."""

    def __init__(self, run, saes: Sequence, batch, metric, corrupt: Sequence[SiteActs], max_rows: int = 512):
        self.run, self.saes, self.batch, self.metric = run, list(saes), batch, metric
        self.max_rows = max_rows
        self.mean_f = [template_means(batch, c.f) for c in corrupt]
        self.mean_e = [template_means(batch, c.e) for c in corrupt]
        with torch.no_grad():
            self.full = float(metric(run(batch.tokens, None), batch).mean())

    def metric_with(self, keep_f: Sequence[torch.Tensor], keep_e: Sequence[bool]) -> float:
        """Mean metric with latents where ``keep_f[i]`` (bool ``[d_sae]``) is False and errors
        where ``keep_e[i]`` is False replaced by their means."""
        return self.metrics_with([(keep_f, keep_e)])[0]

    @torch.no_grad()
    def metrics_with(self, conditions: Sequence[tuple[Sequence[torch.Tensor], Sequence[bool]]]) -> list[float]:
        """``metric_with`` of each ``(keep_f, keep_e)``, batched."""
        tokens, n = self.batch.tokens, self.batch.tokens.shape[0]
        per = max(1, self.max_rows // n)
        out: list[float] = []
        for start in range(0, len(conditions), per):
            chunk = conditions[start : start + per]
            k = len(chunk)
            sites = range(len(self.saes))
            keep_f = [torch.stack([c[0][i] for c in chunk]).repeat_interleave(n, 0)[:, None] for i in sites]
            keep_e = [
                torch.tensor([bool(c[1][i]) for c in chunk], device=tokens.device).repeat_interleave(n)[:, None, None]
                for i in sites
            ]

            def edit(i, f, e, keep_f=keep_f, keep_e=keep_e, k=k):
                mean_f = self.mean_f[i].to(f.dtype).repeat(k, *([1] * (f.dim() - 1)))
                mean_e = self.mean_e[i].to(e.dtype).repeat(k, *([1] * (e.dim() - 1)))
                return (
                    torch.where(keep_f[i].to(f.device), f, mean_f),
                    torch.where(keep_e[i].to(e.device), e, mean_e),
                )

            rows = tokens.repeat(k, *([1] * (tokens.dim() - 1)))
            batch = self.batch.subset(list(range(n)) * k) if hasattr(self.batch, "subset") else self.batch
            values = self.metric(self.run(rows, spliced(self.saes, edit)), batch)
            out += values.reshape(k, n).mean(1).tolist()
        return out


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
        inside = torch.zeros(d_sae, dtype=torch.bool, device=sae.W_dec.device)
        idx = [j for (s, j) in nodes if s == i and j != ERROR]
        if idx:
            inside[idx] = True
        err_in = (i, ERROR) in nodes
        keep_f.append(~inside if complement else inside)
        keep_e.append(True if errors == "keep" else (not err_in if complement else err_in))
    return keep_f, keep_e


def evaluate(ablator: FeatureAblator, circuits: Sequence[set], errors: str = "nodes") -> list[dict[str, float]]:
    """Faithfulness and completeness of each circuit, with the m(∅) and m(M) they normalise by."""
    if errors not in ERROR_MODES:
        raise ValueError(f"errors must be one of {ERROR_MODES}, got {errors!r}")
    saes = ablator.saes
    conditions = [_masks(saes, set(), False, errors)]
    for nodes in circuits:
        conditions += [_masks(saes, nodes, False, errors), _masks(saes, nodes, True, errors)]
    empty, *values = ablator.metrics_with(conditions)
    gap = ablator.full - empty
    out = []
    for kept, without in zip(values[::2], values[1::2], strict=True):
        out.append(
            {
                "faithfulness": (kept - empty) / gap if gap else float("nan"),
                "completeness": (without - empty) / gap if gap else float("nan"),
                "metric_circuit": kept,
                "metric_complement": without,
                "metric_empty": empty,
                "metric_full": ablator.full,
            }
        )
    return out


def scores(ablator: FeatureAblator, nodes: set[tuple[int, int]], errors: str = "nodes") -> dict[str, float]:
    """``evaluate`` of one circuit."""
    return evaluate(ablator, [nodes], errors)[0]


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
    sizes = list(sizes) if sizes is not None else curve_sizes(n_total)
    circuits = [circuit_of(ranked, n, errors) for n in sizes]
    return [
        {
            "n_features": n,
            "n_errors": sum(1 for _, j in nodes if j == ERROR),
            "faithfulness": s["faithfulness"],
            "completeness": s["completeness"],
        }
        for n, nodes, s in zip(sizes, circuits, evaluate(ablator, circuits, errors), strict=True)
    ]
