"""How well a learned dictionary recovers a true one.

All scores compare the true feature directions (rows of ``true``) with the SAE's decoder
rows (``learned``), both normalised to unit length:

- ``mmcs``: mean over true features of the largest cosine with any learned latent;
- ``mcc``: the mean absolute cosine of an optimal one-to-one matching between true
  features and latents (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``),
  averaged over the min(n_true, n_learned) matched pairs, as SAELens's SynthSAEBench
  defines it; invariant to permuting and rescaling either dictionary;
- ``recall``: fraction of true features with some latent at cosine > ``threshold``;
- ``precision``: fraction of the *live* latents (those in ``alive``; all when not given)
  with some true feature at cosine > ``threshold``; ``f1`` their harmonic mean.

Cosines are signed for mmcs, precision and recall (SAE codes are non-negative, so a
latent pointing at −d_i is not feature i) and absolute for MCC, following its definition.
"""

from __future__ import annotations

import torch

DEFINITIONS = {
    "mmcs": "mean over true features of max over latents of cos(true_i, W_dec_j)",
    "mcc": "mean |cos| over an optimal one-to-one matching of true features to latents (Hungarian), over "
    "min(n_true, d_sae) pairs",
    "recall": "fraction of true features with a latent at cos > threshold",
    "precision": "fraction of live latents with a true feature at cos > threshold",
    "f1": "2 precision recall / (precision + recall)",
}


def _unit(w: torch.Tensor) -> torch.Tensor:
    w = w.double()
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosines(true: torch.Tensor, learned: torch.Tensor) -> torch.Tensor:
    """``[n_true, n_learned]`` cosines."""
    return _unit(true) @ _unit(learned).T


def mcc(true: torch.Tensor, learned: torch.Tensor) -> float:
    from scipy.optimize import linear_sum_assignment

    c = cosines(true, learned).abs().cpu().numpy()
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].mean())


def recovery(
    true: torch.Tensor, learned: torch.Tensor, alive: torch.Tensor | None = None, threshold: float = 0.9
) -> dict:
    """Every score above for one learned dictionary."""
    c = cosines(true, learned)
    best_per_true = c.max(dim=1).values
    live = c if alive is None else c[:, alive.to(torch.bool)]
    recall = float((best_per_true > threshold).double().mean())
    precision = float((live.max(dim=0).values > threshold).double().mean()) if live.shape[1] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "mmcs": float(best_per_true.mean()),
        "mcc": mcc(true, learned),
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "threshold": threshold,
    }
