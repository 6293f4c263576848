"""The activation store: shuffled ``[batch, d_in]`` rows for SAE training.

Contract (what trainers consume; keep it stable):

- ``StoreConfig``: model, hooks, text source, context size, token budget ``n_tokens``,
  LM batch size, dtype, device, seed, mixing-buffer size ``buffer_rows``, ``cache_dir``
  (None = streaming), ``with_grads``. The seed drives a model provider's text stream as well
  as the shuffling, so another seed is held-out data there; a file or hub source is read in
  its own order whatever the seed (hold out data there with another file or split).
- ``open_store(cfg, model=None, tokenizer=None, progress=True)``: an ``ActivationStore``.
  Pass an already loaded model to avoid loading it again; with ``cache_dir`` the cache is
  built first (or finished, if a killed job left it half done).
- ``store.batches(batch_size, skip_rows=0)``: an iterator of ``ActivationBatch``.
  ``acts[hook]`` is ``[batch, d_in]`` and row i of every hook is the same token;
  ``grads[hook]`` holds g = ∂L/∂x for those rows when ``with_grads`` (else ``grads`` is
  None). It ends when the token budget is spent; the last batch may be short. The order is
  a pure function of the config, so ``skip_rows=n`` (rows already consumed, e.g. by a
  checkpointed trainer) continues exactly where a run stopped.
- ``store.d_in(hook)``, ``store.norm_stats(hook)`` (mean L2 norm of a row, for scaling
  to √d_in), ``store.count_rows()`` (rows a full pass yields), ``store.hooks``,
  ``store.with_grads``.

Rows are the dtype of the config. Streaming batches live on the model's device; cached
batches are read into CPU memory (move them where the SAE lives).

Streaming mode harvests on the fly into a mixing buffer (``mix``): rows enter free slots
of a fixed-size buffer, and each time it is full a random half leaves in random order, so
consecutive rows come from different sequences. Cached mode (``sae.cache``) writes
pre-shuffled shards once and reads them memory-mapped.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from sae.cache import CachedStore, write_cache
from sae.collective import SINGLE, Collective
from sae.store_base import (
    ActivationBatch,
    ActivationStore,
    Block,
    DataConfig,
    StoreConfig,
    batched,
    block_len,
    check_model_fits,
    concat,
    cut,
    load_for,
    mix,
    take,
    token_batches,
)

__all__ = [
    "ActivationBatch",
    "ActivationStore",
    "Block",
    "DataConfig",
    "StoreConfig",
    "StreamingStore",
    "batched",
    "block_len",
    "check_model_fits",
    "concat",
    "cut",
    "load_for",
    "mix",
    "open_store",
    "take",
    "token_batches",
]


def open_store(
    cfg: StoreConfig, model=None, tokenizer=None, progress: bool = True, collective: Collective = SINGLE
) -> ActivationStore:
    """A streaming store (each rank harvests its own share of the token batches) or a
    cached one (built first, its shards dealt out over the ranks, if not complete).

    Pass an already loaded model to avoid loading it again.
    """
    if cfg.cache_dir is None:
        return StreamingStore(cfg, model, tokenizer, progress=progress, collective=collective)
    write_cache(cfg, model, tokenizer, progress=progress, collective=collective)  # only checks when complete
    return CachedStore(cfg.cache_dir)


class StreamingStore(ActivationStore):
    """Harvests on the fly into a mixing buffer; nothing touches the disk.

    Over several ranks, rank r harvests token batches r, r + N, r + 2N, ... into its own
    mixing buffer; ``count_rows`` and ``batches`` are then this rank's, and the norm
    statistics are averaged over ranks (so every rank scales its inputs alike).
    """

    def __init__(
        self,
        cfg: StoreConfig,
        model=None,
        tokenizer=None,
        progress: bool = True,
        norm_batches: int = 4,
        collective: Collective = SINGLE,
    ):
        from sae.harvest import Harvester

        self.cfg = cfg
        self.collective = collective
        self.model, self.tokenizer = load_for(cfg, model, tokenizer)
        self.harvester = Harvester(
            self.model,
            self.tokenizer,
            cfg.hooks,
            with_grads=cfg.with_grads,
            dtype=cfg.dtype,
            fused=cfg.fused_forward,
        )
        self.hooks = self.harvester.hooks
        self.with_grads = cfg.with_grads
        self.progress = progress
        self.norm_batches = norm_batches
        self._norms: dict[str, float] | None = None
        self._rows: int | None = None

    def d_in(self, hook: str) -> int:
        return self.harvester.d_in(hook)

    def count_rows(self) -> int:
        """Rows the stream will yield (tokenizes the whole budget once; no forward pass)."""
        if self._rows is None:
            self._rows = sum(int(self.harvester.mask(t).sum()) for t in self._token_batches())
        return self._rows

    def _token_batches(self) -> Iterator[torch.Tensor]:
        """This rank's share of the token batches."""
        rank, world = self.collective.rank, self.collective.world_size
        for i, tokens in enumerate(token_batches(self.cfg, self.tokenizer)):
            if i % world == rank:
                yield tokens

    def norm_stats(self, hook: str) -> float:
        """Mean row norm, estimated over the first ``norm_batches`` forward passes of the stream."""
        if self._norms is None:
            sums = torch.zeros(len(self.hooks) + 1, dtype=torch.float64)
            for i, tokens in enumerate(self._token_batches()):
                if i >= self.norm_batches:
                    break
                got = self.harvester(tokens)
                for j, h in enumerate(self.hooks):
                    sums[j] += float(got.acts[h].float().norm(dim=-1).sum())
                sums[-1] += len(got.tokens)
            sums = self.collective.all_reduce(sums)
            self._norms = {h: float(sums[j] / sums[-1].clamp_min(1)) for j, h in enumerate(self.hooks)}
        return self._norms[hook]

    def _harvests(self) -> Iterator[Block]:
        from sae.progress import token_bar

        total = self.cfg.n_sequences * self.cfg.context_size // self.collective.world_size
        with token_bar(total, "harvest", self.progress and self.collective.rank == 0) as bar:
            for tokens in self._token_batches():
                yield self.harvester(tokens).block()
                bar.update(tokens.numel())

    def batches(self, batch_size: int, skip_rows: int = 0) -> Iterator[ActivationBatch]:
        gen = torch.Generator().manual_seed(self.cfg.seed + 7919 * self.collective.rank)
        return batched(
            mix(self._harvests(), self.cfg.buffer_rows, gen), batch_size, self.hooks, self.with_grads, skip_rows
        )
