"""Matryoshka BatchTopK SAE (Bussmann, Nabeshima, Karvonen & Nanda 2025, arXiv 2503.17547).

Latents are ordered and every nested prefix of the dictionary must reconstruct the input
alone, which pushes general features to the front and reduces feature absorption. Codes f
are computed once, by BatchTopK over the whole dictionary (the ``mutual_choice`` rule: the
batch's k·B largest activations); prefix m reconstructs x̂_m = f[:, :m]W_dec[:m] + b_dec, for
each m in ``prefixes`` (strictly increasing, the last = d_sae), and the loss is
Σ_g w_g‖x − x̂_{m_g}‖² (each MSE summed over dimensions, mean over rows) plus AuxK on the
full reconstruction's residual (the lab's normalised AuxK, as for BatchTopK). As for
BatchTopK, inference uses one global threshold θ, an EMA of the smallest selected
activation, and the saved form is a JumpReLU (SAELens saves ``matryoshka_batchtopk`` the
same way).

The prefix-loss weighting differs between implementations (``methods-2.md`` §C, §J), and is
the field ``prefix_weighting``:

- ``sum`` (default): w_g = 1, the paper's formula and SAELens' (full MSE + Σ inner MSEs);
- ``mean``: w_g = 1/G, the mean over prefixes (noanabeshima's weighting, on fixed prefixes);
- ``dictionary_learning``: w_g = 1/G² (its mean over groups of MSE/G);
- ``bussmann``: the paper's code, the mean over G + 1 terms, the G prefixes and the
  b_dec-only reconstruction (its element-mean MSE is a further constant 1/d_in, not applied).

As a transcoder (``base``) every prefix predicts the target: x̂_m above is ŷ_m, each MSE is
‖y − ŷ_m‖² (the paper has no Matryoshka transcoder; this is the natural extension).

Adam is blind to a constant factor on the whole loss, so these differ through the weight of
AuxK relative to the reconstruction and through gradient clipping (``bussmann`` also adds
the b_dec-only term). Prefixes default to the paper code's groups d/16, d/16, d/8, d/4,
d/2, i.e. cumulative widths d/16, d/8, d/4, d/2, d.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from sae.architectures.base import EncoderPass, Output
from sae.architectures.mutual_choice import MutualChoiceConfig, MutualChoiceSAE
from sae.architectures.registry import Family, register


class MatryoshkaConfig(MutualChoiceConfig):
    """Matryoshka BatchTopK: BatchTopK codes, every nested prefix of latents reconstructs x."""

    architecture: Literal["matryoshka_batchtopk"] = Field(
        "matryoshka_batchtopk", description="Family name, the registry key in cfg.json."
    )
    prefixes: tuple[int, ...] | None = Field(
        None,
        description="Nested dictionary widths, strictly increasing and ending at d_sae "
        "(None: d/16, d/8, d/4, d/2, d, the paper code's groups).",
    )
    prefix_weighting: Literal["sum", "mean", "dictionary_learning", "bussmann"] = Field(
        "sum",
        description="Weight of each prefix's MSE: sum (1, the paper and SAELens), mean (1/G), "
        "dictionary_learning (1/G²), bussmann (mean over G + 1 terms incl. b_dec alone, the paper's code).",
    )

    @model_validator(mode="after")
    def _prefixes_nest(self) -> MatryoshkaConfig:
        p = self.prefixes
        if p is None:
            return self
        if not p or p[0] <= 0 or any(b <= a for a, b in itertools.pairwise(p)) or p[-1] != self.d_sae:
            raise PydanticCustomError(
                "bad_prefixes",
                "prefixes {prefixes} must be positive, strictly increasing and end at d_sae ({d_sae})",
                {"prefixes": list(p), "d_sae": self.d_sae},
            )
        return self

    def widths(self) -> tuple[int, ...]:
        """The prefixes, or the default halving ladder."""
        if self.prefixes is not None:
            return self.prefixes
        d = self.d_sae
        return (*tuple(sorted({max(1, d // 2**i) for i in range(4, 0, -1)} - {d})), d)


class MatryoshkaSAE(MutualChoiceSAE):
    config_class = MatryoshkaConfig

    def __init__(self, cfg: MatryoshkaConfig):
        super().__init__(cfg)
        self.widths = cfg.widths()

    def prefix_weights(self) -> list[float]:
        g = len(self.widths)
        w = self.cfg.prefix_weighting
        if w == "sum":
            return [1.0] * g
        if w == "mean":
            return [1.0 / g] * g
        if w == "dictionary_learning":
            return [1.0 / g**2] * g
        return [1.0 / (g + 1)] * g  # bussmann: the b_dec-only term gets the same weight

    def prefix_reconstructions(self, selection, sparse: bool) -> list[torch.Tensor]:
        """x̂_m for every prefix m, built group by group: x̂_{m_g} = x̂_{m_{g−1}} + group g's part."""
        group = torch.bucketize(
            selection.latents, torch.tensor(self.widths, device=selection.latents.device), right=True
        )
        out, partial = [], self.b_dec.expand(selection.n_rows, -1)
        for g in range(len(self.widths)):
            keep = group == g
            part = type(selection)(
                selection.rows[keep], selection.latents[keep], selection.values[keep], selection.n_rows
            )
            partial = partial + self.decode_training(part, sparse, bias=False)
            out.append(partial)
        return out

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> Output:
        """One training pass; as a transcoder every prefix predicts the target (``self.goal``)."""
        enc, selection = self.training_selection(x, g)
        recons = self.prefix_reconstructions(selection, enc.sparse)
        x_hat = recons[-1]
        losses = self.matryoshka_losses(self.goal(x, target), recons, enc, dead)
        return Output(x_hat, losses, self.cfg.d_sae, selection=selection)

    def matryoshka_losses(
        self, goal: torch.Tensor, recons: list[torch.Tensor], enc: EncoderPass, dead: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Σ_g w_g·mse(goal, x̂_{m_g}) (``prefix_weighting``) plus the auxiliary loss on the full residual."""
        weights = self.prefix_weights()
        mses = [self.mse(goal, r) for r in recons]
        out = {"mse": sum(w * m for w, m in zip(weights, mses, strict=True))}
        if self.cfg.prefix_weighting == "bussmann":
            out["mse"] = out["mse"] + weights[0] * self.mse(goal, self.b_dec)
        out.update(self.aux_losses(goal - recons[-1], enc, dead))
        return out

    @torch.no_grad()
    def encode_prefixes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inference reconstructions of ``[B, d_in]`` rows by each prefix (the batch-free rule);
        a transcoder's predictions of its output (with the skip term of a skip transcoder)."""
        codes = self.encode(x)
        return [self.with_skip(x, codes[:, :m] @ self.W_dec[:m] + self.b_dec) for m in self.widths]


register(Family("matryoshka_batchtopk", MatryoshkaSAE, saelens_architecture="jumprelu", inference_form="jumprelu"))
