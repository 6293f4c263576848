"""Dictionaries at one location: supervised (mean-feature, MSE) and SAEs, behind one interface.

Every dictionary gives codes ``f`` (``[n, m]``), a decoder ``D`` (``[m, d]``) and a bias
``b``, and reconstructs â = b + f D. For an SAE, ``f`` are its inference codes, ``D`` its
decoder rows, ``b`` its ``b_dec``. For a supervised dictionary (Makelov et al. §4.1) the
features are the attribute values (one per IO name, per S name, per Pos value), ``f``
is the prompt's one-hot attribute code and ``b`` = ā:

- *mean-feature*: u_{i=v} = E[a | a_i = v] − ā, so â = ā + u_IO + u_S + u_Pos. It is exact
  for additive activations when the attributes are balanced; when they are correlated
  (IO ≠ S makes them so) the conditional means mix attributes;
- *MSE*: the u minimise Σ‖a − ā − Σ_i u_{a_i}‖², i.e. least squares of the centred
  activations on the one-hot codes, exact for any additive activations. The one-hot
  groups each sum to one, so the u are not unique; the minimum-norm solution is taken
  (reconstructions and edits a − u_v + u_v′ do not depend on the choice). As in the
  paper's ``train_mse_codes(manual_bias=True)``, the bias is ā.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from evals.supervised.locations import Location
from evals.supervised.prompts import ATTRIBUTES, AttributeVocab, PromptSpec
from sae.errors import SaelabError


@dataclass
class SupervisedDictionary:
    method: str  # "mean" | "mse"
    vocab: AttributeVocab
    bias: torch.Tensor  # [d] ā
    decoder: torch.Tensor  # [F, d] u vectors (zero where unobserved)
    observed: torch.Tensor  # [F] bool: the value occurred in the fitting prompts

    @property
    def labels(self) -> list[str]:
        return self.vocab.labels()

    def codes(self, acts: torch.Tensor, specs: Sequence[PromptSpec]) -> torch.Tensor:
        idx = self.vocab.indices(specs)
        unseen = ~self.observed[idx]
        if unseen.any():
            row, col = unseen.nonzero()[0].tolist()
            raise SaelabError(
                f"no supervised feature for {ATTRIBUTES[col]}={specs[row].value(ATTRIBUTES[col])!r}: "
                "that value never occurs in the fitting prompts (raise prompts.n_fit)"
            )
        return self.vocab.one_hot(specs)

    def reconstruct(self, acts: torch.Tensor, specs: Sequence[PromptSpec]) -> torch.Tensor:
        return self.bias + self.codes(acts, specs) @ self.decoder

    def edit(
        self, acts: torch.Tensor, base: Sequence[PromptSpec], target: Sequence[PromptSpec], attribute: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """a − u_v + u_v′ for ``attribute``; also the ``[n, F]`` mask of the removed features."""
        self.codes(acts, target)  # checks the new values have features
        col = ATTRIBUTES.index(attribute)
        old = self.vocab.indices(base)[:, col]
        new = self.vocab.indices(target)[:, col]
        removed = torch.zeros(len(base), self.vocab.n_features, dtype=torch.bool)
        removed[torch.arange(len(base)), old] = True
        return acts - self.decoder[old] + self.decoder[new], removed


def fit_mean(acts: torch.Tensor, specs: Sequence[PromptSpec], vocab: AttributeVocab) -> SupervisedDictionary:
    acts = acts.float()
    mean = acts.mean(0)
    onehot = vocab.one_hot(specs)
    counts = onehot.sum(0)
    u = (onehot.T @ (acts - mean)) / counts.clamp_min(1)[:, None]
    return SupervisedDictionary("mean", vocab, mean, u, counts > 0)


def fit_mse(acts: torch.Tensor, specs: Sequence[PromptSpec], vocab: AttributeVocab) -> SupervisedDictionary:
    acts = acts.double()
    mean = acts.mean(0)
    onehot = vocab.one_hot(specs).double()
    counts = onehot.sum(0)
    u = torch.linalg.lstsq(onehot, acts - mean, driver="gelsd").solution
    return SupervisedDictionary("mse", vocab, mean.float(), u.float(), counts > 0)


FITTERS = {"mean": fit_mean, "mse": fit_mse}


@dataclass
class SAEDictionary:
    """An SAE at one location (weights already take raw activations)."""

    sae: object
    labels: list[str] | None = None

    @property
    def bias(self) -> torch.Tensor:
        return self.sae.b_dec.detach()

    @property
    def decoder(self) -> torch.Tensor:
        return self.sae.W_dec.detach()

    @torch.no_grad()
    def codes(self, acts: torch.Tensor, specs: Sequence[PromptSpec] | None = None) -> torch.Tensor:
        return self.sae.encode(acts.to(self.sae.W_enc.device, self.sae.W_enc.dtype)).float().cpu()

    @torch.no_grad()
    def reconstruct(self, acts: torch.Tensor, specs: Sequence[PromptSpec] | None = None) -> torch.Tensor:
        return self.bias.cpu() + self.codes(acts) @ self.decoder.cpu()


@dataclass
class Family:
    """One dictionary per location, evaluated together.

    ``key`` names it in results (``supervised_mean``, ``supervised_mse``, ``topk_task``,
    ``relu_full``, ``random_decoder_task``, ...); ``kind`` is ``supervised``, ``task``,
    ``full`` or ``random_decoder``.
    """

    key: str
    label: str
    kind: str
    architecture: str | None
    dictionaries: dict[Location, object]
    info: dict = field(default_factory=dict)

    @property
    def supervised(self) -> bool:
        return self.kind == "supervised"

    def covers(self, locations: Sequence[Location]) -> bool:
        return all(loc in self.dictionaries for loc in locations)

    def describe(self) -> dict:
        return {
            "key": self.key,
            "label": self.label,
            "kind": self.kind,
            "architecture": self.architecture,
            "locations": sorted(loc.key for loc in self.dictionaries),
            **self.info,
        }


def supervised_families(
    fit_acts: dict[Location, torch.Tensor], specs: Sequence[PromptSpec], vocab: AttributeVocab
) -> list[Family]:
    labels = {"mean": "mean-feature (supervised)", "mse": "MSE (supervised)"}
    return [
        Family(
            f"supervised_{m}",
            labels[m],
            "supervised",
            None,
            {loc: fit(acts, specs, vocab) for loc, acts in fit_acts.items()},
            {"method": m, "features": vocab.n_features},
        )
        for m, fit in FITTERS.items()
    ]
