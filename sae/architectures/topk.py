"""TopK SAE (Gao et al., 2024) with the AuxK dead-latent loss.

Each token keeps its k largest pre-activations (ReLU'd). AuxK: the top k_aux = d_in/2
pre-activations among dead latents (no firing for a window of tokens, tracked by the
trainer) reconstruct the residual, weight 1/32, normalised by the residual's variance
(OpenAI's normalisation, the lab's only one: ``base.auxk_loss``).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from sae.architectures.base import KConfig, Selection, SparseAutoencoder
from sae.architectures.registry import Family, register
from sae.row_topk import row_topk_indices


class TopKConfig(KConfig):
    """TopK SAE: each token keeps its k largest pre-activations."""

    architecture: Literal["topk"] = Field("topk", description="Family name, the registry key in cfg.json.")


def topk_selection(scores: torch.Tensor, values_from: torch.Tensor, k: int) -> Selection:
    """Rows keep the k latents with the largest ``scores``; their values come from
    ``values_from`` (ReLU'd). Separating the two lets g-SAEs select by an augmented score.
    The choice is ``sae.row_topk`` (exact, faster than ``torch.topk`` on CPU); values are
    gathered, so on the dense path they carry the graph as ``topk``'s would."""
    indices = row_topk_indices(scores.detach(), k)
    return Selection.from_topk(values_from.gather(-1, indices).relu(), indices)


class TopKSAE(SparseAutoencoder):
    config_class = TopKConfig

    def select(self, pre: torch.Tensor, g: torch.Tensor | None = None) -> Selection:
        return topk_selection(pre, pre, self.cfg.k)

    def inference_config(self) -> dict:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}


register(Family("topk", TopKSAE, saelens_architecture="topk"))
