"""Variational TopK SAE (Baker & Li, 2025).

The encoder gives a Gaussian posterior per latent: μ = (x − b_dec)W_enc + b_enc and,
with learned variance, log σ² = (x − b_dec)W_var + b_var. Training samples
z = μ + σ·ε, keeps each token's top k of z (ReLU'd), and adds β·KL(N(μ, σ²) ‖ N(0, I)),
summed over latents and averaged over tokens. ``kl_on: mu`` puts the KL on the
pre-activation μ, as the paper's text defines it; ``kl_on: relu_mu`` on ReLU(μ), as its
code computes it, where negative means (which TopK never selects) cost nothing. With
``variance: fixed`` σ is a constant and the KL reduces to ½Σμ² plus a constant.
Inference uses μ, so the saved form is a plain TopK SAE. AuxK can be switched on or off
(``aux_coefficient``) so that the paper's comparison, AuxK for TopK only, can be redone
with AuxK matched.

The paper's own reported setting is its code's ``var_flag=0``: no sampling during
training (``sample: false``, z = μ), the KL on ReLU(μ) (``kl_on: relu_mu``) with σ fixed
at 1 (``variance: fixed``, so the KL is ½Σ ReLU(μ)²), multiplied by the mean decoder row
norm (``kl_scale: decoder_norm``; the factor carries gradient to the decoder, our reading
of the code's "April update" weighting, and is 1 when decoder rows are kept at unit
norm), AuxK off (``aux_coefficient: 0``), β = 1 and lr 8e-4. The defaults keep the lab's
fair-comparison form (sampling, learned σ, no decoder-norm factor).

Scale: the KL is summed over d_sae latents and the MSE over d_in dimensions, so β must be
small when d_sae ≫ d_in (inputs are normalised to mean norm √d_in): at d_sae = 16·d_in a
β of 1 makes the KL dominate and the reconstruction degrade (see configs/).

The KL touches every latent's μ and log σ², so this family's encoder is dense whatever
the kernel; sampling and the KL are one fused autograd step (``_SampleKL``), and b_dec's
gradient through the encoder costs a matrix-vector product rather than a GEMM.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from sae.architectures.base import EncoderPass, KConfig, Output
from sae.architectures.registry import Family, register
from sae.architectures.topk import TopKSAE


class VariationalConfig(KConfig):
    """Variational TopK SAE: Gaussian posterior per latent, β·KL to N(0, I)."""

    architecture: Literal["vsae"] = Field("vsae", description="Family name, the registry key in cfg.json.")
    kl_coefficient: float = Field(1.0, ge=0, description="β, the weight of the KL term.")
    variance: Literal["learned", "fixed"] = Field("learned", description="Learn log σ² per latent, or fix σ.")
    fixed_sigma: float = Field(1.0, gt=0, description="σ when the variance is fixed.")
    kl_on: Literal["mu", "relu_mu"] = Field(
        "mu", description="KL on the mean μ (the paper's text) or on ReLU(μ) (the paper's code)."
    )
    sample: bool = Field(
        True, description="Sample z = μ + σ·ε during training; false: z = μ (the paper's code, var_flag=0)."
    )
    kl_scale: Literal["none", "decoder_norm"] = Field(
        "none", description="Multiply the KL by the mean decoder row norm (the paper's code) or not."
    )


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per element: ½(σ² + μ² − 1 − log σ²)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1 - logvar)


class _SampleKL(torch.autograd.Function):
    """z = μ + σ·ε and Σ KL(N(m, σ²) ‖ N(0, 1)) / B in one step, m = μ or ReLU(μ).

    Autograd through the same expressions makes about twice the passes over the
    ``[batch, d_sae]`` tensors; here: ∂μ = ∂z + c·m′ (m′ = μ, or ReLU(μ)), and
    ∂log σ² = ½∂z·ε·σ + ½c(σ² − 1), with c = ∂KL / B.
    """

    @staticmethod
    def forward(ctx, mu, logvar, eps, relu_mu: bool):
        std = (0.5 * logvar).exp_()
        z = torch.addcmul(mu, std, eps)
        m = mu.relu() if relu_mu else mu
        kl = 0.5 * (std.square().sum() + m.square().sum() - logvar.sum() - mu.numel()) / mu.shape[0]
        ctx.save_for_backward(m, std, eps)
        return z, kl

    @staticmethod
    def backward(ctx, grad_z, grad_kl):
        m, std, eps = ctx.saved_tensors
        c = grad_kl / m.shape[0]
        grad_mu = grad_mu_lv = None
        if ctx.needs_input_grad[0]:
            grad_mu = torch.add(grad_z, m, alpha=float(c)) if grad_z is not None else m * c
        if ctx.needs_input_grad[1]:
            grad_mu_lv = 0.5 * c * (std.square() - 1)
            if grad_z is not None:
                grad_mu_lv.addcmul_(grad_z * eps, std, value=0.5)
        return grad_mu, grad_mu_lv, None, None


class VariationalSAE(TopKSAE):
    config_class = VariationalConfig

    def __init__(self, cfg: VariationalConfig):
        super().__init__(cfg)
        if cfg.variance == "learned":
            self.W_var = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae))
            self.b_var = nn.Parameter(torch.full((cfg.d_sae,), -4.0))  # start with little noise

    def _affine(self, sae_in: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(x − b_dec) @ W + b with b_dec's gradient as Σ_rows(∂pre) · Wᵀ (a GEMV, not a GEMM).

        The input is detached and a zero-valued (b̄_dec − b_dec) @ W carries b_dec's
        gradient; its gradient to W is zero, as it must be.
        """
        pre = torch.addmm(b, sae_in.detach(), W)
        if self.cfg.apply_b_dec_to_input and self.b_dec.requires_grad and torch.is_grad_enabled():
            pre = pre + (self.b_dec.detach() - self.b_dec) @ W
        return pre

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        sae_in = self.encoder_input(x)
        mu = self._affine(sae_in, self.W_enc, self.b_enc)
        logvar = (
            self._affine(sae_in, self.W_var, self.b_var)
            if self.cfg.variance == "learned"
            else torch.full_like(mu, 2 * math.log(self.cfg.fixed_sigma))
        )
        if self.training and self.cfg.sample:
            z, kl = _SampleKL.apply(mu, logvar, torch.randn_like(mu), self.cfg.kl_on == "relu_mu")
        else:
            z = mu
            kl = gaussian_kl(mu.relu() if self.cfg.kl_on == "relu_mu" else mu, logvar).sum(-1).mean()
        if self.cfg.kl_scale == "decoder_norm":
            kl = kl * self.W_dec.norm(dim=1).mean()
        sampled = EncoderPass(x, None, sae_in, z, self.W_enc, self.b_enc, sparse=False)
        selection = sampled.attach(self.select(z))
        x_hat = self.decode_training(selection, self.cfg.kernel == "sparse")
        losses = self.losses(self.goal(x, target), x_hat, sampled, dead)
        losses["kl"] = self.cfg.kl_coefficient * kl
        return Output(
            x_hat,
            losses,
            self.cfg.d_sae,
            selection=selection,
            extra={"mean_sigma": (0.5 * logvar.detach()).exp().mean()},
        )

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        super().fold_input_scale(scale)
        if self.cfg.variance == "learned":
            self.W_var.mul_(scale)


register(Family("vsae", VariationalSAE, saelens_architecture="topk", inference_form="topk"))
