"""Held-out measurement, one protocol for every architecture.

L0, dead latents and FVU are measured with each SAE's *inference* encoder (``encode``)
on activations the SAE never trained on. A latent is dead if it never fires there, which
matters for feature choice: it fires every latent during training by construction. The
rank-r PCA baseline is the best rank-r affine reconstruction of the same activations
(fitted on them), so "beats PCA" is a fair bar.

FVU = E‖x − x̂‖² / (E‖x‖² − ‖E x‖²), i.e. one minus the explained variance as defined in
DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from sae.architectures.base import Selection


@dataclass
class Accumulator:
    """Running sums for one SAE on one stream of rows (float64 for stability)."""

    d_sae: int
    sse: float = 0.0
    rows: int = 0
    fire_counts: torch.Tensor | None = None

    def update(self, x: torch.Tensor, selection: Selection, x_hat: torch.Tensor) -> None:
        self.sse += float((x - x_hat).double().pow(2).sum())
        self.rows += x.shape[0]
        counts = selection.fire_counts(self.d_sae).double()
        self.fire_counts = counts if self.fire_counts is None else self.fire_counts + counts

    @property
    def l0(self) -> float:
        return float(self.fire_counts.sum()) / max(self.rows, 1)


@dataclass
class Moments:
    """First and second moments of the rows, for total variance and PCA."""

    d: int
    n: int = 0
    total: torch.Tensor = field(default=None)  # type: ignore[assignment]
    outer: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def update(self, x: torch.Tensor) -> None:
        x = x.double()
        self.n += x.shape[0]
        self.total = x.sum(0) if self.total is None else self.total + x.sum(0)
        self.outer = x.T @ x if self.outer is None else self.outer + x.T @ x

    def covariance(self) -> torch.Tensor:
        mean = self.total / self.n
        return self.outer / self.n - torch.outer(mean, mean)

    def variance(self) -> float:
        return float(torch.trace(self.covariance()))

    def pca_fvu(self, rank: int) -> float:
        eig = torch.linalg.eigvalsh(self.covariance()).flip(0).clamp_min(0)
        return float(1 - eig[:rank].sum() / eig.sum())


@torch.no_grad()
def measure(saes: dict, batches: Iterable[dict[str, torch.Tensor]], pca_rank: int = 16) -> dict[str, dict]:
    """``saes``: name → (sae, hook). Returns per SAE: fvu, l0, dead_fraction, pca_fvu, rows, densities."""
    accs = {name: Accumulator(sae.cfg.d_sae) for name, (sae, _) in saes.items()}
    moments: dict[str, Moments] = {}
    for batch in batches:
        for hook in {h for _, h in saes.values()}:
            moments.setdefault(hook, Moments(batch[hook].shape[-1])).update(batch[hook])
        for name, (sae, hook) in saes.items():
            x = batch[hook].to(sae.W_enc.device, torch.float32)
            selection, x_hat = sae.reconstruct(x)
            accs[name].update(x, selection, x_hat)
    out = {}
    for name, (_sae, hook) in saes.items():
        acc, mom = accs[name], moments[hook]
        out[name] = {
            "hook": hook,
            "fvu": acc.sse / acc.rows / mom.variance(),
            "l0": acc.l0,
            "dead_fraction": float((acc.fire_counts == 0).double().mean()),
            "pca_fvu": mom.pca_fvu(pca_rank),
            "rows": acc.rows,
            "densities": (acc.fire_counts / acc.rows).tolist(),
        }
    return out
