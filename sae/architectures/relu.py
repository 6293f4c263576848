"""ReLU SAE with an L1 penalty: the baseline, in Anthropic's April-2024 recipe.

f = ReLU(W_enc x + b_enc), x̂ = W_dec f + b_dec. The sparsity penalty is
λ Σ_i f_i ‖W_dec,i‖, so shrinking a decoder row cannot buy a smaller penalty, and the
decoder is therefore left free (no unit-norm constraint). The input is not centred by
b_dec before encoding; decoder rows start at norm 0.1 and W_enc = W_decᵀ. λ ramps up
linearly over the first part of training (the trainer sets ``l1_scale``).
"""

from __future__ import annotations

import torch
from pydantic import Field

from sae.architectures.base import Output, SAEConfig, Selection, SparseAutoencoder
from sae.architectures.registry import register


class ReluConfig(SAEConfig):
    architecture: str = Field("relu", pattern="^relu$")
    l1_coefficient: float = Field(5.0, ge=0, description="λ of the decoder-norm-weighted L1 penalty.")
    l1_warmup_fraction: float = Field(0.05, ge=0, le=1, description="Fraction of training over which λ ramps up.")
    apply_b_dec_to_input: bool = Field(False, description="April-2024 recipe: encode x, not x − b_dec.")
    unit_norm_decoder: bool = Field(False, description="Free decoder norms: the penalty includes them.")
    b_dec_init: str = Field("mean", pattern="^(geometric_median|mean|zeros)$")
    aux_coefficient: float = Field(0.0, ge=0, description="ReLU SAEs use no AuxK by default.")


@register("relu")
class ReluSAE(SparseAutoencoder):
    config_class = ReluConfig
    inference_architecture = "standard"

    def __init__(self, cfg: ReluConfig):
        super().__init__(cfg)
        self.l1_scale = 1.0  # set by the trainer during warm-up

    def reset_parameters(self, decoder_norm: float = 0.1) -> None:
        super().reset_parameters(decoder_norm=decoder_norm)

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return Selection.from_dense(pre.relu())

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu()

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None, dead: torch.Tensor | None = None) -> Output:
        # A dense rule: early in training most latents fire, so dense codes are cheaper.
        enc = self.encoder_pass(x, sparse=False)
        codes = enc.pre.relu()
        x_hat = self.decode(codes)
        losses = self.losses(x, x_hat, enc, dead)
        losses["l1"] = self.l1_scale * self.cfg.l1_coefficient * (codes * self.W_dec.norm(dim=1)).sum(-1).mean()
        return Output(x_hat, losses, self.cfg.d_sae, codes=codes)

    def inference_config(self) -> dict:
        return {"apply_b_dec_to_input": self.cfg.apply_b_dec_to_input}
