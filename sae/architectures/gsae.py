"""Gradient SAE (Olmo et al., 2024): TopK whose selection also weighs downstream effect.

The k latents are chosen by the score z + β·z⊙|W_dec g| (g = ∂L/∂x for the frozen
model's loss, W_dec g the loss's directional derivative along each decoder row), so a
latent with a small activation but a large effect on the output can win a slot. The
reconstruction uses the selected latents' z values, not the scores, and the training
loss is TopK's (MSE + AuxK). With β = 0, or with no gradient, the rule is exactly TopK.

Inference rule. The paper selects with the gradient at training time; the lab's
inference rule (``inference_select``, and the saved SAELens form, a plain TopK SAE) is
TopK on z, *without* the gradient term, since a deployed SAE sees no downstream loss.
``reconstruct_with_gradient`` applies the training rule at inference instead, given
g = ∂L/∂x from a backward pass of the model (the same loss as in training, the
next-token CE summed over the batch's tokens); the eval suite reports both
(``gradient_inference: true``: the variant is named ``<name>_grad_inference``).
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

    def inference_select(self, pre: torch.Tensor) -> Selection:
        """The lab's inference rule: TopK on z, no gradient term (see the module docstring)."""
        return topk_selection(pre, pre, self.cfg.k)

    @torch.no_grad()
    def reconstruct_with_gradient(self, x: torch.Tensor, g: torch.Tensor) -> tuple[Selection, torch.Tensor]:
        """Codes and reconstruction of ``[B, d_in]`` rows selected by the training rule, with
        the downstream gradient ``g`` (``[B, d_in]``, ∂L/∂x at those rows) at inference."""
        selection = self.select(self.pre_acts(x), g)
        return selection, self.with_skip(x, self.decode_selection(selection))


register(Family("gsae", GradientSAE, saelens_architecture="topk", inference_form="topk", needs_gradients=True))
