"""Gated SAE (Rajamanoharan et al. 2024, *Improving Dictionary Learning with Gated SAEs*, arXiv 2404.16014).

A gate path decides which latents are on and a magnitude path sets their values; the two
share encoder directions, the magnitude path rescaled per latent by exp(r_mag):

    x̃ = x − b_dec,  π_gate = x̃W_enc + b_gate,  π_mag = x̃(W_enc ⊙ exp(r_mag)) + b_mag,
    f = 1[π_gate > 0] ⊙ ReLU(π_mag),  x̂ = fW_dec + b_dec.

Loss: ‖x − x̂‖² + λ Σ_i ReLU(π_gate)_i·‖W_dec,i‖ + ‖x − (ReLU(π_gate)W_dec^sg + b_dec^sg)‖²
(sg: stop-gradient, a frozen copy of the decoder). Only the gate pays the L1, which removes
shrinkage; the gate gets no gradient from the MSE (the step has none), so the auxiliary
reconstruction is what teaches it to reconstruct.

Which implementation is followed (``methods-2.md`` §B, §J): the paper and dictionary_learning
(stop-gradient decoder in the auxiliary loss, decoder rows at unit norm with the parallel
gradient removed, W_enc = W_decᵀ, b_gate = b_mag = r_mag = 0). SAELens 6.18 keeps a live
decoder in the auxiliary term (``aux_detach: false`` gives that variant) and leaves the
decoder free. The L1 is weighted by decoder norms as in SAELens: under the unit-norm
decoder this is exactly the paper's unweighted L1, and with ``unit_norm_decoder: false``
it stops the encoder shrinking while the decoder grows to cheat the penalty (SAELens#544).
b_dec starts at the first batch's geometric median (the lab's default; dictionary_learning
starts at zero). Decoder rows start at norm 0.1 (``decoder_init_norm``, SAELens' default) rather
than 1 (dictionary_learning): at norm 1 with W_enc = W_decᵀ and zero biases half the gates open and
the first reconstruction is about d_sae/(2·d_in) times the input, which a short run does not undo
(synthetic "hard" preset, 20 steps: FVU 2.3 at norm 1, 0.04 at 0.1).
Scale: the L1 grows like √d_in and the MSE like d_in on the lab's
√d_in-normalised inputs, so λ_lab ≈ √d_in·λ for unit-norm inputs.

Transcoders. The paper has no gated transcoder; this is the natural extension, as for every
family here (``base``): with a target y (a run's ``hook_out``) the output predicts y, the MSE
is ‖y − ŷ‖², and the auxiliary loss reconstructs the *target* through the frozen decoder,
‖y − (ReLU(π_gate)W_dec^sg + b_dec^sg)‖², so the gate learns to open on what predicts y. A
skip transcoder's pass sees y − xW_skipᵀ as its target (``training_pass``); with the frozen
decoder that target is frozen too, so W_skip learns from the MSE alone, as the decoder does.
Saved as ``gated_transcoder``/``gated_skip_transcoder``, which SAELens does not have (saelab loads them).

Saved form: SAELens ``gated`` (``W_enc, W_dec, b_dec, b_gate, b_mag, r_mag``, no ``b_enc``).
The module's pre-activation (``pre_acts``, SAELens' ``hook_sae_acts_pre``) is π_mag.

Sparse training path (``kernel: sparse``, the default). Every term lives on the open gates
{π_gate > 0}: f = 1[π_gate > 0]·ReLU(π_mag), the L1's ReLU(π_gate)·‖W_dec,i‖ and the
auxiliary ReLU(π_gate)·W_dec^sg are all 0 there, with zero gradients. π_gate and π_mag share
the projection p = x̃W_enc, computed once without a graph (as ``encoder_pass`` does); per open
gate, π_gate = p + b_gate and π_mag = p·exp(r_mag) + b_mag with the biases gathered per entry
(the same floats as the dense sums), so gradients reach W_enc (and x̃'s b_dec) through p only,
∂p = ∂π_gate + ∂π_mag·exp(r_mag) (``EncoderPass.entries``, sparse in backward, not ReLU'd:
p may be negative), and b_gate, b_mag, r_mag through index-adds. Both reconstructions are
``sparse_decode``s of the same entries (the auxiliary one through the detached decoder, or
the live one with ``aux_detach: false``). Losses, outputs and every gradient equal the dense
path's (``tests/unit/test_kernels.py``, float64, 1e-5), for SAEs and (skip) transcoders.

At initialisation (zero gate biases) half the gates open, where per-entry kernels cost more
than dense GEMMs: above ``THRESHOLD_SHARE`` of batch·d_sae (``sae.architectures.base``) the
step goes dense, reusing its GEMM (``sae.kernels.dense_encode``, whose ∂b_dec skips the
[batch, d_in] GEMM). Measured on one CPU thread (d_in 768, d_sae 8192, batch 4096, load 3 on
2 cores): a step costs 2.3–2.7 bare encoder GEMMs with 48 gates open per row (0.6% of entries),
7.7 at 4.9%, and the dense step 8.5–12.8 (the GEMM-reusing fallback at init: 8.8–9.3), so the
two meet near 6–8% (``saelab bench train --families gated``). AuxK
(``aux_coefficient > 0``, off by default) keeps the dense path. ``kernel: dense`` forces
the dense path, the reference.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from sae.architectures.base import EncoderPass, Output, SAEConfig, Selection, SparseAutoencoder, threshold_selection
from sae.architectures.registry import Coefficient, Family, register


class GatedConfig(SAEConfig):
    """Gated SAE: gate and magnitude paths sharing encoder directions, L1 on the gate only."""

    architecture: Literal["gated"] = Field("gated", description="Family name, the registry key in cfg.json.")
    l1_coefficient: float = Field(1.0, ge=0, description="λ of the gate's L1 penalty, in the lab's units.")
    l1_warmup_fraction: float = Field(0.05, ge=0, le=1, description="Fraction of training over which λ ramps up.")
    aux_detach: bool = Field(
        True,
        description="Auxiliary loss through a frozen (detached) decoder copy (the paper, dictionary_learning); "
        "false: through the live decoder (SAELens).",
    )
    aux_coefficient: float = Field(
        0.0, ge=0, description="AuxK on the magnitude path's dead latents; gated SAEs use none by default."
    )
    decoder_init_norm: float = Field(
        0.1,
        gt=0,
        description="Norm of the initial decoder rows (W_enc = W_decᵀ): SAELens' decoder_init_norm. At norm 1 the "
        "initial reconstruction is about d_sae/(2·d_in) times the input (half the gates open at zero biases).",
    )


class GatedSAE(SparseAutoencoder):
    config_class = GatedConfig

    def __init__(self, cfg: GatedConfig):
        # not SparseAutoencoder.__init__: the saved form has b_gate and b_mag where others have b_enc
        nn.Module.__init__(self)
        self.check_config(cfg)
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.width_out
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.b_gate = nn.Parameter(torch.zeros(d_sae))
        self.b_mag = nn.Parameter(torch.zeros(d_sae))
        self.r_mag = nn.Parameter(torch.zeros(d_sae))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if cfg.skip else None
        self.reset_parameters()

    def reset_parameters(self, decoder_norm: float | None = None) -> None:
        """Random decoder rows of norm ``decoder_init_norm``, W_enc = W_decᵀ (a transcoder: its own
        random columns), zero biases, r_mag and W_skip."""
        self.init_directions(self.cfg.decoder_init_norm if decoder_norm is None else decoder_norm)
        with torch.no_grad():
            for p in (self.b_dec, self.b_gate, self.b_mag, self.r_mag):
                p.zero_()

    # -- the two paths -----------------------------------------------------------------

    def paths(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(π_gate, π_mag) of ``[B, d_in]`` rows; x̃(W_enc ⊙ exp(r_mag)) is computed as (x̃W_enc)·exp(r_mag)."""
        return self.paths_of(self.encoder_input(self.normalize_input(x)[0]) @ self.W_enc)

    def paths_of(self, proj: torch.Tensor, latents: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(π_gate, π_mag) from the shared projection x̃W_enc: dense ``[B, d_sae]``, or flat entries
        of ``latents`` (each latent's b_gate, exp(r_mag), b_mag gathered per entry, the same floats)."""
        b_gate, scale, b_mag = self.b_gate, self.r_mag.exp(), self.b_mag
        if latents is not None:
            b_gate, scale, b_mag = (t.index_select(0, latents) for t in (b_gate, scale, b_mag))
        return proj + b_gate, proj * scale + b_mag

    @staticmethod
    def gated(pi_gate: torch.Tensor, pi_mag: torch.Tensor) -> torch.Tensor:
        return (pi_gate > 0).to(pi_mag.dtype) * pi_mag.relu()

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """π_mag (SAELens' ``hook_sae_acts_pre`` of a gated SAE)."""
        return self.paths(x)[1]

    def linear_encoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """π_mag = x̃(W_enc ⊙ exp(r_mag)) + b_mag as one affine map of x: (W_enc ⊙ exp(r_mag),
        b_mag − b_dec·W_mag when the input is centred). The gate's π_gate shares the directions
        (it differs by the per-latent factor exp(−r_mag) and its bias), so an attribution of π_mag
        splits π_gate − b_gate in the same proportions."""
        w_mag = self.W_enc * self.r_mag.exp()
        if self.cfg.apply_b_dec_to_input:
            return w_mag, self.b_mag - self.b_dec @ w_mag
        return w_mag, self.b_mag

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        raise NotImplementedError("a gated SAE's rule reads two paths (gate and magnitude); use encode or forward")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        codes = self.gated(*self.paths(x.reshape(-1, x.shape[-1])))
        return codes.reshape(*shape, self.cfg.d_sae)

    def encode_selection(self, x: torch.Tensor) -> Selection:
        return Selection.from_dense(self.encode(x))

    # -- training ----------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """One training pass: MSE, the gate's L1 and the auxiliary reconstruction, towards
        ``self.goal(x, target)`` (a transcoder's target; see the module docstring), on the open
        gates' entries (``kernel: sparse``, few enough of them, no AuxK) or on dense codes."""
        if self.cfg.kernel == "dense" or (self.cfg.aux_coefficient > 0 and dead is not None):
            return self.dense_pass(x, dead, target, self.encoder_input(x), *self.paths(x))
        shift = self.b_dec if self.cfg.apply_b_dec_to_input else None
        with torch.no_grad():
            sae_in = self.encoder_input(x)
            proj = sae_in @ self.W_enc  # the one GEMM; fl(p + b) > 0 exactly when p > −b: π_gate > 0
            gates = threshold_selection(proj > -self.b_gate, proj)
        enc = EncoderPass(x, shift, sae_in, proj, self.W_enc, None, sparse=True)
        if gates is None:
            return self.dense_pass(x, dead, target, sae_in, *self.paths_of(enc.densified().pre))
        pi_gate, pi_mag = self.paths_of(enc.entries(gates), gates.latents)
        codes = gates.with_values(pi_mag.relu())  # every entry's gate is open
        x_hat = self.decode_training(codes, sparse=True)
        norms = self.W_dec.norm(dim=1).index_select(0, gates.latents)
        losses = self.gate_losses(x, target, x_hat, pi_gate, norms, gates.with_values(pi_gate).decode)
        return Output(x_hat, losses, self.cfg.d_sae, selection=codes)

    def dense_pass(self, x, dead, target, sae_in, pi_gate, pi_mag) -> Output:
        """The dense codes' pass (the reference, the fallback, and AuxK's path)."""
        codes = self.gated(pi_gate, pi_mag)
        x_hat = self.decode(codes)
        gate = pi_gate.relu()
        losses = self.gate_losses(x, target, x_hat, gate, self.W_dec.norm(dim=1), lambda w: gate @ w)
        enc = EncoderPass(x, None, sae_in, pi_mag, self.W_enc, self.b_mag, sparse=False)
        losses.update(self.aux_losses(self.goal(x, target) - x_hat, enc, dead))
        return Output(x_hat, losses, self.cfg.d_sae, codes=codes)

    def gate_losses(self, x, target, x_hat, gate, norms, decode_gate) -> dict[str, torch.Tensor]:
        """MSE, L1 = λ Σ ReLU(π_gate)·‖W_dec,i‖ per row and the auxiliary reconstruction
        ``decode_gate(W) + b`` (ReLU(π_gate)·W): both zero off the open gates, so the sums over
        the open gates' entries are the dense ones."""
        goal = self.goal(x, target)
        out = {"mse": self.mse(goal, x_hat)}
        weight = self.coefficient_scale * self.cfg.l1_coefficient
        out["l1"] = weight * (gate * norms).sum() / x.shape[0]
        if self.cfg.aux_detach:  # the frozen decoder; a skip transcoder's W_skip (inside the goal) frozen with it
            out["aux_gate"] = self.mse(goal.detach(), decode_gate(self.W_dec.detach()) + self.b_dec.detach())
        else:
            out["aux_gate"] = self.mse(goal, decode_gate(self.W_dec) + self.b_dec)
        return out

    # -- saving ------------------------------------------------------------------------

    def inference_state(self) -> dict[str, torch.Tensor]:
        names = ("W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag")
        out = {n: getattr(self, n).data for n in names}
        if self.W_skip is not None:
            out["W_skip"] = self.W_skip.data
        return out

    def inference_config(self) -> dict:
        return {"apply_b_dec_to_input": self.cfg.apply_b_dec_to_input}


register(
    Family(
        "gated",
        GatedSAE,
        saelens_architecture="gated",
        coefficient=Coefficient("l1_coefficient", "l1", warmup_field="l1_warmup_fraction"),
        sparse_kernel=True,  # trains on the open gates' entries (dense fallback while they are many)
    )
)
