"""Variational TopK SAE (Baker & Li, 2025).

The encoder gives a Gaussian posterior per latent: μ = (x − b_dec)W_enc + b_enc and,
with learned variance, log σ² = (x − b_dec)W_var + b_var. Training samples
z = μ + σ·ε, keeps each token's top k of z (ReLU'd), and adds β·KL(N(μ, σ²) ‖ N(0, I)),
summed over latents and averaged over tokens, computed on the pre-activation μ as the
paper's text defines it (its code applies it after a ReLU; see the notes). With
``variance: fixed`` σ is a constant and the KL reduces to ½Σμ² plus a constant.
Inference uses μ, so the saved form is a plain TopK SAE. AuxK can be switched on or off
(``aux_coefficient``) so that the paper's comparison, AuxK for TopK only, can be redone
with AuxK matched.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from sae.architectures.base import EncoderPass, KConfig, Output
from sae.architectures.registry import register
from sae.architectures.topk import TopKSAE, topk_selection


class VariationalConfig(KConfig):
    architecture: str = Field("vsae", pattern="^vsae$")
    kl_coefficient: float = Field(1.0, ge=0, description="β, the weight of the KL term.")
    variance: Literal["learned", "fixed"] = Field("learned", description="Learn log σ² per latent, or fix σ.")
    fixed_sigma: float = Field(1.0, gt=0, description="σ when the variance is fixed.")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per element: ½(σ² + μ² − 1 − log σ²)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar)


@register("vsae")
class VariationalSAE(TopKSAE):
    config_class = VariationalConfig
    inference_architecture = "topk"

    def __init__(self, cfg: VariationalConfig):
        super().__init__(cfg)
        if cfg.variance == "learned":
            self.W_var = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
            self.b_var = nn.Parameter(torch.full((cfg.d_sae,), -4.0))  # start with little noise

    def logvar(self, x: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        if self.cfg.variance == "fixed":
            return torch.full_like(mu, 2 * math.log(self.cfg.fixed_sigma))
        sae_in = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        return sae_in @ self.W_var + self.b_var

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None, dead: torch.Tensor | None = None) -> Output:
        # The KL reaches every latent's μ and log σ², so this encoder pass is dense whatever
        # the kernel; the decoder still follows the config.
        enc = self.encoder_pass(x, sparse=False)
        mu = enc.pre
        logvar = self.logvar(x, mu)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else mu
        sampled = EncoderPass(x, enc.shift, enc.sae_in, z, self.W_enc, self.b_enc, sparse=False)
        selection = sampled.attach(self.select(z))
        x_hat = self.decode_training(selection, self.cfg.kernel == "sparse")
        losses = self.losses(x, x_hat, sampled, dead)
        losses["kl"] = self.cfg.kl_coefficient * gaussian_kl(mu, logvar).sum(-1).mean()
        return Output(x_hat, losses, self.cfg.d_sae, selection=selection,
                      extra={"mean_sigma": (0.5 * logvar).exp().mean().detach()})

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        super().fold_input_scale(scale)
        if self.cfg.variance == "learned":
            self.W_var.mul_(scale)
