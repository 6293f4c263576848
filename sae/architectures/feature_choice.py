"""Feature-choice SAE with aux_zipf_loss (Ayonrinde 2024).

The budget M = k·B token–latent matches is split among latents: latent j takes the m_j
tokens of the batch with its largest positive pre-activations, Σ_j m_j = M. Every latent
with any positive pre-activation therefore fires during training, which is why feature
choice has no dead latents by construction; what matters is how latents fire at
inference, with no batch to choose from.

Choices where the paper is not public (documented here, tested in tests/):

- **Density.** A latent's capacity fixes how often it fires under this rule (in training,
  and at inference through its threshold), so that cannot be what ranks latents: the rank
  would just reproduce itself. The running density is instead the latent's *demand*: the
  fraction of tokens on which it is among the batch's top M affinities with no per-latent
  limit (the mutual-choice rule), an EMA over steps, measured on the first
  ``demand_rows`` rows of each (shuffled) batch.
- **Capacities.** ``uniform``: m_j = M/d_sae. ``zipf``: m_j ∝ (r_j + β)^(−α), with r_j
  (1 = highest demand) re-ranked every ``rerank_every`` steps and on the first step;
  rounded by largest remainders so Σ m_j = M exactly, and capped at B (a latent cannot
  take a token twice), the excess going to the other latents.
- **Inference.** Per-latent thresholds θ_j, an EMA of latent j's m_j-th largest
  activation (the smallest it selected), i.e. a JumpReLU: latent j fires on about m_j/B
  of the tokens, so the expected L0 is k. As for mutual choice, the EMA is short
  (``threshold_decay``) so the thresholds follow the final weights.
- **aux_zipf_loss.** AuxK generalised from dead to *under-used* latents: those whose
  demand is below ``underused_fraction`` × the density their Zipf rank predicts,
  k·m_j/M, which includes the latents with no demand at all (dead). The top k_aux of
  their ReLU'd pre-activations reconstruct the residual exactly as in AuxK (same
  normalisation and weight). ``aux_loss: k`` restricts the candidates to latents with no
  demand, i.e. plain AuxK, for comparison.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from sae.architectures.base import EncoderPass, KConfig, Selection, SparseAutoencoder
from sae.architectures.mutual_choice import global_topk_indices
from sae.architectures.registry import Family, register
from sae.collective import SINGLE, Collective

NEVER = 1e-6  # a running demand below this counts as none (dead)


class FeatureChoiceConfig(KConfig):
    """Feature choice: each latent takes its m_j best tokens of the batch (Zipf capacities)."""

    architecture: Literal["feature_choice"] = Field(
        "feature_choice", description="Family name, the registry key in cfg.json."
    )
    capacity: Literal["uniform", "zipf"] = Field("zipf", description="How the budget M = k·B is split among latents.")
    zipf_alpha: float = Field(1.0, gt=0, description="Zipf exponent α of the capacities.")
    zipf_beta: float = Field(100.0, ge=0, description="Zipf offset β: flattens the head of the distribution.")
    rerank_every: int = Field(50, gt=0, description="Steps between re-rankings of latents by density.")
    aux_loss: Literal["zipf", "k"] = Field("zipf", description="aux_zipf (under-used latents) or plain AuxK.")
    underused_fraction: float = Field(0.5, gt=0, le=1, description="Under-used: density below this × expected.")
    density_decay: float = Field(0.99, ge=0, lt=1, description="EMA decay (per step) of the running demand.")
    threshold_decay: float = Field(0.9, ge=0, lt=1, description="EMA decay (per step) of the inference thresholds.")
    demand_rows: int = Field(1024, gt=0, description="Rows of each batch on which the demand is measured.")


def largest_remainder(shares: torch.Tensor, total: int, cap: int) -> torch.Tensor:
    """Integers proportional to ``shares`` summing to ``total``, each at most ``cap``."""
    shares = shares / shares.sum()
    out = torch.zeros_like(shares, dtype=torch.long)
    free = torch.ones_like(shares, dtype=torch.bool)
    remaining = total
    while remaining > 0 and free.any():
        want = shares * free / (shares * free).sum() * remaining
        base = want.floor().long().clamp_max(cap - out)
        short = remaining - int(base.sum())
        if short > 0:  # hand the rest out by largest fractional part, where room is left
            frac = torch.where(free & (out + base < cap), want - want.floor(), torch.full_like(want, -1.0))
            order = frac.argsort(descending=True)[:short]
            base[order[frac[order] >= 0]] += 1
        out += base
        remaining = total - int(out.sum())
        free &= out < cap
    return out


def demand(pre: torch.Tensor, k: int, n_rows: int | None = None, collective: Collective = SINGLE) -> torch.Tensor:
    """Per latent, the fraction of rows on which it is among the top k·n positive entries of the
    first ``n_rows`` rows of the (global) batch (the mutual-choice rule, no per-latent limit).

    Over several ranks, rank r holds global rows [r·B, (r+1)·B); each sends its best
    entries among its share of the first n rows (padded to one size), and the cut is
    taken over all of them, as in ``batch_topk_indices``.
    """
    b, d_sae = pre.shape
    n = min(n_rows or b, b * collective.world_size)
    mine = pre[: max(0, min(b, n - collective.rank * b))]
    if not collective.distributed:
        flat = global_topk_indices(mine, k * n)
        chosen = flat[mine.flatten()[flat] > 0] % d_sae
        return torch.bincount(chosen, minlength=d_sae).to(pre.dtype) / n
    values = mine.flatten()
    top = values[global_topk_indices(mine, min(k * n, values.numel()))] if values.numel() else values
    padded = torch.cat([top, top.new_full((k * n - top.numel(),), -math.inf)])
    cut = collective.all_gather(padded).topk(k * n, sorted=False).values.min()
    chosen = ((mine >= cut) & (mine > 0)).sum(0)
    return collective.all_reduce(chosen).to(pre.dtype) / n


class FeatureChoiceSAE(SparseAutoencoder):
    config_class = FeatureChoiceConfig

    def __init__(self, cfg: FeatureChoiceConfig):
        super().__init__(cfg)
        d = cfg.d_sae
        self.register_buffer("threshold", torch.zeros(d))
        self.register_buffer("threshold_seen", torch.zeros(d, dtype=torch.bool))
        self.register_buffer("density", torch.full((d,), cfg.k / d))  # running demand (see the module doc)
        self.register_buffer("rank", torch.arange(1, d + 1, dtype=torch.float32))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    # -- capacities ------------------------------------------------------------------

    def shares(self) -> torch.Tensor:
        """Fraction of the budget each latent gets (sums to 1)."""
        if self.cfg.capacity == "uniform":
            return torch.full_like(self.density, 1.0 / self.cfg.d_sae)
        w = (self.rank + self.cfg.zipf_beta).pow(-self.cfg.zipf_alpha)
        return w / w.sum()

    def capacities(self, n_rows: int) -> torch.Tensor:
        return largest_remainder(self.shares(), self.cfg.k * n_rows, cap=n_rows)

    def expected_density(self) -> torch.Tensor:
        """Per-token firing rate each latent's share implies: k · share_j."""
        return self.cfg.k * self.shares()

    # -- selection -------------------------------------------------------------------

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        """Latent j takes its m_j best tokens of the (global) batch.

        Over several ranks each latent's best tokens of every rank are gathered, so the
        cut, the m_j-th best of the global batch, is the one a single process would find
        (ties at the cut are all kept); each rank then keeps its own tokens above it.
        """
        b, d = pre.shape
        collective = self.collective
        m = self.capacities(b * collective.world_size).to(pre.device)
        m_max = int(m.max())
        with torch.no_grad():  # per latent, its best tokens on this rank: [d_sae, ≤ m_max]
            best, rows = pre.detach().T.contiguous().topk(min(m_max, b), dim=1, sorted=True)
            if not collective.distributed:
                keep = (torch.arange(best.shape[1], device=pre.device)[None, :] < m[:, None]) & (best > 0)
                ranked = best
            else:
                padded = torch.cat([best, best.new_full((d, m_max - best.shape[1]), -math.inf)], 1)
                everyone = collective.all_gather(padded[None]).permute(1, 0, 2).reshape(d, -1)
                ranked = everyone.topk(m_max, dim=1, sorted=True).values  # the global best m_max per latent
                cut = ranked.gather(1, (m - 1).clamp_min(0)[:, None])
                keep = (best >= cut) & (m[:, None] > 0) & (best > 0)
        latents = torch.arange(d, device=pre.device)[:, None].expand_as(rows)
        rows, latents = rows[keep], latents[keep]
        if self.training:
            self._last = (m, ranked)
        return Selection(rows=rows, latents=latents, values=pre[rows, latents], n_rows=b)

    @torch.no_grad()
    def observe(self, pre: torch.Tensor, selection: Selection) -> None:
        m, best = self._last
        del self._last
        d = self.cfg.threshold_decay
        # θ_j: the m_j-th largest ReLU'd activation of latent j (0 when it had fewer positive
        # ones: training then took them all, as θ = 0 does)
        smallest = best.gather(1, (m - 1).clamp_min(0)[:, None])[:, 0].clamp_min(0)
        update = m > 0
        first = update & ~self.threshold_seen
        self.threshold[first] = smallest[first]
        later = update & self.threshold_seen
        self.threshold[later] = d * self.threshold[later] + (1 - d) * smallest[later]
        self.threshold_seen |= update
        d = self.cfg.density_decay
        self.density.mul_(d).add_((1 - d) * demand(pre, self.cfg.k, self.cfg.demand_rows, self.collective))
        self.steps += 1
        if int(self.steps) % self.cfg.rerank_every == 0 or int(self.steps) == 1:
            order = self.density.argsort(descending=True, stable=True)
            self.rank[order] = torch.arange(1, self.cfg.d_sae + 1, dtype=self.rank.dtype, device=self.rank.device)

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold)

    def inference_select(self, pre: torch.Tensor) -> Selection:
        return Selection.from_dense(self.inference_encode(pre))

    # -- losses ----------------------------------------------------------------------

    def underused(self) -> torch.Tensor:
        never = self.density < NEVER
        if self.cfg.aux_loss == "k":
            return never
        return never | (self.density < self.cfg.underused_fraction * self.expected_density())

    def aux_losses(
        self, residual: torch.Tensor, enc: EncoderPass, dead: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """aux_zipf (or AuxK) over ``underused()``; the trainer's dead mask is not used:
        under this rule every latent fires in training, so 'dead' is a matter of demand."""
        if self.cfg.aux_coefficient > 0:
            name = "aux_zipf" if self.cfg.aux_loss == "zipf" else "aux_k"
            return {name: self.cfg.aux_coefficient * self.aux_loss(enc, residual, self.underused())}
        return {}

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**super().inference_state(), "threshold": self.threshold.clone()}


register(Family("feature_choice", FeatureChoiceSAE, saelens_architecture="jumprelu", inference_form="jumprelu"))
