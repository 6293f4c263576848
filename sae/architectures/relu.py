"""ReLU SAE with an L1 penalty: the baseline, in Anthropic's April-2024 recipe.

f = ReLU(W_enc x + b_enc), x̂ = W_dec f + b_dec. The sparsity penalty is
λ Σ_i f_i ‖W_dec,i‖, so shrinking a decoder row cannot buy a smaller penalty, and the
decoder is therefore left free (no unit-norm constraint). The input is not centred by
b_dec before encoding; decoder rows start at norm 0.1 and W_enc = W_decᵀ. λ ramps up
linearly over the first part of training (the registry entry's ``Coefficient``; the
trainer sets ``coefficient_scale``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sae.architectures.base import Output, SAEConfig, Selection, SparseAutoencoder
from sae.architectures.registry import Coefficient, Family, register


class ReluConfig(SAEConfig):
    """ReLU SAE with a decoder-norm-weighted L1 penalty (Anthropic, April 2024)."""

    architecture: Literal["relu"] = Field("relu", description="Family name, the registry key in cfg.json.")
    l1_coefficient: float = Field(5.0, ge=0, description="λ of the decoder-norm-weighted L1 penalty.")
    l1_warmup_fraction: float = Field(0.05, ge=0, le=1, description="Fraction of training over which λ ramps up.")
    apply_b_dec_to_input: bool = Field(False, description="April-2024 recipe: encode x, not x − b_dec.")
    unit_norm_decoder: bool = Field(False, description="Free decoder norms: the penalty includes them.")
    b_dec_init: str = Field(
        "mean",
        pattern="^(geometric_median|mean|zeros)$",
        description="b_dec from the first batch's geometric median, its mean, or zeros.",
    )
    aux_coefficient: float = Field(0.0, ge=0, description="ReLU SAEs use no AuxK by default.")


class ReluSAE(SparseAutoencoder):
    config_class = ReluConfig

    def reset_parameters(self, decoder_norm: float = 0.1) -> None:
        super().reset_parameters(decoder_norm=decoder_norm)

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return Selection.from_dense(pre.relu())

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu()

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        # A dense rule: early in training most latents fire, so dense codes are cheaper.
        enc = self.encoder_pass(x, sparse=False)
        codes = enc.pre.relu()
        x_hat = self.decode(codes)
        losses = self.losses(self.goal(x, target), x_hat, enc, dead)
        weight = self.coefficient_scale * self.cfg.l1_coefficient
        losses["l1"] = weight * (codes * self.W_dec.norm(dim=1)).sum(-1).mean()
        return Output(x_hat, losses, self.cfg.d_sae, codes=codes)

    def inference_config(self) -> dict:
        return {"apply_b_dec_to_input": self.cfg.apply_b_dec_to_input}


register(
    Family(
        "relu",
        ReluSAE,
        saelens_architecture="standard",
        coefficient=Coefficient("l1_coefficient", "l1", warmup_field="l1_warmup_fraction"),
        sparse_kernel=False,  # a dense rule: early in training most latents fire
    )
)
