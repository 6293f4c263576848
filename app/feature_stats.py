"""Streaming per-feature statistics: exact top-k, a uniform sample, density and histogram.

Everything here is updated batch by batch from dense codes ``[rows, d_sae]`` so that the
build makes one pass over the text. Choices:

- **top-k** is exact: per batch, each feature's top ``k`` rows are merged with the kept ones.
- **uniform sample**: each nonzero activation gets an independent uniform key; a feature
  keeps the ``n`` smallest keys seen. That is a uniform sample without replacement of the
  feature's nonzero activations over the whole stream (bottom-k sampling), so interval
  contexts and interval shares drawn from it are unbiased.
- **histogram** is exact over ``(0, R]`` with ``R`` the smallest power-of-two multiple of the
  first max that covers the running max: when the max grows past ``R``, ``R`` doubles and
  adjacent bins merge, so no count is ever lost or re-estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Kept:
    """Kept candidates of every feature: ``score`` orders them (higher is kept)."""

    score: torch.Tensor  # [F, n]
    value: torch.Tensor  # [F, n] the activation at the centre token
    where: torch.Tensor  # [F, n] global row index (-1: empty slot)
    window: torch.Tensor  # [F, n, W] activations over the context window (nan: outside the sequence)

    @staticmethod
    def empty(n_features: int, n: int, width: int) -> Kept:
        return Kept(
            score=torch.full((n_features, n), -math.inf),
            value=torch.zeros(n_features, n),
            where=torch.full((n_features, n), -1, dtype=torch.long),
            window=torch.full((n_features, n, width), math.nan),
        )

    def merge(self, other: Kept) -> Kept:
        n = self.score.shape[1]
        score = torch.cat([self.score, other.score], 1)
        top = score.topk(n, dim=1).indices  # ties: any order
        pick = lambda a, b: torch.cat([a, b], 1).gather(1, top)  # noqa: E731
        idx3 = top.unsqueeze(-1).expand(-1, -1, self.window.shape[2])
        return Kept(
            score=score.gather(1, top),
            value=pick(self.value, other.value),
            where=pick(self.where, other.where),
            window=torch.cat([self.window, other.window], 1).gather(1, idx3),
        )


def best_per_feature(feats: torch.Tensor, score: torch.Tensor, n_features: int, n: int) -> torch.Tensor:
    """``[n_features, n]``: per feature, the indices of its ``n`` highest-scoring entries
    (highest first; -1 where it has fewer), from sparse ``(feats, score)`` entries."""
    order = score.sort(descending=True, stable=True).indices
    order = order[feats[order].sort(stable=True).indices]  # by feature, then score descending
    f_sorted = feats[order]
    counts = torch.bincount(feats, minlength=n_features)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(len(order)) - starts[f_sorted]
    keep = rank < n
    out = torch.full((n_features, n), -1, dtype=torch.long)
    out[f_sorted[keep], rank[keep]] = order[keep]
    return out


def windows(codes: torch.Tensor, seq_len: int, rows: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """``[F, n, W]`` activations of feature f around batch row ``rows[f, j]`` (same sequence only)."""
    n_features = rows.shape[0]
    offsets = torch.arange(-left, right + 1)
    pos = rows % seq_len
    r = rows.unsqueeze(-1) + offsets  # [F, n, W]
    inside = (
        ((pos.unsqueeze(-1) + offsets) >= 0) & ((pos.unsqueeze(-1) + offsets) < seq_len) & (rows.unsqueeze(-1) >= 0)
    )
    r = r.clamp(0, codes.shape[0] - 1)
    f = torch.arange(n_features).view(-1, 1, 1).expand_as(r)
    out = codes[r, f]
    return torch.where(inside, out, torch.tensor(math.nan))


class FeatureStats:
    """One-pass statistics of ``n_features`` features over batches of ``[rows, F]`` codes."""

    def __init__(
        self, n_features: int, n_top: int, sample_size: int, left: int, right: int, hist_bins: int, seed: int = 0
    ):
        if hist_bins & (hist_bins - 1):
            raise ValueError("hist_bins must be a power of two")
        width = left + right + 1
        self.left, self.right, self.bins = left, right, hist_bins
        self.top = Kept.empty(n_features, n_top, width)
        self.sample = Kept.empty(n_features, sample_size, width)
        self.count = torch.zeros(n_features, dtype=torch.long)
        self.total = torch.zeros(n_features, dtype=torch.float64)
        self.max = torch.zeros(n_features)
        self.range = torch.zeros(n_features)  # histogram covers (0, range]
        self.hist = torch.zeros(n_features, hist_bins, dtype=torch.long)
        self.rows_seen = 0
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, codes: torch.Tensor, seq_len: int) -> None:
        """Add a batch of ``[rows, F]`` codes (rows are whole sequences of ``seq_len``, flattened;
        excluded positions such as BOS carry zeros)."""
        codes = codes.float().cpu()
        n_rows, n_features = codes.shape
        rows, feats = (codes > 0).nonzero(as_tuple=True)  # sparse: only the active entries are ranked
        vals = codes[rows, feats]
        self.count += torch.bincount(feats, minlength=n_features)
        self.total.index_add_(0, feats, vals.double())
        self._update_hist(codes, rows, feats, vals)
        keys = -torch.rand(vals.shape, generator=self.generator)  # highest -key = lowest key: bottom-k sampling
        self.top = self.top.merge(self._kept(codes, rows, feats, vals, vals, self.top.score.shape[1], seq_len))
        self.sample = self.sample.merge(self._kept(codes, rows, feats, vals, keys, self.sample.score.shape[1], seq_len))
        self.rows_seen += n_rows

    def _kept(self, codes, rows, feats, vals, score, n: int, seq_len: int) -> Kept:
        """This batch's best ``n`` entries per feature by ``score``, as candidates to merge."""
        slot = best_per_feature(feats, score, codes.shape[1], n)  # [F, n] entry index or -1
        valid = slot >= 0
        safe = slot.clamp_min(0)
        batch_rows = torch.where(valid, rows[safe], -1)
        return Kept(
            score=score[safe].masked_fill(~valid, -math.inf),
            value=vals[safe] * valid,
            where=torch.where(valid, batch_rows + self.rows_seen, -1),
            window=windows(codes, seq_len, batch_rows, self.left, self.right),
        )

    def _update_hist(self, codes, rows, feats, vals) -> None:
        batch_max = torch.zeros(codes.shape[1]).scatter_reduce_(0, feats, vals, "amax")
        self.max = torch.maximum(self.max, batch_max)
        fresh = (self.range == 0) & (batch_max > 0)
        self.range[fresh] = batch_max[fresh]
        for f in (self.max > self.range).nonzero().flatten().tolist():
            doublings = math.ceil(math.log2(float(self.max[f] / self.range[f])))
            while self.range[f] < self.max[f]:  # float safety
                doublings = max(doublings, 1)
                group = min(2**doublings, self.bins)
                merged = self.hist[f].view(-1, group).sum(1)
                self.hist[f] = 0
                self.hist[f, : merged.numel()] = merged
                self.range[f] = self.range[f] * 2**doublings
                doublings = 1
        bins = (vals / self.range[feats] * self.bins).ceil().long().clamp(1, self.bins) - 1
        self.hist.view(-1).index_add_(0, feats * self.bins + bins, torch.ones_like(bins))
