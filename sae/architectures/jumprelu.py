"""JumpReLU: the batch-free inference form of mutual- and feature-choice SAEs.

f_i = ReLU(pre_i) · 1[pre_i > θ_i]. Saved SAEs of those families, and JumpReLU SAEs
trained elsewhere (SAELens, Gemma Scope), load as this class. It is an inference form:
training one needs a straight-through estimator this lab does not ship.
"""

from __future__ import annotations

import torch
from pydantic import Field

from sae.architectures.base import SAEConfig, Selection, SparseAutoencoder
from sae.architectures.registry import register


class JumpReLUConfig(SAEConfig):
    architecture: str = Field("jumprelu", pattern="^jumprelu$")


@register("jumprelu")
class JumpReLUSAE(SparseAutoencoder):
    config_class = JumpReLUConfig
    inference_architecture = "jumprelu"
    trainable = False

    def __init__(self, cfg: JumpReLUConfig):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(cfg.d_sae))

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return Selection.from_dense(self.inference_encode(pre))

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold)

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**super().inference_state(), "threshold": self.threshold.clone()}
