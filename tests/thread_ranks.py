"""N ranks as N threads of one process: a ``Collective`` for fast multi-rank tests.

The code under test is the code real jobs run; only the transport differs from
``sae.distributed.TorchCollective`` (shared slots and a barrier instead of gloo). Each rank
must call the same operations in the same order, exactly as under ``torch.distributed``,
and a rank that does not is caught by the barrier's timeout instead of hanging the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

from sae.collective import Collective


class _Hub:
    def __init__(self, world_size: int, timeout: float):
        self.slots: list = [None] * world_size
        self.barrier = threading.Barrier(world_size, timeout=timeout)


class ThreadCollective(Collective):
    def __init__(self, hub: _Hub, rank: int):
        self.hub, self.rank, self.world_size = hub, rank, len(hub.slots)

    def _exchange(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        self.hub.barrier.wait()
        self.hub.slots[self.rank] = tensor.detach().clone()
        self.hub.barrier.wait()
        parts = list(self.hub.slots)
        self.hub.barrier.wait()
        return parts

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        stacked = torch.stack(self._exchange(tensor))
        return {"sum": stacked.sum(0), "max": stacked.max(0).values, "min": stacked.min(0).values}[op].to(tensor.dtype)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat(self._exchange(tensor))

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        return self._exchange(tensor)[src].clone()

    def barrier(self) -> None:
        self.hub.barrier.wait()


def run_ranks(world_size: int, fn: Callable[[Collective], object], timeout: float = 60.0) -> list:
    """``fn(collective)`` on ``world_size`` thread-ranks at once; their results in rank order."""
    hub = _Hub(world_size, timeout)
    results: list = [None] * world_size
    errors: list = []

    def body(rank: int) -> None:
        try:
            results[rank] = fn(ThreadCollective(hub, rank))
        except BaseException as e:
            errors.append(e)
            hub.barrier.abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results
