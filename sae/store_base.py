"""What both modes of the activation store share: the config, the token stream, row blocks
and their batching, and the store interface. ``sae.store`` (streaming mode, and
``open_store``, which picks a mode) and ``sae.cache`` (cached mode) build on it; the
contract is in ``sae.store``'s docstring.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from sae import providers
from sae.config import FrozenConfig
from sae.errors import SaelabError
from sae.text import TextSource, iter_texts, iter_token_rows, pack_rows

# Aligned rows of several hooks (and their gradients under "<hook>.grad"): every entry has
# the same number of rows, and row i of each entry is the same token.
Block = dict[str, torch.Tensor]


class DataConfig(FrozenConfig):
    """Where activations come from and how they are mixed: a run config's ``data`` section
    (the hooks, and whether gradients are harvested, follow from its SAEs)."""

    model: str = Field(
        default_factory=providers.default_name,
        json_schema_extra=providers.schema_default,
        description="A model provider's name, a local model directory or a hub name (default: the default provider).",
    )
    source: TextSource = Field(
        default_factory=TextSource,
        description="Text source (default: a provider model's own text, the default provider's for any other model).",
    )
    context_size: int = Field(64, ge=2, description="Tokens per sequence, BOS included.")
    n_tokens: int = Field(1_000_000, gt=0, description="Token budget: token positions fed to the model.")
    lm_batch_size: int = Field(64, gt=0, description="Sequences per forward pass.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field("float32", description="Model and storage dtype.")
    device: str = Field("cpu", description="Device of the language model.")
    seed: int = Field(0, description="Seeds a provider's generated text and the shuffling.")
    buffer_rows: int = Field(65_536, gt=0, description="Mixing buffer capacity in rows (streaming mode).")
    cache_dir: str | None = Field(None, description="On-disk cache directory; None streams with no disk.")
    shard_batches: int = Field(16, gt=0, description="Forward passes per cache shard.")
    fused_forward: bool = Field(
        True,
        description=(
            "Harvest a GPT-2 model with the fused forward (sae.fused_forward: the same activations to float "
            "rounding, faster); False always runs the TransformerLens bridge. Other models always use the bridge."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _text_follows_the_model(cls, data):
        """A provider's model reads its own text unless the config names a source kind: a
        second embedded model trained on another corpus must not get the default one's."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            return data
        source = data.get("source")
        unnamed = source is None or (isinstance(source, dict) and "kind" not in source)
        if unnamed and providers.find(data["model"]) is not None:
            return {**data, "source": {**(source or {}), "kind": data["model"]}}
        return data

    @property
    def n_sequences(self) -> int:
        return math.ceil(self.n_tokens / self.context_size)


class StoreConfig(DataConfig):
    """A store's full settings: the data, plus the hook points it reads."""

    hooks: list[str] = Field(..., min_length=1, description="Hook points read in one forward pass.")
    with_grads: bool = Field(False, description="Also harvest g = dL/dx (summed next-token CE) for gradient SAEs.")


@dataclass
class ActivationBatch:
    acts: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return next(iter(self.acts.values())).shape[0]

    def rows(self, lo: int, hi: int) -> ActivationBatch:
        """Rows ``lo:hi`` of every hook (views)."""
        return ActivationBatch(
            {h: a[lo:hi] for h, a in self.acts.items()},
            None if self.grads is None else {h: g[lo:hi] for h, g in self.grads.items()},
        )


def block_len(block: Block) -> int:
    return next(iter(block.values())).shape[0]


def take(block: Block, index: torch.Tensor) -> Block:
    # index_select, not advanced indexing: several times faster for wide rows on CPU.
    return {k: v.index_select(0, index.to(v.device)) for k, v in block.items()}


def cut(block: Block, lo: int, hi: int) -> Block:
    return {k: v[lo:hi] for k, v in block.items()}


def concat(blocks: list[Block]) -> Block:
    return {k: torch.cat([b[k] for b in blocks]) for k in blocks[0]}


def token_batches(cfg: StoreConfig, tokenizer, skip_batches: int = 0) -> Iterator[torch.Tensor]:
    """``[lm_batch_size, context_size]`` token batches covering the budget (last one short)."""
    if cfg.source.kind == "tokens":
        rows = iter_token_rows(cfg.source, cfg.context_size)
    else:
        rows = pack_rows(iter_texts(cfg.source, seed=cfg.seed), tokenizer, cfg.context_size)
    remaining = cfg.n_sequences
    index = 0
    while remaining > 0:
        take_n = min(cfg.lm_batch_size, remaining)
        batch = list(islice(rows, take_n))
        if not batch:
            if index == 0:
                raise SaelabError("the text source produced no full sequence; lower context_size or add text")
            return
        remaining -= len(batch)
        if index >= skip_batches:
            yield torch.from_numpy(np.asarray(batch, dtype=np.int64))
        index += 1
        if len(batch) < take_n:
            return


def check_model_fits(cfg: StoreConfig, model) -> None:
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx is not None and cfg.context_size > n_ctx:
        raise SaelabError(f"context_size {cfg.context_size} is longer than the model's context ({n_ctx})")


def load_for(cfg: StoreConfig, model=None, tokenizer=None):
    """``(model, tokenizer)`` for ``cfg``: the given model, or the one ``cfg.model`` names."""
    from sae.model import load_model

    if model is None:
        model, tokenizer = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    elif tokenizer is None:
        tokenizer = model.tokenizer
    check_model_fits(cfg, model)
    return model, tokenizer


def mix(blocks: Iterable[Block], capacity: int, generator: torch.Generator) -> Iterator[Block]:
    """A mixing buffer over a stream of row blocks.

    Incoming rows fill free slots of a preallocated buffer of ``capacity`` rows; whenever
    it is full, a uniformly random half of its slots is emitted (in random order) and
    those slots take the next rows. At the end the remaining rows leave in random order.
    Every row is emitted exactly once. Each row is copied in once and out once
    (``index_copy_``/``index_select``), with no re-concatenation of the buffer.
    """
    buf: Block | None = None
    free = torch.empty(0, dtype=torch.long)
    used = 0  # slots of ``free`` already written
    device = None
    for block in blocks:
        n = block_len(block)
        if buf is None:
            device = next(iter(block.values())).device
            buf = {k: v.new_empty((capacity, *v.shape[1:])) for k, v in block.items()}
            free = torch.arange(capacity, device=device)
        pos = 0
        while pos < n:
            step = min(n - pos, len(free) - used)
            slots = free[used : used + step]
            for k, v in block.items():
                buf[k].index_copy_(0, slots, v[pos : pos + step])
            pos += step
            used += step
            if used == len(free):  # full: a random half leaves
                out = torch.randperm(capacity, generator=generator)[: capacity - capacity // 2].to(device)
                yield take(buf, out)
                free, used = out, 0
    if buf is not None:
        occupied = torch.ones(capacity, dtype=torch.bool, device=device)
        occupied[free[used:]] = False
        rest = occupied.nonzero().squeeze(1)
        if len(rest):
            yield take(buf, rest[torch.randperm(len(rest), generator=generator).to(device)])


def batched(
    blocks: Iterable[Block], batch_size: int, hooks: list[str], with_grads: bool, skip_rows: int = 0
) -> Iterator[ActivationBatch]:
    """Re-cut a stream of row blocks into batches of ``batch_size``, after skipping rows.

    Batches are views into the current block; only a batch that straddles two blocks is
    copied.
    """
    if batch_size <= 0:
        raise SaelabError(f"batch_size must be positive (got {batch_size})")

    def as_batch(block: Block) -> ActivationBatch:
        return ActivationBatch(
            acts={h: block[h] for h in hooks}, grads={h: block[f"{h}.grad"] for h in hooks} if with_grads else None
        )

    rest: Block | None = None  # a partial batch waiting for rows
    for block in blocks:
        n = block_len(block)
        pos = min(skip_rows, n)
        skip_rows -= pos
        if pos == n:
            continue
        if rest is not None:
            need = batch_size - block_len(rest)
            rest = concat([rest, cut(block, pos, pos + need)])
            pos = min(pos + need, n)
            if block_len(rest) < batch_size:
                continue
            yield as_batch(rest)
            rest = None
        while n - pos >= batch_size:
            yield as_batch(cut(block, pos, pos + batch_size))
            pos += batch_size
        if pos < n:
            rest = cut(block, pos, n)
    if rest is not None:
        yield as_batch(rest)


class ActivationStore(abc.ABC):
    """What trainers read, in either mode (``sae.store.open_store`` picks one)."""

    hooks: list[str]
    with_grads: bool

    @abc.abstractmethod
    def d_in(self, hook: str) -> int: ...

    @abc.abstractmethod
    def norm_stats(self, hook: str) -> float: ...

    @abc.abstractmethod
    def batches(self, batch_size: int, skip_rows: int = 0) -> Iterator[ActivationBatch]: ...

    @abc.abstractmethod
    def count_rows(self) -> int: ...
