"""Reconstruction and sparsity metrics, accumulated over batches of rows in float64.

Every metric has one definition, stated in ``DEFINITIONS`` and copied into each results
file. Two pitfalls of peers are avoided on purpose:

- explained variance is 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²): the total variance subtracts the
  squared norm of the *mean vector*. SAEBench 0.6 and SAELens ≤ 6.18 subtracted
  (mean_d E[x_d²])² instead, which inflates the score (SAELens #659);
- L0 counts latents that are non-zero (not ``> 0``), so a family with signed codes is not
  flattered.

Densities, dead and dense latents use the inference encoder on the evaluated rows: a latent
is dead when it never fires on them, which with N rows resolves densities down to 1/N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sae.architectures.base import Selection

#: log10-density histogram: bins of 0.25 decades from 1e-7 to 1 (dead latents counted apart)
DENSITY_BINS = (-7.0, 0.0, 0.25)

DEFINITIONS = {
    "mse": "E over tokens and dimensions of (x - x_hat)^2",
    "mse_per_token": "E over tokens of ||x - x_hat||^2",
    "explained_variance": "1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2), expectations over evaluated tokens",
    "fvu": "1 - explained_variance: E||x - x_hat||^2 / (E||x||^2 - ||E x||^2)",
    "cosine_similarity": "E over tokens of cos(x, x_hat)",
    "l2_ratio": "E over tokens of ||x_hat|| / ||x||",
    "relative_reconstruction_bias": "E||x_hat||^2 / E<x, x_hat> (1 = unbiased, < 1 shrinks; Rajamanoharan et al. "
    "2024, eq. 10)",
    "l0": "E over tokens of the number of non-zero latents (inference encoder)",
    "l0_std": "standard deviation over tokens of the number of non-zero latents",
    "l1": "E over tokens of sum_i |f_i|",
    "dead_fraction": "fraction of latents that never fire on the evaluated tokens",
    "dense_fraction": "fraction of latents firing on more than dense_threshold of the evaluated tokens",
    "density": "per latent: fraction of evaluated tokens on which it is non-zero",
}


@dataclass
class ReconstructionStats:
    """Running sums for one SAE; ``update`` per batch, ``result`` at the end."""

    d_sae: int
    rows: int = 0
    sse: float = 0.0
    sum_sq: float = 0.0
    sum_x: torch.Tensor | None = None
    cos: float = 0.0
    l2_ratio: float = 0.0
    xhat_sq: float = 0.0
    dot: float = 0.0
    l0: float = 0.0
    l0_sq: float = 0.0
    l1: float = 0.0
    fire_counts: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def update(self, x: torch.Tensor, selection: Selection, x_hat: torch.Tensor) -> None:
        x, x_hat = x.double(), x_hat.double()
        self.rows += x.shape[0]
        self.sse += float((x - x_hat).pow(2).sum())
        self.sum_sq += float(x.pow(2).sum())
        total = x.sum(0)
        self.sum_x = total if self.sum_x is None else self.sum_x + total
        xn, hn = x.norm(dim=1), x_hat.norm(dim=1)
        dot = (x * x_hat).sum(1)
        self.cos += float((dot / (xn * hn).clamp_min(1e-30)).sum())
        self.l2_ratio += float((hn / xn.clamp_min(1e-30)).sum())
        self.xhat_sq += float(hn.pow(2).sum())
        self.dot += float(dot.sum())
        active = selection.values != 0
        per_row = torch.bincount(selection.rows[active], minlength=selection.n_rows).double()
        self.l0 += float(per_row.sum())
        self.l0_sq += float(per_row.pow(2).sum())
        self.l1 += float(selection.values.abs().double().sum())
        counts = torch.bincount(selection.latents[active], minlength=self.d_sae).double().cpu()
        self.fire_counts = counts if self.fire_counts is None else self.fire_counts + counts

    def densities(self) -> torch.Tensor:
        return self.fire_counts / max(self.rows, 1)

    def result(self, dense_threshold: float = 0.1) -> dict:
        n = max(self.rows, 1)
        d = self.sum_x.numel()
        mean = self.sum_x / n
        total_variance = self.sum_sq / n - float(mean.pow(2).sum())
        mse_token = self.sse / n
        l0 = self.l0 / n
        density = self.densities()
        return {
            "rows": self.rows,
            "mse": mse_token / d,
            "mse_per_token": mse_token,
            "explained_variance": 1 - mse_token / total_variance,
            "fvu": mse_token / total_variance,
            "cosine_similarity": self.cos / n,
            "l2_ratio": self.l2_ratio / n,
            "relative_reconstruction_bias": self.xhat_sq / self.dot if self.dot else math.nan,
            "l0": l0,
            "l0_std": math.sqrt(max(self.l0_sq / n - l0 * l0, 0.0)),
            "l1": self.l1 / n,
            "dead_fraction": float((self.fire_counts == 0).double().mean()),
            "dense_fraction": float((density > dense_threshold).double().mean()),
            "total_variance": total_variance,
        }


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """One-shot form of the accumulated definition (for small tensors and tests)."""
    x, x_hat = x.double().reshape(-1, x.shape[-1]), x_hat.double().reshape(-1, x.shape[-1])
    total = x.pow(2).sum(1).mean() - x.mean(0).pow(2).sum()
    return float(1 - (x - x_hat).pow(2).sum(1).mean() / total)


def density_histogram(densities: torch.Tensor) -> dict:
    """Latents per log10-density bin, and how many never fired (they have no log density)."""
    lo, hi, width = DENSITY_BINS
    edges = torch.arange(lo, hi + width / 2, width, dtype=torch.float64)
    alive = densities[densities > 0].double().log10().clamp(lo, hi - 1e-9)
    counts = torch.histc(alive, bins=len(edges) - 1, min=lo, max=hi) if alive.numel() else torch.zeros(len(edges) - 1)
    return {
        "log10_edges": [round(float(e), 4) for e in edges],
        "counts": [int(c) for c in counts],
        "dead": int((densities == 0).sum()),
    }


def underused_fraction(densities: torch.Tensor, k: float, fraction: float = 0.1) -> float:
    """Latents firing on fewer than ``fraction`` × k/d_sae of the tokens (a tenth of a uniform
    share of the L0 budget), dead ones included: one yardstick for every family."""
    d_sae = densities.numel()
    return float((densities < fraction * k / d_sae).double().mean())
