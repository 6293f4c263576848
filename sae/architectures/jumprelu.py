"""JumpReLU: the batch-free inference form of mutual- and feature-choice SAEs.

f_i = ReLU(pre_i) · 1[pre_i > θ_i]. Saved SAEs of those families, and JumpReLU SAEs
trained elsewhere (SAELens, Gemma Scope), load as this class. It is an inference form;
the trained JumpReLU family (straight-through estimators, L0 penalty) is ``jumprelu_ste``,
which saves as this form.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sae.architectures.base import SAEConfig, Selection, SparseAutoencoder
from sae.architectures.registry import Family, register


class JumpReLUConfig(SAEConfig):
    """JumpReLU inference form: ReLU(pre) where pre exceeds a per-latent threshold."""

    architecture: Literal["jumprelu"] = Field("jumprelu", description="Family name, the registry key in cfg.json.")


class JumpReLUSAE(SparseAutoencoder):
    config_class = JumpReLUConfig

    def __init__(self, cfg: JumpReLUConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae))

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return Selection.from_dense(self.inference_encode(pre))

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold)

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**super().inference_state(), "threshold": self.threshold.clone()}


register(Family("jumprelu", JumpReLUSAE, saelens_architecture="jumprelu", trainable=False))
