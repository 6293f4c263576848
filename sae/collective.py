"""How the processes of one training job combine tensors: the only view of distribution the
trainer, the stores and the SAE families get.

``SINGLE`` is the one-process job (every operation is the identity). ``sae.distributed``
provides the ``torch.distributed`` implementation, whose operations all carry a timeout.
Every process must call the same operations in the same order with tensors of the same
shape, as ``torch.distributed`` requires.
"""

from __future__ import annotations

import torch


class Collective:
    """A single process; subclasses reach other ranks."""

    rank: int = 0
    world_size: int = 1

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """``tensor`` combined over ranks with ``op`` ("sum", "max" or "min"); a new tensor."""
        return tensor.clone()

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` concatenated along dim 0, in rank order."""
        return tensor.clone()

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """``src``'s ``tensor`` on every rank."""
        return tensor.clone()

    def barrier(self) -> None:
        """Wait until every rank arrives."""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Collective()
