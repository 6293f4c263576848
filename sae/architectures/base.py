"""What every SAE family shares: parameters, the encoder/decoder, named losses, AuxK.

Parameters follow the SAELens layout (``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``,
``b_enc``, ``b_dec``), so saved weights load there unchanged.

Any family is also a **transcoder** when its config has ``d_out`` (set from a run's
``hook_out``): the code of the input predicts another activation, ``W_dec [d_sae, d_out]``,
``b_dec [d_out]``, and the loss reconstructs the target passed to ``forward`` instead of the
input (SAELens' ``Transcoder`` layout). With ``skip`` it is a skip transcoder (Paulo et al.,
2025): ŷ = f W_dec + b_dec + x W_skipᵀ, ``W_skip [d_out, d_in]`` zero at the start (SAELens'
and sparsify's initialisation). A transcoder never centres its input by b_dec (b_dec lives in
the output space; SAELens refuses ``apply_b_dec_to_input`` for transcoders). A family overrides
``select`` (its sparsity rule, returning the chosen (row, latent, value) triples as a
``Selection``), ``losses`` if it adds terms, and ``inference_encode`` if its training
rule depends on the batch. Losses come back by name, already weighted; the trainer sums
and logs them and knows nothing else about the family.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from torch import nn

from sae.collective import SINGLE, Collective
from sae.config import FrozenConfig
from sae.kernels import (
    GradStash,
    Layout,
    block_decode,
    block_encode,
    dense_encode,
    group_order,
    sparse_decode,
    sparse_encode,
)
from sae.row_topk import above_zero, mask_entries, row_topk_mask


class SAEConfig(FrozenConfig):
    """Fields every family has; families add their own."""

    architecture: str = Field(..., description="Family name, the registry key in cfg.json.")
    d_in: int | None = Field(None, gt=0, description="Input width; filled in from the hook point when None.")
    d_sae: int = Field(..., gt=0, description="Number of latents.")
    d_out: int | None = Field(
        None,
        gt=0,
        description="Transcoders: width of the output the code predicts (filled in from the run's hook_out). "
        "None: an SAE, which reconstructs its input.",
    )
    skip: bool = Field(
        False,
        description="Transcoders: add a learned linear skip x W_skip^T (d_out x d_in, zero-initialised) to the "
        "output: a skip transcoder.",
    )
    apply_b_dec_to_input: bool = Field(True, description="Subtract b_dec from the input before encoding.")
    b_dec_init: str = Field(
        "geometric_median",
        pattern="^(geometric_median|mean|zeros)$",
        description="b_dec from the first batch's geometric median, its mean, or zeros.",
    )
    unit_norm_decoder: bool = Field(True, description="Keep decoder rows at unit norm (gradient projected).")
    k_aux: int | None = Field(None, gt=0, description="AuxK latents (None: d_in // 2).")
    aux_coefficient: float = Field(1 / 32, ge=0, description="Weight of the dead-latent auxiliary loss; 0 disables it.")
    kernel: Literal["sparse", "dense"] = Field(
        "sparse",
        description="Training path of sparse rules: fused kernels whose backward touches only the chosen "
        "latents (sparse), or plain autograd through dense codes, the reference (dense). Same mathematics.",
    )

    @model_validator(mode="after")
    def _transcoder_fields(self) -> SAEConfig:
        if self.d_out is not None and self.apply_b_dec_to_input:
            raise PydanticCustomError(
                "transcoder_b_dec",
                "a transcoder's b_dec lives in its output space: apply_b_dec_to_input must be false",
                {},
            )
        return self

    @property
    def width_out(self) -> int | None:
        """The width of what the SAE outputs: d_out for a transcoder, else d_in."""
        return self.d_out if self.d_out is not None else self.d_in

    @property
    def transcoder(self) -> bool:
        return self.d_out is not None


class KConfig(SAEConfig):
    """Families with a sparsity budget of k latents per token (on average)."""

    k: int = Field(..., gt=0, description="Active latents per token (on average for batch-level rules).")

    @model_validator(mode="after")
    def _k_fits(self) -> KConfig:
        if self.k > self.d_sae:
            raise PydanticCustomError(
                "k_too_large", "k ({k}) is larger than d_sae ({d_sae})", {"k": self.k, "d_sae": self.d_sae}
            )
        return self


@dataclass
class Selection:
    """Chosen activations in coordinate form: ``values[i]`` is latent ``latents[i]`` of row ``rows[i]``.

    This is the ``(indices, values)`` form every sparse rule yields, and where the fused
    sparse kernels (``sae.kernels``) plug in. Entries are kept sorted by row (a batch-level
    rule's entries are sorted on construction), so each row's entries are one segment.
    Per-token rules (TopK) set ``k``: rows are then ``arange(B).repeat_interleave(k)`` and
    ``indices``/``topk_values`` view the choice as ``[B, k]``. Batch-level rules (mutual
    and feature choice) give each row a variable number of latents (``k`` is None).
    """

    rows: torch.Tensor
    latents: torch.Tensor
    values: torch.Tensor
    n_rows: int
    k: int | None = None
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)
    #: the encoder pass's stash when these values came from its first ``attach``: this
    #: selection's sparse decode then adds block decodes' ``W_dec`` rows (``sae.kernels``)
    stash: GradStash | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.k is None and self.rows.numel() > 1 and bool((self.rows[1:] < self.rows[:-1]).any()):
            order = group_order(self.rows, self.n_rows)
            self.rows, self.latents, self.values = self.rows[order], self.latents[order], self.values[order]

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

    def layout(self, d_sae: int) -> Layout:
        """Index plans shared by the encoder's and the decoder's sparse backward (computed once)."""
        if d_sae not in self._layouts:
            self._layouts[d_sae] = Layout.of(self.rows, self.latents, self.n_rows, d_sae)
        return self._layouts[d_sae]

    def with_values(self, values: torch.Tensor) -> Selection:
        """The same entries with other values (e.g. ones that carry gradients); the layout is shared."""
        return Selection(self.rows, self.latents, values, self.n_rows, self.k, self._layouts)

    def dense(self, d_sae: int) -> torch.Tensor:
        out = self.values.new_zeros(self.n_rows, d_sae)
        return out.index_put((self.rows, self.latents), self.values)

    def decode(self, W_dec: torch.Tensor) -> torch.Tensor:
        """Σ_i values_i · W_dec[latents_i] per row, without the bias: the sparse decoder,
        equal to ``dense(d_sae) @ W_dec``; differentiable in both, sparsely."""
        return sparse_decode(self.values, W_dec, self.rows, self.latents, self.layout(W_dec.shape[0]), self.stash)

    def fire_counts(self, d_sae: int) -> torch.Tensor:
        """Rows on which each latent is active (non-zero)."""
        return torch.bincount(self.latents[self.values > 0], minlength=d_sae)

    @staticmethod
    def from_topk(values: torch.Tensor, indices: torch.Tensor) -> Selection:
        b, k = indices.shape
        rows = torch.arange(b, device=indices.device).repeat_interleave(k)
        return Selection(rows=rows, latents=indices.flatten(), values=values.flatten(), n_rows=b, k=k)

    @staticmethod
    def from_dense(codes: torch.Tensor) -> Selection:
        rows, latents = codes.nonzero(as_tuple=True)
        return Selection(rows=rows, latents=latents, values=codes[rows, latents], n_rows=codes.shape[0])


class Output:
    """One forward pass: reconstruction, the selection (or dense codes), weighted losses by name."""

    def __init__(
        self,
        x_hat: torch.Tensor,
        losses: dict[str, torch.Tensor],
        d_sae: int,
        selection: Selection | None = None,
        codes: torch.Tensor | None = None,
        extra: dict[str, torch.Tensor] | None = None,
    ):
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


def _identity(y: torch.Tensor) -> torch.Tensor:
    return y


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


def normalized_error(residual: torch.Tensor, e_hat: torch.Tensor, collective: Collective = SINGLE) -> torch.Tensor:
    """‖e − ê‖² / ‖e − ē‖² with e the detached residual and ē its batch mean (AuxK's normalisation).

    Over several ranks the batch is the global one: the denominator comes from summed
    moments, and each rank's loss is scaled by the number of ranks, so that the gradients
    averaged over ranks are those of the global loss.
    """
    e = residual.detach()
    if not collective.distributed:
        denom = (e - e.mean(0, keepdim=True)).pow(2).sum()
        return (e - e_hat).pow(2).sum() / denom.clamp_min(1e-12)
    moments = collective.all_reduce(torch.cat([e.sum(0), e.pow(2).sum().reshape(1), e.new_tensor([e.shape[0]])]))
    total, square, n = moments[:-2], moments[-2], moments[-1]
    denom = square - total.pow(2).sum() / n
    return collective.world_size * (e - e_hat).pow(2).sum() / denom.clamp_min(1e-12)


def auxk_loss(
    pre: torch.Tensor, residual: torch.Tensor, W_dec: torch.Tensor, candidates: torch.Tensor, k_aux: int
) -> torch.Tensor:
    """Gao et al.'s auxiliary loss over the ``candidates`` latents (dead ones for AuxK), in plain autograd.

    The top ``k_aux`` candidate pre-activations (ReLU'd) reconstruct the detached
    residual e = x − x̂ through the decoder, with no bias: ‖e − ê‖² / ‖e − ē‖², ē the
    batch mean of e. This is the OpenAI normalisation (Gao et al.'s ``normalized_mse`` of
    the auxiliary reconstruction against the residual error; also ``dictionary_learning``'s
    TopK trainer), and the lab's only one: no SAELens-style ``min(n/k_aux, 1)`` factor
    (SAELens uses an unnormalised MSE scaled that way; mixing the two was a bug). With
    fewer than ``k_aux`` candidates all n of them are used. Zero when no latent is a
    candidate. This is the reference; SAEs compute the same loss through ``EncoderPass``
    (sparse in backward), and every AuxK-like loss (AuxK, feature choice's aux_zipf)
    goes through it.
    """
    n = int(candidates.sum())
    if n == 0:
        return pre.new_zeros(())
    k = min(k_aux, n)
    masked = pre.relu().masked_fill(~candidates, -math.inf)
    values, indices = masked.topk(k, dim=-1, sorted=False)
    e_hat = Selection.from_topk(values.clamp_min(0), indices).decode(W_dec)
    return normalized_error(residual, e_hat)


#: on the sparse path, AuxK uses block GEMMs once it chooses at least 1/BLOCK_SHARE of its candidates
BLOCK_SHARE = 8
#: AuxK's column block is widened to a multiple of this: BLAS GEMMs with an odd inner or
#: outer width run far below peak (819 dead latents: 1.5x slower than 832 on one CPU core)
GEMM_WIDTH = 64


def gemm_padding(candidates: torch.Tensor, n: int) -> torch.Tensor:
    """Non-candidate columns that widen a block of ``n ≥ GEMM_WIDTH`` candidate columns to a
    multiple of ``GEMM_WIDTH`` (fewer when the SAE has too few; none for narrower blocks,
    which gain nothing). They are never chosen, so they add exact zeros: the same codes,
    reconstruction and gradients, from faster GEMMs."""
    extra = min(-n % GEMM_WIDTH, candidates.numel() - n) if n >= GEMM_WIDTH else 0
    if extra == 0:
        return candidates.new_zeros(0, dtype=torch.long)
    return (~candidates).nonzero().squeeze(1)[:extra]


def auxk_choice(block: torch.Tensor, k: int, eligible: int) -> tuple[torch.Tensor, int]:
    """AuxK's entries that can be non-zero, and how many: each row's top ``k`` among the first
    ``eligible`` columns of ``block`` (the rest are GEMM padding), kept where above 0.

    Exact: ReLU(v) and its gradient are both 0 at v ≤ 0, so a chosen entry ≤ 0 adds nothing
    to ê or to any gradient, and a row with at most k positive entries keeps all of them
    (they are its largest). In a trained SAE the dead latents' pre-activations are almost
    all negative (0.03-0.06% of AuxK's top-k_aux above 0 on the organism's transcoders), so
    the entries fall from batch · k_aux to a few dozen and the ranking runs only on rows
    with more than k positive entries. A NaN pre-activation is not kept (``topk`` would
    choose it and make this loss NaN; the main loss still does).
    """
    positive = above_zero(block)
    if eligible < block.shape[1]:
        positive[:, eligible:] = False
    counts = positive.sum(1, dtype=torch.int32)  # count_nonzero(dim) would first copy to int64
    over = counts > k
    n_over = int(torch.count_nonzero(over))
    if n_over == 0:
        return positive, int(counts.sum())
    if 2 * n_over > block.shape[0]:  # most rows: rank the whole block
        chosen = row_topk_mask(block, k, eligible=eligible) & positive
    else:
        rows = over.nonzero().squeeze(1)
        ranked = row_topk_mask(block.index_select(0, rows), k, eligible=eligible)
        chosen = positive.index_copy_(0, rows, ranked & positive.index_select(0, rows))
    return chosen, int(torch.count_nonzero(chosen))


#: threshold rules (JumpReLU, Gated) train through per-entry kernels while their entries fill
#: at most this share of batch·d_sae, and through dense GEMMs above it (``threshold_selection``).
#: Measured crossover on one CPU thread (d_in 768, d_sae 8192, batch 4096): about 7% of the
#: entries for JumpReLU and 6% for Gated (two decodes per entry); see those modules' docstrings
THRESHOLD_SHARE = 0.06


def threshold_selection(mask: torch.Tensor, pre: torch.Tensor) -> Selection | None:
    """The entries of a ``[B, d_sae]`` mask, row-sorted, with values from ``pre`` (no graph);
    None when they exceed ``THRESHOLD_SHARE`` of the batch, where dense GEMMs are cheaper
    (early in training about half the latents of a threshold rule fire). Counting first keeps
    the fallback from building a selection it will not use; ``count_nonzero`` counts a bool
    mask 20x faster than ``sum``, which first converts it to int64 (a tenth of the step)."""
    with torch.no_grad():
        if int(torch.count_nonzero(mask)) > THRESHOLD_SHARE * mask.numel():
            return None
        flat = mask.reshape(-1).nonzero().squeeze(1)
        d_sae = mask.shape[1]
        rows, latents = flat.div(d_sae, rounding_mode="floor"), flat.remainder(d_sae)
        return Selection(rows, latents, pre.reshape(-1).index_select(0, flat), mask.shape[0])


@dataclass
class EncoderPass:
    """One training pass of the encoder, and how chosen values get their gradients.

    ``pre`` is ``sae_in @ W_enc + b_enc`` with ``sae_in = x − shift`` (shift = b_dec when
    the SAE centres its input, else None). On the sparse path ``pre`` carries no graph and
    ``attach``/``block`` differentiate through the chosen entries only (``sae.kernels``);
    on the dense path ``pre`` carries the graph and values are gathered from it (plain
    autograd, the reference). Selection rules read ``pre`` to choose; what they choose
    gets its values here.
    """

    x: torch.Tensor
    shift: torch.Tensor | None
    sae_in: torch.Tensor
    pre: torch.Tensor
    W_enc: torch.Tensor
    b_enc: torch.Tensor | None
    sparse: bool
    #: the first sparse attach's values and the stash its backward empties (``sae.kernels.GradStash``)
    _main: tuple[torch.Tensor, GradStash] | None = field(default=None, repr=False)

    def attach(self, selection: Selection) -> Selection:
        """The selection with values that carry gradients (the first one also gathers the
        encoder gradient of any later ``block`` of this pass)."""
        # one flat gather: 5x cheaper than the two-tensor advanced index on CPU
        d_sae = self.pre.shape[1]
        chosen = self.pre.reshape(-1).index_select(0, selection.rows * d_sae + selection.latents)
        if not self.sparse:
            return selection.with_values(chosen.relu())
        layout = selection.layout(self.W_enc.shape[1])
        stash = GradStash() if self._main is None else None
        values = sparse_encode(
            self.x,
            self.shift,
            self.W_enc,
            self.b_enc,
            self.sae_in,
            chosen,
            selection.rows,
            selection.latents,
            layout,
            stash,
        )
        attached = selection.with_values(values)
        if stash is not None and values.requires_grad:
            self._main = (values, stash)
            attached.stash = stash
        return attached

    def entries(self, selection: Selection) -> torch.Tensor:
        """Raw (not ReLU'd) pre-activations of the selection's entries (values read from ``pre``),
        sparse in backward: what threshold rules apply their own functions to. A pass with
        ``b_enc`` None (Gated's shared projection) leaves the bias to the caller, per entry."""
        layout = selection.layout(self.W_enc.shape[1])
        return sparse_encode(
            self.x, self.shift, self.W_enc, self.b_enc, self.sae_in, selection.values, selection.rows,
            selection.latents, layout, relu=False,
        )  # fmt: skip

    def densified(self) -> EncoderPass:
        """This sparse pass as a dense one (the threshold rules' fallback): ``pre`` gets dense
        gradients without a second GEMM (``sae.kernels.dense_encode``)."""
        pre = dense_encode(self.x, self.shift, self.W_enc, self.b_enc, self.sae_in, self.pre)
        return EncoderPass(self.x, self.shift, self.sae_in, pre, self.W_enc, self.b_enc, sparse=False)

    def block(self, columns: torch.Tensor, block_pre: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Dense ``[batch, n_columns]`` codes of the chosen entries of a column block (sparse path);
        its encoder gradient goes through the first attach's, when there was one."""
        after, stash = self._main if self._main is not None else (None, None)
        return block_encode(
            self.x, self.shift, self.W_enc, self.b_enc, self.sae_in, block_pre, columns, mask, stash, after
        )


class SparseAutoencoder(nn.Module, abc.ABC):
    """Base module. ``forward(x, g=None, dead=None)`` trains; ``encode(x)`` is the inference form.

    Training: pre-activations → ``select`` (the family's rule, giving a ``Selection``) →
    values with gradients (``EncoderPass``: fused sparse kernels, or the dense autograd
    reference) → decode → named losses. Rules only choose; they never see the difference
    between the two paths. Inference: ``inference_select`` (batch-free) → the same decoder.
    """

    config_class: type[SAEConfig] = SAEConfig
    #: the registry entry (``sae.architectures.registry.Family``), set on registration; typed
    #: loosely because the registry imports this module (the layering test forbids the loop)
    family: ClassVar[Any]
    #: mirrors ``family.needs_gradients`` (set on registration): training reads g = dL/dx
    needs_gradients: bool = False
    #: warm-up factor of the family's sparsity coefficient, if it has one (set by the trainer)
    coefficient_scale: float = 1.0
    #: the training job's processes (set by the trainer); batch-level rules and losses read the global batch
    collective: Collective = SINGLE
    #: SAELens' run-time input normalisation of a loaded SAE (``normalize_activations``):
    #: "none", "constant_norm_rescale" or "layer_norm" (see ``normalize_input``); saelab
    #: trains with its input scale folded into the weights, so its own SAEs keep "none"
    input_normalization: str = "none"

    @classmethod
    def can_transcode(cls) -> bool:
        """Whether this family's ``forward`` takes a ``target`` (every built-in family does;
        a family that overrides ``forward`` without it trains only as an SAE)."""
        import inspect

        return "target" in inspect.signature(cls.forward).parameters

    @staticmethod
    def check_config(cfg: SAEConfig) -> None:
        """What every family's module needs of its config (families with their own ``__init__`` call it too)."""
        if cfg.d_in is None:
            raise ValueError("the SAE config needs d_in (normally filled in from the hook point)")
        if cfg.skip and cfg.d_out is None:
            raise ValueError("a skip connection needs a transcoder (d_out, from the run's hook_out)")

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.check_config(cfg)
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.width_out
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_out, d_in)) if cfg.skip else None
        self.reset_parameters()

    @property
    def k_aux(self) -> int:
        """AuxK latents: half the width of what is reconstructed (Gao et al.'s d_model / 2)."""
        return self.cfg.k_aux or max(1, self.cfg.width_out // 2)

    def reset_parameters(self, decoder_norm: float = 1.0) -> None:
        """Random directions of norm ``decoder_norm`` for the decoder, W_enc = W_decᵀ, zero biases.

        A transcoder's encoder reads another space than its decoder writes, so its encoder
        columns are drawn independently (random directions of the same norm); W_skip starts
        at zero (SAELens, sparsify), so a skip transcoder starts as a plain one.
        """
        self.init_directions(decoder_norm)
        with torch.no_grad():
            self.b_enc.zero_()
            self.b_dec.zero_()

    @torch.no_grad()
    def init_directions(self, decoder_norm: float) -> None:
        """W_dec rows random of norm ``decoder_norm``; W_enc = W_decᵀ (a transcoder: its own random
        columns of that norm); W_skip zero. Shared by families whose biases differ (Gated)."""
        w = torch.randn(self.cfg.d_sae, self.cfg.width_out)
        self.W_dec.copy_(decoder_norm * w / w.norm(dim=1, keepdim=True))
        if self.cfg.transcoder:
            e = torch.randn(self.cfg.d_in, self.cfg.d_sae)
            self.W_enc.copy_(decoder_norm * e / e.norm(dim=0, keepdim=True))
        else:
            self.W_enc.copy_(self.W_dec.T)
        if self.W_skip is not None:
            self.W_skip.zero_()

    @torch.no_grad()
    def init_b_dec(self, x: torch.Tensor) -> None:
        """b_dec from the first batch of what the SAE reconstructs (a transcoder's targets)."""
        if self.cfg.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(x.float()).to(self.b_dec.dtype))
        elif self.cfg.b_dec_init == "mean":
            self.b_dec.copy_(x.mean(0))

    # -- the pieces ------------------------------------------------------------------

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def normalize_input(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """``(x', undo)``: the input as the SAE reads it, and the map taking a reconstruction
        of x' back to x's space, as SAELens' ``run_time_activation_norm_fn_in/out``.

        ``constant_norm_rescale``: x' = x·√d_in/‖x‖ per row, undone by dividing by that
        factor. ``layer_norm``: x' = (x − μ)/(σ + 1e-5) with μ, σ the row's mean and
        (Bessel-corrected, as torch.std) standard deviation, undone by y·σ + μ (the ε is not
        undone, as in SAELens). Families whose SAELens form is a transcoder (output ≠ input)
        leave their output as it is, as SAELens does.
        """
        mode = self.input_normalization
        if mode == "none":
            return x, _identity
        keep_output = self.cfg.d_out is not None  # a transcoder: its output is another hook's
        if mode == "constant_norm_rescale":
            coeff = (self.cfg.d_in**0.5) / x.norm(dim=-1, keepdim=True)
            return x * coeff, _identity if keep_output else (lambda y: y / coeff)
        if mode == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            centred = x - mu
            std = centred.std(dim=-1, keepdim=True)
            return centred / (std + 1e-5), _identity if keep_output else (lambda y: y * std + mu)
        raise ValueError(f"unknown input normalisation {mode!r}")

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations of raw inputs (the run-time normalisation, if any, applied first)."""
        return self.encoder_input(self.normalize_input(x)[0]) @ self.W_enc + self.b_enc

    def linear_encoder(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W [d_in, d_sae], b [d_sae])`` with ``pre_acts(x) = x W + b``: the pre-activation as
        one affine map of the raw input (b_dec's centring folded into b), what attributions that
        split a pre-activation over the input's parts read (direct feature attribution). Families
        with another pre-activation path (Gated's π_mag) override it. Exact for SAEs without
        run-time input normalisation (``input_normalization: none``, every SAE saelab trains)."""
        if self.cfg.apply_b_dec_to_input:
            return self.W_enc, self.b_enc - self.b_dec @ self.W_enc
        return self.W_enc, self.b_enc

    def encoder_pass(self, x: torch.Tensor, sparse: bool | None = None) -> EncoderPass:
        """Pre-activations of ``[B, d_in]`` rows for training; see ``EncoderPass``.

        ``sparse`` defaults to the config's kernel; dense rules (ReLU, the vSAE's KL) ask
        for a dense pass whatever the config says.
        """
        sparse = self.cfg.kernel == "sparse" if sparse is None else sparse
        shift = self.b_dec if self.cfg.apply_b_dec_to_input else None
        with torch.set_grad_enabled(torch.is_grad_enabled() and not sparse):
            sae_in = x - shift if shift is not None else x
            pre = torch.addmm(self.b_enc, sae_in, self.W_enc)
        return EncoderPass(x, shift, sae_in, pre, self.W_enc, self.b_enc, sparse)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Dense codes ``[..., d_sae]`` → reconstruction."""
        return codes @ self.W_dec + self.b_dec

    def decode_selection(self, selection: Selection) -> torch.Tensor:
        return selection.decode(self.W_dec) + self.b_dec

    def skip_output(self, x: torch.Tensor) -> torch.Tensor | None:
        """A skip transcoder's linear term x W_skipᵀ (None without a skip connection)."""
        return None if self.W_skip is None else x @ self.W_skip.T

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
        """Inference codes and reconstruction of ``[B, d_in]`` rows: a transcoder's prediction
        of its output (the skip term included), or back in x's space when the SAE normalises
        its input at run time (``decode`` alone cannot undo that)."""
        selection = self.encode_selection(x)
        out = self.decode_selection(selection)
        if self.input_normalization != "none":
            out = self.normalize_input(x)[1](out)
        return selection, self.with_skip(x, out)

    def with_skip(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        skip = self.skip_output(x)
        return out if skip is None else out + skip

    def decode_training(self, selection: Selection, sparse: bool, bias: bool = True) -> torch.Tensor:
        """The training decoder: ``embedding_bag`` on the sparse path, dense codes @ W_dec on the dense one."""
        out = selection.decode(self.W_dec) if sparse else selection.dense(self.cfg.d_sae) @ self.W_dec
        return out + self.b_dec if bias else out

    def aux_loss(self, enc: EncoderPass, residual: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``auxk_loss`` over ``candidates``, computed through ``enc``.

        The top ``k_aux`` pre-activations are found among the candidate columns only, and
        only those above 0 are kept (``auxk_choice``: the rest add exact zeros). On the sparse
        path the kept entries go through the per-entry kernels when they are few, and
        through GEMMs over the candidate block when they fill a large share of it (an
        untrained SAE's dead latents, half of whose pre-activations are positive); both are
        exact.
        """
        n = int(candidates.sum())
        if n == 0:
            return enc.pre.new_zeros(()).detach()
        k = min(self.k_aux, n)
        with torch.no_grad():
            columns = candidates.nonzero().squeeze(1)
            if enc.sparse:  # padding columns are never chosen: codes, outputs and gradients there are 0
                columns = torch.cat([columns, gemm_padding(candidates, n)])
            block = enc.pre.detach().index_select(1, columns)  # one gather, the padding included
            chosen, nnz = auxk_choice(block, k, n)
        if nnz == 0:  # every chosen code is 0: ê = 0, no gradient
            e_hat = residual.new_zeros(residual.shape)
        elif enc.sparse and nnz * BLOCK_SHARE >= block.shape[0] * n:
            codes = enc.block(columns, block, chosen)
            e_hat = block_decode(codes, self.W_dec, columns, enc._main[1] if enc._main is not None else None)
        else:
            rows, local = mask_entries(chosen)  # row-major: sorted by row
            kept = enc.attach(Selection(rows, columns[local], block[rows, local], block.shape[0]))
            e_hat = self.decode_training(kept, enc.sparse, bias=False)
        return normalized_error(residual, e_hat, self.collective)

    # -- the reconstruction losses: the one path every family's forward goes through ----------

    @staticmethod
    def goal(x: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """What the output reconstructs: ``target`` for a transcoder (its output rows, minus the
        skip term for a skip transcoder: ``training_pass``), else the input ``x``."""
        return x if target is None else target

    @staticmethod
    def mse(goal: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """‖goal − x̂‖² summed over dimensions, mean over rows: every family's reconstruction error."""
        return (x_hat - goal).pow(2).sum(-1).mean()

    def aux_losses(
        self, residual: torch.Tensor, enc: EncoderPass, dead: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The dead-latent auxiliary loss on ``residual`` = goal − x̂ (AuxK; none when its
        coefficient is 0 or no dead mask is given). Families with another candidate set override it."""
        if self.cfg.aux_coefficient > 0 and dead is not None:
            return {"aux_k": self.cfg.aux_coefficient * self.aux_loss(enc, residual, dead)}
        return {}

    def losses(
        self, goal: torch.Tensor, x_hat: torch.Tensor, enc: EncoderPass, dead: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """MSE towards ``goal`` (``self.goal(x, target)``) plus the auxiliary loss on its residual.

        Every family's ``forward`` builds its losses here (families with several reconstructions,
        Matryoshka's prefixes and Gated's auxiliary one, from ``mse`` and ``aux_losses``), so an
        SAE and a transcoder of any family differ only in ``goal``.
        """
        return {"mse": self.mse(goal, x_hat), **self.aux_losses(goal - x_hat, enc, dead)}

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """One training pass. ``target``: what the output reconstructs (None: ``x``, an SAE).

        Families that override ``forward`` take the same ``target`` and build their losses
        towards ``self.goal(x, target)`` (``losses``, or ``mse``/``aux_losses``); the trainer
        calls ``training_pass`` (below), which adds a skip
        transcoder's linear term around this pass.
        """
        enc, selection = self.training_selection(x, g)
        x_hat = self.decode_training(selection, enc.sparse)
        return Output(x_hat, self.losses(self.goal(x, target), x_hat, enc, dead), self.cfg.d_sae, selection=selection)

    def training_selection(self, x: torch.Tensor, g: torch.Tensor | None = None) -> tuple[EncoderPass, Selection]:
        """The encoder pass and the rule's selection with values that carry gradients; the
        rule's running statistics (``observe``) see the choice. Every selection family's
        ``forward`` starts here and differs only in how it decodes and scores."""
        enc = self.encoder_pass(x)
        chosen = self.select(enc.pre, g)
        if self.training:
            self.observe(enc.pre.detach(), chosen)
        return enc, enc.attach(chosen)

    def training_pass(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """The trainer's entry point: ``forward`` for an SAE; for a transcoder, ``forward``
        towards ``target``, minus the skip term when there is one.

        A skip transcoder's loss is ‖y − (ŷ_sparse + x W_skipᵀ)‖² = ‖(y − x W_skipᵀ) − ŷ_sparse‖²,
        so the family's pass reconstructs y − x W_skipᵀ (which carries W_skip's gradient,
        also through the MSE and the AuxK residual, which is y − ŷ either way), and the
        returned ``x_hat`` is the whole prediction. This keeps the skip out of every
        family's code: any selection rule trains as a (skip) transcoder.
        """
        if target is None:
            if self.cfg.transcoder:
                raise ValueError("a transcoder trains towards a target (the output hook's rows)")
            return self(x, g=g, dead=dead)
        skip = self.skip_output(x)
        out = self(x, g=g, dead=dead, target=target if skip is None else target - skip)
        if skip is not None:
            out.x_hat = out.x_hat + skip.detach()
        return out

    def observe(self, pre: torch.Tensor, selection: Selection) -> None:
        """Hook for families that keep running statistics (thresholds, densities)."""

    # -- decoder geometry ------------------------------------------------------------

    @torch.no_grad()
    def remove_parallel_gradient(self) -> None:
        """Project out the gradient component along each decoder row (keeps the norm fixed).

        G −= (G·w) w with w = W/‖W‖, computed as G −= ((G·W)/‖W‖²) W: three passes over the
        weights and no ``[d_sae, d]`` temporaries (the unit-row form took six and three)."""
        if self.cfg.unit_norm_decoder and self.W_dec.grad is not None:
            W, G = self.W_dec, self.W_dec.grad
            square = torch.linalg.vector_norm(W, dim=1).clamp_min(1e-12).square_()
            G.addcmul_(W, torch.linalg.vecdot(G, W).div_(square)[:, None], value=-1)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        if self.cfg.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    # -- saving ----------------------------------------------------------------------

    def inference_state(self) -> dict[str, torch.Tensor]:
        """Tensors of the saved inference form (SAELens names; a skip transcoder's ``W_skip``)."""
        out = {"W_enc": self.W_enc.data, "b_enc": self.b_enc.data, "W_dec": self.W_dec.data, "b_dec": self.b_dec.data}
        if self.W_skip is not None:
            out["W_skip"] = self.W_skip.data
        return out

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

    @torch.no_grad()
    def fold_output_scale(self, ratio: float) -> None:
        """Rewrite the weights so the output comes out divided by ``ratio``.

        A transcoder trained on x·s_in → y·s_out is folded with ``fold_input_scale(s_in)``
        (W_skip unchanged: (x·s)W_skipᵀ predicts y·s) and then ``fold_output_scale(s_out / s_in)``.
        """
        self.W_dec.div_(ratio)
        self.b_dec.div_(ratio)
        if self.W_skip is not None:
            self.W_skip.div_(ratio)
