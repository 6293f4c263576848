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
    """Kept candidates of every feature: ``score`` orders them (higher is kept). Slots are in
    no particular order while streaming; ``ordered()`` sorts them by score, highest first."""

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

    def ordered(self) -> Kept:
        order = self.score.sort(dim=1, descending=True, stable=True).indices
        idx3 = order.unsqueeze(-1).expand(-1, -1, self.window.shape[2])
        return Kept(
            self.score.gather(1, order),
            self.value.gather(1, order),
            self.where.gather(1, order),
            self.window.gather(1, idx3),
        )


class Lookup:
    """The code of feature ``f`` at batch row ``r`` from sparse ``(rows, feats, vals)`` entries
    (0 where there is none): sorted keys and a binary search, no dense ``[rows, F]`` matrix."""

    def __init__(self, rows: torch.Tensor, feats: torch.Tensor, vals: torch.Tensor, n_features: int):
        self.n_features = n_features
        self.keys, order = (rows * n_features + feats).sort()
        self.vals = vals[order]

    def __call__(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        if len(self.keys) == 0:
            return torch.zeros(r.shape)
        q = r * self.n_features + f
        i = torch.searchsorted(self.keys, q).clamp(max=len(self.keys) - 1)
        return torch.where(self.keys[i] == q, self.vals[i], 0.0)


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


def windows(lookup: Lookup, seq_len: int, n_rows: int, rows: torch.Tensor, feats: torch.Tensor, left: int, right: int):
    """``[m, W]`` activations of feature ``feats[i]`` around batch row ``rows[i]`` (same sequence
    only; NaN outside it)."""
    offsets = torch.arange(-left, right + 1)
    pos = (rows % seq_len).unsqueeze(-1) + offsets
    inside = (pos >= 0) & (pos < seq_len)
    r = (rows.unsqueeze(-1) + offsets).clamp(0, max(n_rows - 1, 0))
    out = lookup(r, feats.unsqueeze(-1).expand_as(r))
    return torch.where(inside, out, torch.tensor(math.nan))


class FeatureStats:
    """One-pass statistics of ``n_features`` features over batches of codes (dense
    ``[rows, F]`` through ``update``, or sparse entries through ``update_sparse``).

    Kept candidates live in fixed slots: a batch's candidate replaces a kept one only when it
    scores higher, and only then is its context window read, so the work per batch after the
    first few is proportional to the entries that actually enter (few) rather than to
    ``F × n × W``. ``top`` and ``sample`` return the slots sorted by score."""

    def __init__(
        self, n_features: int, n_top: int, sample_size: int, left: int, right: int, hist_bins: int, seed: int = 0
    ):
        if hist_bins & (hist_bins - 1):
            raise ValueError("hist_bins must be a power of two")
        width = left + right + 1
        self.left, self.right, self.bins = left, right, hist_bins
        self._top = Kept.empty(n_features, n_top, width)
        self._sample = Kept.empty(n_features, sample_size, width)
        self._ordered: dict[str, Kept] = {}
        self.count = torch.zeros(n_features, dtype=torch.long)
        self.total = torch.zeros(n_features, dtype=torch.float64)
        self.max = torch.zeros(n_features)
        self.range = torch.zeros(n_features)  # histogram covers (0, range]
        self.hist = torch.zeros(n_features, hist_bins, dtype=torch.long)
        self.rows_seen = 0
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def top(self) -> Kept:
        if "top" not in self._ordered:
            self._ordered["top"] = self._top.ordered()
        return self._ordered["top"]

    @property
    def sample(self) -> Kept:
        """In random key order (bottom-k keys), so its first entries are a random subset."""
        if "sample" not in self._ordered:
            self._ordered["sample"] = self._sample.ordered()
        return self._ordered["sample"]

    def update(self, codes: torch.Tensor, seq_len: int) -> None:
        """Add a batch of ``[rows, F]`` codes (rows are whole sequences of ``seq_len``, flattened;
        excluded positions such as BOS carry zeros)."""
        codes = codes.float().cpu()
        rows, feats = (codes > 0).nonzero(as_tuple=True)  # sparse: only the active entries are ranked
        self.update_sparse(rows, feats, codes[rows, feats], codes.shape[0], seq_len)

    def update_sparse(
        self, rows: torch.Tensor, feats: torch.Tensor, vals: torch.Tensor, n_rows: int, seq_len: int
    ) -> None:
        """Add a batch of ``n_rows`` rows given by its positive entries ``(rows, feats, vals)``."""
        n_features = self.count.shape[0]
        rows, feats, vals = rows.long().cpu(), feats.long().cpu(), vals.float().cpu()
        self._ordered.clear()
        self.count += torch.bincount(feats, minlength=n_features)
        self.total.index_add_(0, feats, vals.double())
        self._update_hist(n_features, feats, vals)
        keys = -torch.rand(vals.shape, generator=self.generator)  # highest -key = lowest key: bottom-k sampling
        lookup = Lookup(rows, feats, vals, n_features)
        for kept, score in ((self._top, vals), (self._sample, keys)):
            self._offer(kept, rows, feats, vals, score, lookup, n_rows, seq_len)
        self.rows_seen += n_rows

    def _offer(self, kept: Kept, rows, feats, vals, score, lookup: Lookup, n_rows: int, seq_len: int) -> None:
        """Put this batch's entries that beat kept ones into the slots they free (in place).

        Only entries above their feature's weakest kept score can enter, and only the
        features with such entries are touched: after the first batches that is a small
        share of both (top-k thresholds rise; a bottom-k key enters with chance n/count)."""
        weakest = kept.score.min(1).values
        can = score > weakest[feats]
        if not bool(can.any()):
            return
        idx = can.nonzero().flatten()
        feats_c = feats[idx]
        touched, local = torch.unique(feats_c, return_inverse=True)
        n = kept.score.shape[1]
        slot = best_per_feature(local, score[idx], len(touched), n)  # [T, n] index into idx, or -1
        valid = slot >= 0
        cand = score[idx][slot.clamp_min(0)].masked_fill(~valid, -math.inf)
        old = kept.score[touched]
        both = torch.cat([old, cand], 1)
        chosen = torch.zeros_like(both, dtype=torch.bool).scatter_(1, both.topk(n, dim=1).indices, True)
        chosen &= both > -math.inf
        new, freed = chosen[:, n:], ~chosen[:, :n]  # freed slots ≥ chosen candidates, per feature
        ar = torch.arange(n)
        dst = torch.where(freed, ar, n + ar).sort(1).values
        src = torch.where(new, ar, n + ar).sort(1).values
        pair = ar < new.sum(1, keepdim=True)
        t = torch.arange(len(touched)).unsqueeze(1).expand(-1, n)[pair]
        dst, src = dst[pair], src[pair]
        entry = idx[slot[t, src]]
        f, r = touched[t], rows[entry]
        kept.score[f, dst] = cand[t, src]
        kept.value[f, dst] = vals[entry]
        kept.where[f, dst] = r + self.rows_seen
        kept.window[f, dst] = windows(lookup, seq_len, n_rows, r, f, self.left, self.right)

    def _update_hist(self, n_features: int, feats, vals) -> None:
        batch_max = torch.zeros(n_features).scatter_reduce_(0, feats, vals, "amax")
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
