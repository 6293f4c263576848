"""Held-out measurement, one protocol for every architecture.

L0, dead latents and FVU are measured with each SAE's *inference* encoder (``encode``)
on activations the SAE never trained on. A latent is dead if it never fires there, which
matters for feature choice: it fires every latent during training by construction. The
rank-r PCA baseline is the best rank-r affine reconstruction of the same activations
(fitted on them), so "beats PCA" is a fair bar.

FVU = E‖x − x̂‖² / (E‖x‖² − ‖E x‖²), i.e. one minus the explained variance as defined in
DESIGN.md.

A transcoder (``(sae, hook, hook_out)``) is scored on its output y: FVU = E‖y − ŷ‖² / Var(y),
so predicting the mean output scores 1 (the mean-ablation baseline), and ``zero_fvu`` =
E‖y‖² / Var(y) is the zero-ablation baseline. ``linear_fvu`` is the best affine map from
x to y fitted on the same rows (least squares): what a dense linear layer alone would do,
the bar a skip transcoder's linear path starts from. ``pca_fvu`` is then the rank-r PCA of
y itself (y reconstructed from y, a loose bound, kept for comparability with SAE rows).
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


@dataclass
class CrossMoments:
    """Joint moments of aligned input rows x and output rows y, for the least-squares affine map x → y."""

    xx: Moments
    xy: torch.Tensor | None = None

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.xx.update(x)
        xy = x.double().T @ y.double()
        self.xy = xy if self.xy is None else self.xy + xy

    def linear_fvu(self, y: Moments) -> float:
        """FVU of the best affine map from x to y: 1 − tr(C_yx C_xx⁺ C_xy) / tr(C_yy)."""
        n = self.xx.n
        cxy = self.xy / n - torch.outer(self.xx.total / n, y.total / y.n)
        explained = torch.trace(cxy.T @ torch.linalg.pinv(self.xx.covariance(), hermitian=True) @ cxy)
        return float(1 - explained / y.variance())


def _parts(entry: tuple) -> tuple:
    """``(sae, hook)`` or ``(sae, hook, hook_out)`` → ``(sae, hook, target hook)``."""
    sae, hook, *rest = entry
    return sae, hook, (rest[0] if rest and rest[0] else hook)


@torch.no_grad()
def measure(saes: dict, batches: Iterable[dict[str, torch.Tensor]], pca_rank: int = 16) -> dict[str, dict]:
    """``saes``: name → (sae, hook), or (sae, hook, hook_out) for a transcoder. Returns per SAE:
    fvu, l0, dead_fraction, pca_fvu, rows, densities (transcoders: also zero_fvu, linear_fvu)."""
    parts = {name: _parts(entry) for name, entry in saes.items()}
    accs = {name: Accumulator(sae.cfg.d_sae) for name, (sae, _, _) in parts.items()}
    moments: dict[str, Moments] = {}
    pairs = {(h, t) for _, h, t in parts.values() if t != h}
    cross: dict[tuple[str, str], CrossMoments] = {}
    for batch in batches:
        for hook in {t for _, _, t in parts.values()} | {h for h, _ in pairs}:
            moments.setdefault(hook, Moments(batch[hook].shape[-1])).update(batch[hook])
        for h, t in pairs:
            cross.setdefault((h, t), CrossMoments(Moments(batch[h].shape[-1]))).update(batch[h], batch[t])
        for name, (sae, hook, target) in parts.items():
            x = batch[hook].to(sae.W_enc.device, torch.float32)
            y = x if target == hook else batch[target].to(sae.W_enc.device, torch.float32)
            selection, y_hat = sae.reconstruct(x)
            accs[name].update(y, selection, y_hat)
    out = {}
    for name, (_sae, hook, target) in parts.items():
        acc, mom = accs[name], moments[target]
        out[name] = {
            "hook": hook,
            "fvu": acc.sse / acc.rows / mom.variance(),
            "l0": acc.l0,
            "dead_fraction": float((acc.fire_counts == 0).double().mean()),
            "pca_fvu": mom.pca_fvu(pca_rank),
            "rows": acc.rows,
            "densities": (acc.fire_counts / acc.rows).tolist(),
        }
        if target != hook:
            mean = mom.total / mom.n
            out[name].update(
                hook_out=target,
                zero_fvu=float((mom.variance() + mean.pow(2).sum()) / mom.variance()),
                linear_fvu=cross[(hook, target)].linear_fvu(mom),
            )
    return out
