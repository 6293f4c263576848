"""Synthetic activations with a known dictionary: the ground truth an SAE should recover.

x = Σ_i a_i d_i + ε, with d_i unit vectors in ℝ^d (n_features of them, possibly many more
than d: superposition) and sparse non-negative coefficients a_i:

- **firing**: feature i fires with probability p_i ∝ (i + 1)^(−zipf_exponent), scaled so
  that Σ p_i = mean_active (the expected L0), each capped at 1;
- **correlation**: firing is decided through a Gaussian copula. Features come in groups of
  ``correlation_group``; z_i = √ρ g_group + √(1 − ρ) e_i with g, e ~ N(0, 1), and i fires
  when z_i < Φ⁻¹(p_i), so its marginal rate stays p_i while features of a group fire
  together more often than chance (ρ = 0: independent);
- **hierarchy**: a fraction ``child_fraction`` of the features (the rarest) are children,
  each assigned a parent among the others; a child can only fire when its parent does (its
  own draw is then AND-ed with the parent's), as in SynthSAEBench's hierarchies;
- **magnitude**: a_i = |N(magnitude_mean, magnitude_std)| when firing;
- **noise**: isotropic Gaussian noise of standard deviation ``noise_std`` per dimension.

For gradient SAEs there is a downstream loss with a known gradient:
L(x) = ½ Σ_i w_i ⟨d_i, x⟩² with fixed importances w_i ~ LogNormal(0, 1), so
g = ∂L/∂x = Dᵀ diag(w) D x.

Everything is a pure function of the config and a seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from pydantic import Field

from sae.config import FrozenConfig


class SyntheticConfig(FrozenConfig):
    """One synthetic data distribution."""

    d: int = Field(..., gt=0, description="Activation width.")
    n_features: int = Field(..., gt=0, description="True features (> d: superposition).")
    mean_active: float = Field(..., gt=0, description="Expected number of firing features per row (before hierarchy).")
    zipf_exponent: float = Field(0.0, ge=0, description="Firing probabilities ∝ (rank+1)^-exponent; 0: uniform.")
    correlation: float = Field(0.0, ge=0, lt=1, description="Copula correlation ρ within a group (0: independent).")
    correlation_group: int = Field(8, gt=0, description="Features per correlated group.")
    child_fraction: float = Field(0.0, ge=0, lt=1, description="Fraction of features that only fire with a parent.")
    magnitude_mean: float = Field(1.0, gt=0, description="Mean coefficient of a firing feature.")
    magnitude_std: float = Field(0.25, ge=0, description="Std of the coefficient.")
    noise_std: float = Field(0.0, ge=0, description="Gaussian noise per dimension.")
    seed: int = Field(0, description="Seed of the dictionary, the hierarchy and the importances.")


#: the two configurations the suite reports: easy (the acceptance case) and hard (everything on)
PRESETS: dict[str, SyntheticConfig] = {
    "easy": SyntheticConfig(d=32, n_features=64, mean_active=3.0),
    "hard": SyntheticConfig(
        d=32,
        n_features=256,
        mean_active=5.0,
        zipf_exponent=0.7,
        correlation=0.3,
        child_fraction=0.25,
        magnitude_std=0.4,
        noise_std=0.02,
    ),
}


class SyntheticData:
    """The dictionary and the sampler of one ``SyntheticConfig``."""

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        d = torch.randn(cfg.n_features, cfg.d, generator=gen)
        self.dictionary = d / d.norm(dim=1, keepdim=True)  # [n_features, d]
        ranks = torch.arange(1, cfg.n_features + 1, dtype=torch.float64)
        p = ranks.pow(-cfg.zipf_exponent)
        self.p = (p / p.sum() * cfg.mean_active).clamp_max(1.0).float()
        n_children = round(cfg.child_fraction * cfg.n_features)
        # the rarest features are children; parents are drawn among the more frequent ones
        self.parent = torch.full((cfg.n_features,), -1, dtype=torch.long)
        if n_children:
            n_parents = cfg.n_features - n_children
            self.parent[n_parents:] = torch.randint(0, n_parents, (n_children,), generator=gen)
        self.importance = torch.randn(cfg.n_features, generator=gen).exp()
        self.thresholds = torch.special.ndtri(self.p.double().clamp(1e-12, 1 - 1e-12)).float()

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [n, d], a [n, n_features])``."""
        cfg = self.cfg
        rho = cfg.correlation
        groups = -(-cfg.n_features // cfg.correlation_group)
        shared = torch.randn(n, groups, generator=generator).repeat_interleave(cfg.correlation_group, 1)
        z = rho**0.5 * shared[:, : cfg.n_features] + (1 - rho) ** 0.5 * torch.randn(
            n, cfg.n_features, generator=generator
        )
        fires = z < self.thresholds
        children = self.parent >= 0
        if children.any():
            fires[:, children] &= fires[:, self.parent[children]]
        magnitude = (cfg.magnitude_mean + cfg.magnitude_std * torch.randn(n, cfg.n_features, generator=generator)).abs()
        a = fires * magnitude
        x = a @ self.dictionary
        if cfg.noise_std:
            x = x + cfg.noise_std * torch.randn(n, cfg.d, generator=generator)
        return x, a

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """g = ∂L/∂x for L = ½ Σ_i w_i ⟨d_i, x⟩²."""
        return ((x @ self.dictionary.T) * self.importance) @ self.dictionary

    def batches(self, batch_size: int, seed: int, with_grads: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """An endless stream of ``{"x": ...}`` (and ``"x.grad"``) batches for the trainer."""
        gen = torch.Generator().manual_seed(seed)
        while True:
            x, _ = self.sample(batch_size, gen)
            yield {"x": x, "x.grad": self.gradient(x)} if with_grads else {"x": x}
