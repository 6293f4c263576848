"""JumpReLU SAE, trained (Rajamanoharan et al. 2024, *Jumping Ahead*, arXiv 2407.14435).

f_i = JumpReLU_θ(π_i) = π_i·H(π_i − θ_i) with a learned threshold θ_i > 0 per latent and
loss ‖x − x̂‖² + λ Σ_i H(π_i − θ_i) (the "step" L0 penalty; batch mean). θ gets gradients
from straight-through pseudo-derivatives with the rectangle kernel K(u) = 1[|u| < ½] and
bandwidth ε (the paper's, as ``methods-2.md`` §A states them):

- ∂JumpReLU/∂θ := −(θ/ε)·K((π − θ)/ε), ∂JumpReLU/∂π := H(π − θ);
- ∂H/∂θ := −(1/ε)·K((π − θ)/ε), ∂H/∂π := 0.

θ is parameterised as ``log_threshold`` (paper App. J): θ = exp(log θ) is computed outside
the autograd functions, so the chain rule gives ∂/∂log θ = θ·∂/∂θ. ``sparsity_loss: tanh``
is Anthropic's Jan-2025 variant λ Σ_i tanh(c·f_i·‖W_dec,i‖).

Name. ``jumprelu`` stays the inference-only form (what SAELens/Gemma Scope JumpReLU SAEs
and the batch-level rules' saved forms load as, with a ``threshold`` buffer); this trained
family is ``jumprelu_ste`` and saves as that form (SAELens ``jumprelu``, ``threshold =
exp(log_threshold)``), so it is not registered twice and foreign files keep loading as before.

Scale. The lab normalises inputs to mean norm √d_in (the trainer's
``normalize_activations``), where the paper uses unit-norm inputs. ``bandwidth`` and
``threshold_init`` are stated on the paper's unit scale and multiplied by √d_in here:
ε = bandwidth·√d_in, θ₀ = threshold_init·√d_in (SAELens#494: an ε tuned for unit inputs
is √d_in too small on √d_in-normalised ones and L0 stalls). λ multiplies a count, while
the MSE is on the lab's scale (d_in times the unit-norm MSE), so λ_lab ≈ d_in·λ_paper.

Which implementation is followed (``methods-2.md`` §J):

- STE of the L0 term on π (paper, SAELens ≤ 6.18, circuit-tracer), not on f (dictionary_learning,
  DL#55, where inactive latents give no θ-gradient); no STE into π (SAELens#728's Anthropic flag).
- log θ (paper, SAELens ≤ #718), not raw θ (dictionary_learning, SAELens after #718).
- λ·L0 with a linear warm-up (paper, SAELens), not dictionary_learning's
  ``(L0/target − 1)²``; no pre-activation loss (SAELens' optional term).
- Initialisation: W_enc = W_decᵀ, b_enc = 0, ε = 0.001 on the unit scale (the paper's and
  dictionary_learning's "Appendix I" value), b_dec = 0 and the input not centred by b_dec
  (``apply_b_dec_to_input: false``, Gemma Scope's saved form). θ₀ = 0.01 on the unit scale, not
  the paper's 0.001 (a deviation; SAELens' default value, there in raw units): log θ moves by at
  most about lr per step, so from 0.001 θ needs ~ln(40)/lr steps to reach its final scale and
  the L0 penalty, which acts on θ alone, lags the whole run. Measured on the organism
  (``saelab bench peers`` stream, d_sae 1024, 6,000 steps at lr 8e-4, held-out): θ₀ 0.001 →
  FVU 0.0196 at L0 15.1 with 9-10% of latents dead and final θ median 0.42 (0.037 on the unit
  scale); θ₀ 0.01 → FVU 0.0152 at L0 15.2, 1.4% dead; θ₀ 0.05 → 96% dead (pre-activations of
  the 0.1-norm initial decoder all start below θ, and an inactive latent gets no gradient).
  SAELens 6.18 also uses ε = 0.05 (raw units; ≈ 0.002 on the organism's unit scale, which
  changed nothing measurable here) and leaves the decoder free; here decoder rows are kept at
  unit norm (dictionary_learning), which the L0 penalty, blind to decoder norms, neither needs
  nor is hurt by.
- Decoder rows start at norm 0.1 (``decoder_init_norm``, SAELens' default), not 1
  (dictionary_learning): with W_enc = W_decᵀ at norm 1 and θ₀ tiny, half the latents fire and
  the first reconstruction is about d_sae/(2·d_in) times the input (4x at 8x expansion), which
  a short run does not undo (synthetic "hard" preset, 20 steps: FVU 2.7 at norm 1, 0.03 at 0.1).
  Under the unit-norm constraint the decoder is back at norm 1 after the first step and the
  encoder keeps the small scale, so initial codes are small, as in SAELens.
- The paper's Adam β1 = 0 is a trainer setting (``trainer.adam_betas``), shared by a run.

Adam moves log θ by about the learning rate per step, so θ changes by a factor of at most
about exp(lr·steps): a short run must start θ near its final scale (``threshold_init``).

Sparse training path (``kernel: sparse``, the default). Only entries that are active (π > θ)
or inside the kernel window (|π − θ| < ε/2) reach the loss or any gradient: the codes z·H(z − θ)
and the step H(z − θ) are 0 elsewhere, ∂/∂z = H(z − θ) is 0 off the active set, both θ
pseudo-derivatives carry K((z − θ)/ε), and the tanh penalty tanh(c·f·‖W_dec,i‖) is 0 (with a
zero gradient) where f = 0. So a step reads the pre-activations once (the one GEMM, no graph),
keeps the entries above θ − ¾ε (a superset of active ∪ window found in one comparison, with
ε/4 to spare for rounding), and applies the same autograd functions to those flat entries:
their raw values come from ``EncoderPass.entries`` (not ReLU'd: with θ < ε/2 window entries
below θ can be ≤ 0, and their θ-gradient needs their true value), θ is gathered per entry
(its backward index-adds into θ), the L0 is Σ_entries H / B, and ``sparse_decode`` decodes;
inactive window entries carry value 0 yet receive ∂values from the decode's backward, which is
what their θ-gradient reads. Losses, outputs and every gradient equal the dense path's
(``tests/unit/test_kernels.py``, float64, 1e-5). AuxK, when on, runs through the same pass.

Early in training (θ₀ tiny) about half the latents fire, where per-entry kernels cost more than
dense GEMMs: above ``THRESHOLD_SHARE`` of batch·d_sae (``sae.architectures.base``) the step
goes dense, reusing its GEMM (``EncoderPass.densified``). The crossover measured on one CPU
thread (d_in 768, d_sae 8192, batch 4096, load 3 on 2 cores): a step costs 2.2–2.6 bare
encoder GEMMs with 48 latents firing per row (1.1% of entries with the window), 6.4 at 7.4% of
entries, and the dense step 6.3–7.4 whatever fires (the GEMM-reusing fallback at θ₀: 6.0–6.4),
so the two meet near 7% (``saelab bench train --families jumprelu_ste``). ``kernel: dense``
forces the dense path, the reference.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from sae.architectures.base import Output, SAEConfig, Selection, SparseAutoencoder, threshold_selection
from sae.architectures.registry import Coefficient, Family, register


class JumpReLUSTEConfig(SAEConfig):
    """JumpReLU trained with straight-through estimators and an L0 penalty (Rajamanoharan et al. 2024)."""

    architecture: Literal["jumprelu_ste"] = Field(
        "jumprelu_ste", description="Family name, the registry key in cfg.json."
    )
    l0_coefficient: float = Field(1.0, ge=0, description="λ of the L0 (or tanh) sparsity penalty, in the lab's units.")
    l0_warmup_fraction: float = Field(0.05, ge=0, le=1, description="Fraction of training over which λ ramps up.")
    sparsity_loss: Literal["step", "tanh"] = Field(
        "step", description="step: λ Σ H(π − θ) (the paper); tanh: λ Σ tanh(c·f·‖W_dec,i‖) (Anthropic, 2025)."
    )
    tanh_scale: float = Field(4.0, gt=0, description="c of the tanh penalty.")
    bandwidth: float = Field(
        0.001, gt=0, description="ε of the rectangle kernel on the unit-norm scale; ε = bandwidth·√d_in here."
    )
    threshold_init: float = Field(
        0.01,
        gt=0,
        description="θ₀ of every latent on the unit-norm scale; θ₀ = threshold_init·√d_in here. Near the final "
        "scale: log θ moves about lr per step (the paper's 0.001 needs a far longer run).",
    )
    apply_b_dec_to_input: bool = Field(False, description="The paper encodes x, not x − b_dec.")
    b_dec_init: str = Field(
        "zeros",
        pattern="^(geometric_median|mean|zeros)$",
        description="b_dec from the first batch's geometric median, its mean, or zeros (the paper: zeros).",
    )
    aux_coefficient: float = Field(0.0, ge=0, description="JumpReLU SAEs use no AuxK by default.")
    decoder_init_norm: float = Field(
        0.1,
        gt=0,
        description="Norm of the initial decoder rows (W_enc = W_decᵀ): SAELens' decoder_init_norm. At norm 1 the "
        "initial reconstruction is about d_sae/(2·d_in) times the input (half the latents fire at θ₀).",
    )


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """K(u) = 1[−½ < u < ½]."""
    return (u.abs() < 0.5).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """z·H(z − θ); backward ∂/∂z = H(z − θ), ∂/∂θ = −(θ/ε)K((z − θ)/ε), summed over rows."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_z = grad * (z > theta) if ctx.needs_input_grad[0] else None
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = (-(theta / eps) * rectangle((z - theta) / eps) * grad).flatten(0, -2).sum(0)
        return grad_z, grad_theta, None


class StepFunction(torch.autograd.Function):
    """H(z − θ); backward ∂/∂z = 0, ∂/∂θ = −(1/ε)K((z − θ)/ε), summed over rows."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = (-(1.0 / eps) * rectangle((z - theta) / eps) * grad).flatten(0, -2).sum(0)
        return None, grad_theta, None


class JumpReLUCountFunction(torch.autograd.Function):
    """``(z·H(z − θ), Σ_i H(z_i − θ_i) per row)`` in one pass: ``JumpReLUFunction`` and
    ``StepFunction`` (the "step" loss's two terms) with the same pseudo-derivatives.

    Both θ-derivatives use the same kernel window K((z − θ)/ε), so it is computed once and
    kept as a boolean mask beside the float active mask (instead of z and θ twice); backward is
    a few passes over ``[B, d_sae]`` instead of two dozen:
    ∂/∂z = H(z − θ)·ḡ_codes; ∂/∂θ_i = −(1/ε)·Σ_b K_bi·(θ_i·ḡ_codes,bi + ḡ_count,b).
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, theta: torch.Tensor, eps: float):
        # the active mask once as floats: a bool operand in a product or a float sum is
        # converted anew each time, and torch.where / masked_fill are slower still on CPU
        active = (z > theta).to(z.dtype)
        window = (z - theta).abs_().div_(eps) < 0.5  # rectangle((z − θ)/ε), as a mask
        ctx.save_for_backward(active, window, theta)
        ctx.eps = eps
        return z * active, active.sum(-1)

    @staticmethod
    def backward(ctx, grad_codes: torch.Tensor | None, grad_count: torch.Tensor | None):
        active, window, theta = ctx.saved_tensors
        grad_z = grad_theta = None
        if ctx.needs_input_grad[0] and grad_codes is not None:
            grad_z = grad_codes * active
        if ctx.needs_input_grad[1]:
            w = window.flatten(0, -2).to(theta.dtype)  # [rows, latents], also with no latent
            grad_theta = torch.zeros_like(theta)
            if grad_codes is not None:
                grad_theta += theta * (grad_codes.flatten(0, -2) * w).sum(0)
            if grad_count is not None:
                grad_theta += grad_count.reshape(-1) @ w
            grad_theta = grad_theta.div_(-ctx.eps)
        return grad_z, grad_theta, None


def jumprelu_count(z: torch.Tensor, theta: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(jumprelu(z, θ, ε), step(z, θ, ε).sum(-1))`` with the same gradients, in one pass."""
    return JumpReLUCountFunction.apply(z, theta, eps)


def jumprelu(z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    return JumpReLUFunction.apply(z, theta, eps)


def step(z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
    return StepFunction.apply(z, theta, eps)


class JumpReLUSTESAE(SparseAutoencoder):
    config_class = JumpReLUSTEConfig

    def __init__(self, cfg: JumpReLUSTEConfig):
        super().__init__(cfg)
        theta0 = cfg.threshold_init * math.sqrt(cfg.d_in)
        self.log_threshold = torch.nn.Parameter(torch.full((cfg.d_sae,), math.log(theta0)))

    def reset_parameters(self, decoder_norm: float | None = None) -> None:
        super().reset_parameters(self.cfg.decoder_init_norm if decoder_norm is None else decoder_norm)

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    @property
    def bandwidth(self) -> float:
        """ε on the lab's √d_in scale."""
        return self.cfg.bandwidth * math.sqrt(self.cfg.d_in)

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return Selection.from_dense(self.inference_encode(pre))

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold.detach())

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """One training pass: on the chosen entries (``kernel: sparse``, few enough of them) or on
        dense codes (``kernel: dense``, the reference; and the fallback). Same losses and gradients."""
        enc = self.encoder_pass(x)
        theta = self.threshold
        if enc.sparse:
            # θ − ¾ε bounds the kernel window (|π − θ| < ε/2) from below with ε/4 to spare for
            # rounding: the entries above it are a superset of active ∪ window (every entry off
            # both contributes nothing), found in one comparison
            candidates = threshold_selection(enc.pre > theta.detach() - 0.75 * self.bandwidth, enc.pre)
            if candidates is not None:  # the entries as one row against θ per entry (the same functions)
                z = enc.entries(candidates)[None]
                codes, penalty = self.scored(z, theta.index_select(0, candidates.latents), candidates.latents)
                chosen = candidates.with_values(codes[0])
                return self.finish(x, target, dead, enc, self.decode_training(chosen, True), penalty, chosen)
            enc = enc.densified()
        codes, penalty = self.scored(enc.pre, theta, None)
        return self.finish(x, target, dead, enc, self.decode(codes), penalty, codes)

    def scored(
        self, z: torch.Tensor, theta: torch.Tensor, latents: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes, penalty summed over the batch) of pre-activations ``z`` against ``theta``: dense
        ``[B, d_sae]`` against ``[d_sae]``, or flat entries (of ``latents``) against θ per entry.
        Both terms vanish off active ∪ window, so the entries' sums are the dense ones."""
        eps = self.bandwidth
        if self.cfg.sparsity_loss == "step":
            codes, count = jumprelu_count(z, theta, eps)
            return codes, count.sum()
        codes = jumprelu(z, theta, eps)
        norms = self.W_dec.norm(dim=1)
        norms = norms if latents is None else norms.index_select(0, latents)
        return codes, torch.tanh(self.cfg.tanh_scale * codes * norms).sum()

    def finish(self, x, target, dead, enc, x_hat, penalty, codes) -> Output:
        """The losses (MSE, AuxK, the weighted sparsity penalty per row) and the Output of either path."""
        losses = self.losses(self.goal(x, target), x_hat, enc, dead)
        weight = self.coefficient_scale * self.cfg.l0_coefficient
        losses["l0" if self.cfg.sparsity_loss == "step" else "tanh"] = weight * penalty / x.shape[0]
        if isinstance(codes, Selection):
            return Output(x_hat, losses, self.cfg.d_sae, selection=codes)
        return Output(x_hat, losses, self.cfg.d_sae, codes=codes)

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**super().inference_state(), "threshold": self.threshold.detach().clone()}

    def inference_config(self) -> dict:
        return {"apply_b_dec_to_input": self.cfg.apply_b_dec_to_input}


register(
    Family(
        "jumprelu_ste",
        JumpReLUSTESAE,
        saelens_architecture="jumprelu",
        inference_form="jumprelu",
        coefficient=Coefficient("l0_coefficient", "l0", warmup_field="l0_warmup_fraction"),
        sparse_kernel=True,  # trains on active ∪ kernel-window entries (dense fallback while they are many)
    )
)
