"""Gradient SAE (Olmo et al., 2024): TopK whose selection also weighs downstream effect.

The k latents are chosen by the score z + β·z⊙|W_dec g| (g = ∂L/∂x for the frozen
model's loss, W_dec g the loss's directional derivative along each decoder row), so a
latent with a small activation but a large effect on the output can win a slot. The
reconstruction uses the selected latents' z values, not the scores, and the training
loss is TopK's (MSE + AuxK). With β = 0, or with no gradient (at inference), the rule
is exactly TopK.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sae.architectures.base import KConfig, Selection
from sae.architectures.registry import Family, register
from sae.architectures.topk import TopKSAE, topk_selection


class GradientSAEConfig(KConfig):
    """Gradient SAE: TopK selecting by z + β·z⊙|W_dec g|."""

    architecture: Literal["gsae"] = Field("gsae", description="Family name, the registry key in cfg.json.")
    beta: float = Field(1.0, ge=0, description="Weight of the gradient term in the selection score.")


class GradientSAE(TopKSAE):
    config_class = GradientSAEConfig

    @torch.no_grad()
    def selection_scores(self, pre: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """z + β·z⊙|W_dec g|; only the ranking matters, so no gradient flows through it."""
        if g is None or self.cfg.beta == 0:
            return pre
        effect = (g.to(pre.dtype) @ self.W_dec.T).abs()  # [B, d_sae]: |d_i · g|
        return pre + self.cfg.beta * pre * effect

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return topk_selection(self.selection_scores(pre, g), pre, self.cfg.k)


register(Family("gsae", GradientSAE, saelens_architecture="topk", inference_form="topk", needs_gradients=True))
