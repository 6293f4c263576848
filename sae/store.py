"""The activation store: shuffled ``[batch, d_in]`` rows for SAE training.

Contract (what trainers consume):

- ``StoreConfig``: model, hooks, text source, context size, token budget, LM batch size,
  dtype, device, seed, mixing-buffer size, ``cache_dir`` (None = streaming), with_grads.
  The seed drives both the text stream and the shuffling, so another seed is held-out
  data.
- ``ActivationStore.from_config(cfg, model=None, tokenizer=None)`` → a store.
- ``store.batches(batch_size, skip_rows=0)`` → iterator of ``ActivationBatch`` with
  ``acts[hook]`` of shape ``[batch, d_in]`` (row i of every hook is the same token) and
  ``grads[hook]`` when gradients were harvested. It ends when the token budget is spent;
  the last batch may be short. ``skip_rows`` resumes exactly where a run stopped: the
  order is a pure function of the config, so the first ``skip_rows`` rows are dropped.
- ``store.d_in(hook)``, ``store.norm_stats(hook)`` (mean L2 norm of the rows, for
  scaling to √d_in), ``store.hooks``, ``store.rows`` (when known).

Streaming mode harvests on the fly into a mixing buffer: when full, the buffer is
permuted and half of it is emitted, so consecutive rows come from different sequences.
Cached mode (``sae.cache``) writes shards once and reads them memory-mapped.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from sae.config import FrozenConfig
from sae.errors import SaelabError
from sae.text import TextSource, iter_texts, iter_token_rows, pack_rows


class StoreConfig(FrozenConfig):
    """Where activations come from and how they are mixed."""

    model: str = Field("organism", description="'organism', a local model directory or a hub name.")
    hooks: list[str] = Field(..., min_length=1, description="Hook points read in one forward pass.")
    source: TextSource = Field(default_factory=TextSource, description="Text source.")
    context_size: int = Field(64, ge=2, description="Tokens per sequence, BOS included.")
    n_tokens: int = Field(1_000_000, gt=0, description="Token budget: token positions fed to the model.")
    lm_batch_size: int = Field(64, gt=0, description="Sequences per forward pass.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Model and storage dtype.")
    device: str = Field("cpu", description="Device of the language model.")
    seed: int = Field(0, description="Seeds the text stream and the shuffling.")
    buffer_rows: int = Field(65_536, gt=0, description="Mixing buffer capacity in rows (streaming mode).")
    cache_dir: str | None = Field(None, description="On-disk cache directory; None streams with no disk.")
    shard_batches: int = Field(16, gt=0, description="Forward passes per cache shard.")
    with_grads: bool = Field(False, description="Also harvest g = dL/dx (summed next-token CE) for gradient SAEs.")

    @property
    def n_sequences(self) -> int:
        return math.ceil(self.n_tokens / self.context_size)


@dataclass
class ActivationBatch:
    acts: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return next(iter(self.acts.values())).shape[0]


def token_batches(cfg: StoreConfig, tokenizer, skip_batches: int = 0) -> Iterator[torch.Tensor]:
    """``[lm_batch_size, context_size]`` token batches covering the budget (last one short)."""
    if cfg.source.kind == "tokens":
        rows = iter_token_rows(cfg.source, cfg.context_size)
    else:
        rows = pack_rows(iter_texts(cfg.source, seed=cfg.seed), tokenizer, cfg.context_size)
    remaining = cfg.n_sequences
    index = 0
    while remaining > 0:
        take = min(cfg.lm_batch_size, remaining)
        batch = [row for _, row in zip(range(take), rows)]
        if not batch:
            if index == 0:
                raise SaelabError("the text source produced no full sequence; lower context_size or add text")
            return
        remaining -= len(batch)
        if index >= skip_batches:
            yield torch.tensor(batch, dtype=torch.long)
        index += 1
        if len(batch) < take:
            return


def check_model_fits(cfg: StoreConfig, model) -> None:
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and cfg.context_size > n_ctx:
        raise SaelabError(f"context_size {cfg.context_size} is longer than the model's context ({n_ctx})")


def load_for(cfg: StoreConfig, model=None, tokenizer=None):
    from sae.model import load_model

    if model is None:
        model, tokenizer = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    elif tokenizer is None:
        tokenizer = model.tokenizer
    check_model_fits(cfg, model)
    return model, tokenizer


class _Rows:
    """Aligned rows of several hooks (and their gradients), concatenated and sliced together."""

    def __init__(self, parts: dict[str, list[torch.Tensor]]):
        self.data = {k: torch.cat(v) if v else torch.empty(0) for k, v in parts.items()}

    def __len__(self) -> int:
        return next(iter(self.data.values())).shape[0]

    def take(self, index) -> "_Rows":
        out = _Rows({})
        out.data = {k: v[index] for k, v in self.data.items()}
        return out

    def batch(self, hooks: list[str], with_grads: bool) -> ActivationBatch:
        return ActivationBatch(
            acts={h: self.data[h] for h in hooks},
            grads={h: self.data[f"{h}.grad"] for h in hooks} if with_grads else None,
        )


def batched(rows: Iterator[_Rows], batch_size: int, hooks: list[str], with_grads: bool,
            skip_rows: int = 0) -> Iterator[ActivationBatch]:
    """Re-cut a stream of row blocks into batches of ``batch_size``, after skipping rows.

    Batches are views into the current block; only a partial remainder is ever copied.
    """
    current: _Rows | None = None
    offset = 0
    for block in rows:
        if skip_rows:
            drop = min(skip_rows, len(block))
            block, skip_rows = block.take(slice(drop, None)), skip_rows - drop
        if len(block) == 0:
            continue
        if current is None or offset >= len(current):
            current, offset = block, 0
        else:
            rest = current.take(slice(offset, None))
            current, offset = _Rows({k: [rest.data[k], block.data[k]] for k in block.data}), 0
        while len(current) - offset >= batch_size:
            yield current.take(slice(offset, offset + batch_size)).batch(hooks, with_grads)
            offset += batch_size
    if current is not None and offset < len(current):
        yield current.take(slice(offset, None)).batch(hooks, with_grads)


class ActivationStore(abc.ABC):
    """Base of both modes; ``from_config`` picks one."""

    hooks: list[str]
    with_grads: bool

    @staticmethod
    def from_config(cfg: StoreConfig, model=None, tokenizer=None, progress: bool = True) -> "ActivationStore":
        if cfg.cache_dir is None:
            return StreamingStore(cfg, model, tokenizer, progress=progress)
        from sae.cache import CachedStore, write_cache

        write_cache(cfg, model, tokenizer, progress=progress)  # no-op when already complete
        return CachedStore(cfg.cache_dir)

    @abc.abstractmethod
    def d_in(self, hook: str) -> int: ...

    @abc.abstractmethod
    def norm_stats(self, hook: str) -> float: ...

    @abc.abstractmethod
    def batches(self, batch_size: int, skip_rows: int = 0) -> Iterator[ActivationBatch]: ...

    @abc.abstractmethod
    def count_rows(self) -> int: ...


class StreamingStore(ActivationStore):
    """Harvests on the fly into a mixing buffer; nothing touches the disk."""

    def __init__(self, cfg: StoreConfig, model=None, tokenizer=None, progress: bool = True, norm_batches: int = 4):
        from sae.harvest import Harvester

        self.cfg = cfg
        self.model, self.tokenizer = load_for(cfg, model, tokenizer)
        self.harvester = Harvester(self.model, self.tokenizer, cfg.hooks, with_grads=cfg.with_grads, dtype=cfg.dtype)
        self.hooks = self.harvester.hooks
        self.with_grads = cfg.with_grads
        self.progress = progress
        self.norm_batches = norm_batches
        self._norms: dict[str, float] | None = None
        self._rows: int | None = None

    def d_in(self, hook: str) -> int:
        return self.harvester.d_in(hook)

    def count_rows(self) -> int:
        """Rows the stream will yield (tokenizes the budget; no forward pass)."""
        if self._rows is None:
            self._rows = sum(int(self.harvester.mask(t).sum()) for t in token_batches(self.cfg, self.tokenizer))
        return self._rows

    def norm_stats(self, hook: str) -> float:
        """Mean row norm over the first ``norm_batches`` forward passes of the stream."""
        if self._norms is None:
            sums = dict.fromkeys(self.hooks, 0.0)
            n = 0
            for i, tokens in enumerate(token_batches(self.cfg, self.tokenizer)):
                if i >= self.norm_batches:
                    break
                got = self.harvester(tokens)
                for h in self.hooks:
                    sums[h] += float(got.acts[h].float().norm(dim=-1).sum())
                n += len(got.tokens)
            self._norms = {h: sums[h] / max(n, 1) for h in self.hooks}
        return self._norms[hook]

    def _harvests(self) -> Iterator[_Rows]:
        from sae.progress import token_bar

        with token_bar(self.cfg.n_sequences * self.cfg.context_size, "harvest", self.progress) as bar:
            for tokens in token_batches(self.cfg, self.tokenizer):
                got = self.harvester(tokens)
                parts = {h: [got.acts[h]] for h in self.hooks}
                if got.grads is not None:
                    parts.update({f"{h}.grad": [got.grads[h]] for h in self.hooks})
                bar.update(tokens.numel())
                yield _Rows(parts)

    def _mixed(self) -> Iterator[_Rows]:
        gen = torch.Generator().manual_seed(self.cfg.seed)
        capacity = self.cfg.buffer_rows
        buffer: list[_Rows] = []
        size = 0
        for block in self._harvests():
            buffer.append(block)
            size += len(block)
            while size >= capacity:
                merged = _Rows({k: [b.data[k] for b in buffer] for k in block.data})
                merged = merged.take(torch.randperm(size, generator=gen))
                half = capacity // 2
                yield merged.take(slice(0, half))
                rest = merged.take(slice(half, None))
                buffer, size = [rest], len(rest)
        if size:
            merged = _Rows({k: [b.data[k] for b in buffer] for k in buffer[0].data})
            yield merged.take(torch.randperm(size, generator=gen))

    def batches(self, batch_size: int, skip_rows: int = 0) -> Iterator[ActivationBatch]:
        return batched(self._mixed(), batch_size, self.hooks, self.with_grads, skip_rows)
