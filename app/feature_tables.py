"""SAEDashboard's feature tables and histograms, computed sparsely for every feature at once.

What Neuronpedia shows beside a feature's contexts, defined as ``sae_dashboard`` 0.8.0 defines it:

- **correlated features / neurons** (``RollingCorrCoef``): Pearson ``(n·Σxy − ΣxΣy) /
  (sqrt((n·Σx² − (Σx)²)(n·Σy² − (Σy)²)) + 1e-6)`` and cosine ``Σxy / (sqrt(Σx²·Σy²) + 1e-6)``
  (exported under the ``*_l1`` keys, as SAEDashboard does), the top ``n`` by Pearson, a feature
  never its own neighbour (diagonal set to 0). "Neurons" are the ``d_in`` coordinates of the
  hooked activation. Computed over the build's first ``corr_tokens`` kept positions, whose codes
  are stored sparse (``CodeSample``), so the feature-feature Gram is made in chunks of features
  from a sparse product and never held as a dense ``d_sae²`` matrix.
- **neuron alignment** (``add_neuron_alignment_data``): the ``n`` *largest signed* coordinates of
  ``W_dec[f]`` (SAEDashboard's ``TopK(largest=True)``, not the largest ``|W_dec|``) and each one's
  ``|value| / ‖W_dec[f]‖₁``.
- **histograms** (``HistogramData.from_data``): ``bins`` equal-width bins from the data's min to
  its max (``torch.histc``: the max falls in the last bin), bar values at the bin centres. The
  logit histogram is over all ``d_vocab`` entries of ``W_dec[f]·W_U``; the activation histogram
  over the feature's nonzero activations in the sample.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

EPS = 1e-6  # SAEDashboard's denominators


class CodeSample:
    """Sparse codes (and, for correlated neurons, the running sums against the hooked
    activations) of the first ``max_rows`` kept positions of the build."""

    def __init__(self, d_sae: int, d_in: int, max_rows: int):
        self.d_sae, self.d_in, self.max_rows = d_sae, d_in, max_rows
        self.rows = 0
        self.parts: list[sp.csr_matrix] = []
        self.xy = torch.zeros(d_sae, d_in, dtype=torch.float64)  # Σ code·act
        self.a_sum = torch.zeros(d_in, dtype=torch.float64)
        self.a2_sum = torch.zeros(d_in, dtype=torch.float64)

    @property
    def full(self) -> bool:
        return self.rows >= self.max_rows

    def update(self, codes: torch.Tensor, acts: torch.Tensor, keep: torch.Tensor) -> None:
        """Add ``codes [rows, d_sae]`` and ``acts [rows, d_in]`` at the positions ``keep`` marks."""
        take = self.max_rows - self.rows
        if take <= 0:
            return
        idx = keep.nonzero().flatten()[:take]
        c = codes[idx].float().cpu()
        a = acts[idx].reshape(len(idx), -1).double().cpu()
        r, f = c.nonzero(as_tuple=True)
        v = c[r, f]
        part = sp.csr_matrix((v.numpy(), (r.numpy(), f.numpy())), shape=(len(idx), self.d_sae), dtype=np.float64)
        self.parts.append(part)
        self.xy += torch.from_numpy(np.asarray(part.T @ a.numpy()))  # sparse: no [nnz, d_in] temporary
        self.a_sum += a.sum(0)
        self.a2_sum += (a * a).sum(0)
        self.rows += len(idx)

    def matrix(self) -> sp.csc_matrix:
        if not self.parts:
            return sp.csc_matrix((0, self.d_sae))
        return sp.vstack(self.parts).tocsc()


def _top_pearson(xy: torch.Tensor, n_rows: int, x_sum, x2_sum, y_sum, y2_sum, n: int, exclude_from: int | None):
    """Top ``n`` by Pearson of each row of the co-moment block ``xy [X, Y]`` (float32, in place),
    and the cosine of the pairs picked. ``exclude_from``: row ``i`` is column ``exclude_from + i``
    (a feature against all features: the diagonal counts 0, as SAEDashboard's)."""
    gram = xy.clone()
    pearson = xy.mul_(n_rows).addr_(x_sum, y_sum, alpha=-1)
    var_x = (n_rows * x2_sum - x_sum**2).clamp_min(0).sqrt()
    var_y = (n_rows * y2_sum - y_sum**2).clamp_min(0).sqrt()
    pearson.div_(torch.outer(var_x, var_y).add_(EPS))
    if exclude_from is not None:
        d = torch.arange(pearson.shape[0])
        pearson[d, d + exclude_from] = 0.0
        gram[d, d + exclude_from] = 0.0
    top = pearson.topk(min(n, pearson.shape[1]), dim=1)  # ties: torch's order, as SAEDashboard's TopK
    ids = top.indices
    cos = gram.gather(1, ids) / ((x2_sum.unsqueeze(1) * y2_sum[ids]).sqrt() + EPS)
    return ids.numpy(), top.values.numpy(), cos.numpy()


def _sums(X: sp.csc_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    x_sum = torch.from_numpy(np.asarray(X.sum(0)).ravel()).float()
    x2_sum = torch.from_numpy(np.asarray(X.multiply(X).sum(0)).ravel()).float()
    return x_sum, x2_sum


def correlated_features(sample: CodeSample, n: int, chunk: int = 1024):
    """``(ids, pearson, cosine)``, each ``[d_sae, n]``; float32 blocks of ``chunk`` features
    against all, from a sparse product (pairs that never fire together cost nothing there)."""
    X = sample.matrix().astype(np.float32)
    rows = max(sample.rows, 1)
    x_sum, x2_sum = _sums(X)
    XT = X.T.tocsr()
    out = ([], [], [])
    for lo in range(0, sample.d_sae, chunk):
        hi = min(lo + chunk, sample.d_sae)
        xy = torch.from_numpy((XT[lo:hi] @ X).toarray())
        part = _top_pearson(xy, rows, x_sum[lo:hi], x2_sum[lo:hi], x_sum, x2_sum, n, exclude_from=lo)
        for lst, p in zip(out, part, strict=True):
            lst.append(p)
    return tuple(np.concatenate(x) for x in out)


def correlated_neurons(sample: CodeSample, n: int):
    """``(ids, pearson, cosine)``, each ``[d_sae, n]``: the hooked activation's coordinates."""
    x_sum, x2_sum = _sums(sample.matrix())
    return _top_pearson(
        sample.xy.float(),
        max(sample.rows, 1),
        x_sum,
        x2_sum,
        sample.a_sum.float(),
        sample.a2_sum.float(),
        n,
        exclude_from=None,
    )


def neuron_alignment(W_dec: torch.Tensor, n: int):
    """``(ids, values, share_of_l1)``, each ``[d_sae, n]``."""
    W = W_dec.detach().float().cpu()
    top = W.topk(min(n, W.shape[1]), dim=1)
    l1 = W.abs().sum(1, keepdim=True)
    return top.indices.numpy(), top.values.numpy(), (top.values.abs() / l1).numpy()


def histograms(data: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``data [rows, m]``: ``(heights [rows, bins], centres [rows, bins])`` of ``bins``
    equal-width bins over the row's ``[min, max]`` (``torch.histc`` per row)."""
    data = data.float()
    lo, hi = data.min(1, keepdim=True).values, data.max(1, keepdim=True).values
    width = (hi - lo) / bins
    safe = torch.where(width > 0, width, torch.ones_like(width))
    index = ((data - lo) / safe).floor().long().clamp(0, bins - 1)
    heights = torch.zeros(data.shape[0], bins, dtype=torch.long).scatter_add_(1, index, torch.ones_like(index))
    centres = lo + width * (torch.arange(bins) + 0.5)
    return heights, centres


def logit_histograms(resid: torch.Tensor, W_U: torch.Tensor, bins: int, chunk: int = 512):
    """The histogram of every feature's ``resid[f] @ W_U``, as ``(heights, centres)``."""
    W_U = W_U.detach().float().cpu()
    hs, cs = [], []
    for lo in range(0, resid.shape[0], chunk):
        h, c = histograms(resid[lo : lo + chunk].float() @ W_U, bins)
        hs.append(h)
        cs.append(c)
    return torch.cat(hs).numpy(), torch.cat(cs).numpy()


def activation_histograms(sample: CodeSample, bins: int):
    """Per feature, the histogram of its nonzero activations in the sample: ``(heights, centres)``
    lists (empty for a feature that never fired there); ``histograms``' binning, all features at once."""
    X = sample.matrix()
    X.eliminate_zeros()
    counts = np.diff(X.indptr)
    live = counts > 0
    feat = np.repeat(np.arange(sample.d_sae), counts)
    vals = torch.from_numpy(X.data).float()
    f_t = torch.from_numpy(feat)
    lo = torch.full((sample.d_sae,), math.inf).scatter_reduce_(0, f_t, vals, "amin")
    hi = torch.full((sample.d_sae,), -math.inf).scatter_reduce_(0, f_t, vals, "amax")
    width = torch.where(torch.from_numpy(live), (hi - lo) / bins, torch.zeros(()))
    safe = torch.where(width > 0, width, torch.ones_like(width))
    index = ((vals - lo[f_t]) / safe[f_t]).floor().long().clamp(0, bins - 1)
    heights = torch.bincount(f_t * bins + index, minlength=sample.d_sae * bins).view(sample.d_sae, bins)
    centres = lo.unsqueeze(1) + width.unsqueeze(1) * (torch.arange(bins) + 0.5)
    return (
        [heights[f].tolist() if live[f] else [] for f in range(sample.d_sae)],
        [centres[f].tolist() if live[f] else [] for f in range(sample.d_sae)],
    )
