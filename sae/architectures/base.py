"""What every SAE family shares: parameters, the encoder/decoder, named losses, AuxK.

Parameters follow the SAELens layout (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
``b_enc``, ``b_dec``), so saved weights load there unchanged. A family overrides
``select`` (its sparsity rule, returning the chosen (row, latent, value) triples as a
``Selection``), ``losses`` if it adds terms, and ``inference_encode`` if its training
rule depends on the batch. Losses come back by name, already weighted; the trainer sums
and logs them and knows nothing else about the family.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from torch import nn

from sae.config import FrozenConfig


class SAEConfig(FrozenConfig):
    """Fields every family has; families add their own."""

    architecture: str = Field(..., description="Family name, the registry key in cfg.json.")
    d_in: int | None = Field(None, gt=0, description="Input width; filled in from the hook point when None.")
    d_sae: int = Field(..., gt=0, description="Number of latents.")
    apply_b_dec_to_input: bool = Field(True, description="Subtract b_dec from the input before encoding.")
    b_dec_init: str = Field("geometric_median", pattern="^(geometric_median|mean|zeros)$",
                            description="b_dec from the first batch's geometric median, its mean, or zeros.")
    unit_norm_decoder: bool = Field(True, description="Keep decoder rows at unit norm (gradient projected).")
    k_aux: int | None = Field(None, gt=0, description="AuxK latents (None: d_in // 2).")
    aux_coefficient: float = Field(1 / 32, ge=0, description="Weight of the dead-latent auxiliary loss; 0 disables it.")

    def with_d_in(self, d_in: int) -> "SAEConfig":
        return self if self.d_in == d_in else self.model_copy(update={"d_in": d_in})


class KConfig(SAEConfig):
    """Families with a sparsity budget of k latents per token (on average)."""

    k: int = Field(..., gt=0, description="Active latents per token (on average for batch-level rules).")

    @model_validator(mode="after")
    def _k_fits(self) -> "KConfig":
        if self.k > self.d_sae:
            raise PydanticCustomError("k_too_large", "k ({k}) is larger than d_sae ({d_sae})",
                                      {"k": self.k, "d_sae": self.d_sae})
        return self


@dataclass
class Selection:
    """Chosen activations in coordinate form: ``values[i]`` is latent ``latents[i]`` of row ``rows[i]``.

    This is the ``(indices, values)`` form every sparse rule yields, and where fused sparse
    kernels plug in. Per-token rules (TopK) set ``k``: rows are then
    ``arange(B).repeat_interleave(k)`` and ``indices``/``topk_values`` view the choice as
    ``[B, k]``. Batch-level rules (mutual and feature choice) give each row a variable
    number of latents (``k`` is None).
    """

    rows: torch.Tensor
    latents: torch.Tensor
    values: torch.Tensor
    n_rows: int
    k: int | None = None

    @property
    def indices(self) -> torch.Tensor:
        if self.k is None:
            raise ValueError("a batch-level selection has no per-token [B, k] form")
        return self.latents.view(self.n_rows, self.k)

    @property
    def topk_values(self) -> torch.Tensor:
        if self.k is None:
            raise ValueError("a batch-level selection has no per-token [B, k] form")
        return self.values.view(self.n_rows, self.k)

    def dense(self, d_sae: int) -> torch.Tensor:
        out = self.values.new_zeros(self.n_rows, d_sae)
        return out.index_put((self.rows, self.latents), self.values)

    def decode(self, W_dec: torch.Tensor) -> torch.Tensor:
        """Σ_i values_i · W_dec[latents_i] per row, without the bias: a sparse decoder
        (``embedding_bag``), equal to ``dense(d_sae) @ W_dec``; differentiable in both."""
        if self.k is not None:
            return F.embedding_bag(self.indices, W_dec, per_sample_weights=self.topk_values, mode="sum")
        order = self.rows.argsort(stable=True)
        offsets = torch.zeros(self.n_rows, dtype=torch.long, device=self.rows.device)
        offsets[1:] = torch.bincount(self.rows, minlength=self.n_rows).cumsum(0)[:-1]
        return F.embedding_bag(self.latents[order], W_dec, offsets, per_sample_weights=self.values[order], mode="sum")

    def fire_counts(self, d_sae: int) -> torch.Tensor:
        """Rows on which each latent is active (non-zero)."""
        return torch.bincount(self.latents[self.values > 0], minlength=d_sae)

    @staticmethod
    def from_topk(values: torch.Tensor, indices: torch.Tensor) -> "Selection":
        b, k = indices.shape
        rows = torch.arange(b, device=indices.device).repeat_interleave(k)
        return Selection(rows=rows, latents=indices.flatten(), values=values.flatten(), n_rows=b, k=k)

    @staticmethod
    def from_dense(codes: torch.Tensor) -> "Selection":
        rows, latents = codes.nonzero(as_tuple=True)
        return Selection(rows=rows, latents=latents, values=codes[rows, latents], n_rows=codes.shape[0])


class Output:
    """One forward pass: reconstruction, the selection (or dense codes), weighted losses by name."""

    def __init__(self, x_hat: torch.Tensor, losses: dict[str, torch.Tensor], d_sae: int,
                 selection: Selection | None = None, codes: torch.Tensor | None = None,
                 extra: dict[str, torch.Tensor] | None = None):
        if (selection is None) == (codes is None):
            raise ValueError("an Output needs either a selection or dense codes")
        self.x_hat, self.losses, self.d_sae = x_hat, losses, d_sae
        self.selection, self._codes = selection, codes
        self.extra = extra or {}

    @property
    def codes(self) -> torch.Tensor:
        """Dense ``[B, d_sae]`` codes (built on first use for sparse selections)."""
        if self._codes is None:
            self._codes = self.selection.dense(self.d_sae)
        return self._codes

    def fire_counts(self) -> torch.Tensor:
        """``[d_sae]`` rows of this batch on which each latent fired."""
        if self.selection is not None:
            return self.selection.fire_counts(self.d_sae)
        return (self._codes > 0).sum(0)

    def l0(self) -> float:
        return float(self.fire_counts().sum()) / self.x_hat.shape[0]


def geometric_median(x: torch.Tensor, iterations: int = 100, eps: float = 1e-8) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distances to the rows of ``x``."""
    median = x.mean(0)
    for _ in range(iterations):
        weights = 1.0 / (x - median).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        if (new - median).norm() < eps * max(1.0, float(median.norm())):
            return new
        median = new
    return median


def auxk_loss(pre: torch.Tensor, residual: torch.Tensor, W_dec: torch.Tensor, candidates: torch.Tensor,
              k_aux: int) -> torch.Tensor:
    """Gao et al.'s auxiliary loss over the ``candidates`` latents (dead ones for AuxK).

    The top ``k_aux`` candidate pre-activations (ReLU'd) reconstruct the detached
    residual e = x − x̂ through the decoder, with no bias: ‖e − ê‖² / ‖e − ē‖², ē the
    batch mean of e. Scaled by min(n/k_aux, 1) as in SAELens, so a handful of dead
    latents do not get the full weight. Zero when no latent is a candidate.
    """
    n = int(candidates.sum())
    if n == 0:
        return pre.new_zeros(())
    k = min(k_aux, n)
    masked = pre.relu().masked_fill(~candidates, -math.inf)
    values, indices = masked.topk(k, dim=-1, sorted=False)
    e_hat = Selection.from_topk(values.clamp_min(0), indices).decode(W_dec)
    e = residual.detach()
    denom = (e - e.mean(0, keepdim=True)).pow(2).sum().clamp_min(1e-12)
    return min(n / k_aux, 1.0) * (e - e_hat).pow(2).sum() / denom


class SparseAutoencoder(nn.Module, abc.ABC):
    """Base module. ``forward(x, g=None, dead=None)`` trains; ``encode(x)`` is the inference form.

    Training: pre-activations → ``select`` (the family's rule, giving a ``Selection``) →
    sparse decode → named losses. A fused kernel replaces the dense gradient through
    ``pre`` by one that touches only the selected (row, latent) pairs; the rules need not
    change. Inference: ``inference_select`` (batch-free) → the same decoder.
    """

    config_class: type[SAEConfig] = SAEConfig
    #: SAELens architecture name of the saved inference form ("standard", "topk", "jumprelu").
    inference_architecture: str = "topk"
    #: whether training reads g = dL/dx (gradient SAEs)
    needs_gradients: bool = False

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        if cfg.d_in is None:
            raise ValueError("the SAE config needs d_in (normally filled in from the hook point)")
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.reset_parameters()

    @property
    def k_aux(self) -> int:
        return self.cfg.k_aux or max(1, self.cfg.d_in // 2)

    def reset_parameters(self, decoder_norm: float = 1.0) -> None:
        """Random directions of norm ``decoder_norm`` for the decoder, W_enc = W_decᵀ, zero biases."""
        with torch.no_grad():
            w = torch.randn(self.cfg.d_sae, self.cfg.d_in)
            self.W_dec.copy_(decoder_norm * w / w.norm(dim=1, keepdim=True))
            self.W_enc.copy_(self.W_dec.T)
            self.b_enc.zero_()
            self.b_dec.zero_()

    @torch.no_grad()
    def init_b_dec(self, x: torch.Tensor) -> None:
        if self.cfg.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(x.float()).to(self.b_dec.dtype))
        elif self.cfg.b_dec_init == "mean":
            self.b_dec.copy_(x.mean(0))

    # -- the pieces ------------------------------------------------------------------

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        sae_in = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        return sae_in @ self.W_enc + self.b_enc

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Dense codes ``[..., d_sae]`` → reconstruction."""
        return codes @ self.W_dec + self.b_dec

    def decode_selection(self, selection: Selection) -> torch.Tensor:
        return selection.decode(self.W_dec) + self.b_dec

    @abc.abstractmethod
    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        """The training-time sparsity rule."""

    def inference_select(self, pre: torch.Tensor) -> Selection:
        """The batch-free rule; per-token rules reuse ``select``, batch-level ones override."""
        return self.select(pre)

    def inference_encode(self, pre: torch.Tensor) -> torch.Tensor:
        """Dense inference codes from pre-activations."""
        return self.inference_select(pre).dense(self.cfg.d_sae)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Inference codes ``[..., d_sae]``: what evals, the explorer and saved forms use."""
        shape = x.shape[:-1]
        codes = self.inference_encode(self.pre_acts(x.reshape(-1, x.shape[-1])))
        return codes.reshape(*shape, self.cfg.d_sae)

    def encode_selection(self, x: torch.Tensor) -> Selection:
        """Inference codes of ``[B, d_in]`` rows in sparse form (cheap to decode)."""
        return self.inference_select(self.pre_acts(x))

    def reconstruct(self, x: torch.Tensor) -> tuple[Selection, torch.Tensor]:
        """Inference codes and reconstruction of ``[B, d_in]`` rows."""
        selection = self.encode_selection(x)
        return selection, self.decode_selection(selection)

    def losses(self, x: torch.Tensor, x_hat: torch.Tensor, pre: torch.Tensor,
               dead: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """MSE (summed over dimensions, mean over rows) plus AuxK on dead latents."""
        out = {"mse": (x_hat - x).pow(2).sum(-1).mean()}
        if self.cfg.aux_coefficient > 0 and dead is not None:
            out["aux_k"] = self.cfg.aux_coefficient * auxk_loss(pre, x - x_hat, self.W_dec, dead, self.k_aux)
        return out

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None, dead: torch.Tensor | None = None) -> Output:
        pre = self.pre_acts(x)
        selection = self.select(pre, g)
        x_hat = self.decode_selection(selection)
        if self.training:
            self.observe(pre, selection)
        return Output(x_hat, self.losses(x, x_hat, pre, dead), self.cfg.d_sae, selection=selection)

    def observe(self, pre: torch.Tensor, selection: Selection) -> None:
        """Hook for families that keep running statistics (thresholds, densities)."""

    # -- decoder geometry ------------------------------------------------------------

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Project out the gradient component along each decoder row (keeps the norm fixed)."""
        if self.cfg.unit_norm_decoder and self.W_dec.grad is not None:
            w = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
            self.W_dec.grad -= (self.W_dec.grad * w).sum(1, keepdim=True) * w

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        if self.cfg.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    # -- saving ----------------------------------------------------------------------

    def inference_state(self) -> dict[str, torch.Tensor]:
        """Tensors of the saved inference form (SAELens names)."""
        return {"W_enc": self.W_enc.data, "b_enc": self.b_enc.data, "W_dec": self.W_dec.data, "b_dec": self.b_dec.data}

    def inference_config(self) -> dict:
        """SAELens cfg.json fields of the saved inference form beyond the shared ones."""
        return {}

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Rewrite the weights so the SAE takes raw inputs x where it was trained on x·scale.

        Codes are unchanged: pre((x·s) − b) = ((x − b/s)·(s W_enc)) + b_enc; the decoder
        output is divided by s. Thresholds on pre-activations need no change.
        """
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)
