"""Per-row top-k of a wide score matrix, exact and about twice as fast as ``torch.topk`` on CPU.

TopK's selection reads every pre-activation of a ``[batch, d_sae]`` matrix; ATen's CPU
``topk`` copies each row into (value, index) pairs and heap-sorts them, ~2.6 ns an entry:
a sixth of the encoder GEMM at d_sae 8192. Here a row is cut into blocks of ``block``
entries and only the k blocks with the largest maxima are searched. Exact: an entry of the
row's top k lies in one of those blocks (were its block outside them, k other blocks'
maxima, k distinct entries, would be at least as large). Within those k·block entries,
only those reaching the cut (the k-th largest block maximum: at least k entries reach it)
are ranked, ~k+10 a row for Gaussian-like rows. Ties may resolve to other indices than
``torch.topk``'s (which promises no order among ties either); NaN rows, or anything the
plan does not fit, take ``torch.topk``. The k best blocks come from the k-th largest block
maximum (``row_kth_largest``, below), with ``torch.topk`` where maxima tie.

When k is a sizeable share of the row (AuxK: k_aux = d_in/2 among the dead columns), the
choice is wanted as a mask, and ``row_topk_mask`` finds each row's k-th largest value with
numpy's vectorised partition instead and compares against it. Masks are compared and
read out through numpy on CPU too (``above_zero``, ``mask_entries``): ATen's bool-producing
comparison and ``nonzero`` are several times slower there.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

#: a row is searched block-wise only when it has at least this many blocks per chosen entry
BLOCKS_PER_K = 8
#: narrower blocks make the block maxima pass no cheaper than ``torch.topk`` itself
MIN_BLOCK = 8
#: where no block plan fits and k is at least 1/MASK_SHARE of the row, the indices come from
#: ``row_topk_mask`` (k among 580-6,000: 0.6-0.9x ``torch.topk``'s time on one core)
MASK_SHARE = 16
#: blocks this narrow are strided column groups: ``amax`` over a short innermost dimension
#: runs ~10x slower than across rows (d_sae 1024, blocks of 8: 1.0 vs 0.1 ms on one core);
#: wider blocks stay contiguous, where the strided gather of their entries would cost more
STRIDED_BLOCK = 8


def above_zero(scores: torch.Tensor) -> torch.Tensor:
    """``scores > 0``; on CPU numpy's comparison, ~8x ATen's bool-producing one on one core
    (0.04 against 0.31 ms for 1024 x 640 float32). NaN is not above zero either way."""
    if scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64) and scores.is_contiguous():
        return torch.from_numpy(scores.detach().numpy() > 0)
    return scores > 0


def mask_entries(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask.nonzero(as_tuple=True)`` of a 2-D bool mask (row-major: sorted by row); on CPU
    numpy's ``flatnonzero``, ~7x ``torch.nonzero`` on one core."""
    if mask.device.type != "cpu" or not mask.is_contiguous():
        return mask.nonzero(as_tuple=True)
    flat = torch.from_numpy(np.flatnonzero(mask.numpy()))
    n = mask.shape[1]
    return flat.div(n, rounding_mode="floor"), flat.remainder(n)


def plan_block(n: int, k: int) -> int | None:
    """The block width for rows of ``n`` entries and a top ``k`` (a power of two dividing n), or None."""
    block = 1
    while block * 2 * k * BLOCKS_PER_K <= n and n % (block * 2) == 0:
        block *= 2
    return block if block >= MIN_BLOCK else None


def _top_blocks(maxima: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, k]`` indices of each row's k largest block maxima and ``[B, 1]`` the k-th of them:
    from numpy's partition (``row_kth_largest``) when the maxima reaching it are exactly k a
    row, else (ties, NaN) from ``torch.topk``."""
    b = maxima.shape[0]
    cut = row_kth_largest(maxima, k)
    if cut is not None:
        reach = maxima >= cut[:, None]
        if int(torch.count_nonzero(reach)) == b * k:
            return mask_entries(reach)[1].view(b, k), cut[:, None]  # row-major: k a row
    top_max, top_blocks = maxima.topk(k, dim=-1, sorted=False)
    return top_blocks, top_max.amin(-1, keepdim=True)


@torch.no_grad()
def row_topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, k]`` column indices of each row's k largest ``scores`` (no order within a row):
    the indices of ``scores.topk(k, dim=-1, sorted=False)``, up to ties."""
    if scores.dim() != 2 or scores.device.type != "cpu" or not scores.is_contiguous():
        return scores.topk(k, dim=-1, sorted=False).indices
    b, n = scores.shape
    block = plan_block(n, k)
    if block is None or b == 0:
        if b > 0 and 0 < k < n <= k * MASK_SHARE and scores.dtype in (torch.float32, torch.float64):
            # a dense choice: the mask holds exactly k a row, so its row-major nonzeros are k a row
            return mask_entries(row_topk_mask(scores, k))[1].view(b, k)
        return scores.topk(k, dim=-1, sorted=False).indices
    n_blocks = n // block
    strided = block <= STRIDED_BLOCK
    # strided: block j holds columns j, j + n_blocks, ...: the maxima reduce across whole rows of the view
    maxima = scores.view(b, block, n_blocks).amax(1) if strided else scores.view(b, n_blocks, block).amax(-1)
    top_blocks, cut = _top_blocks(maxima, k)  # k block maxima reach the cut: every winner does too
    if strided:
        # [B, block, k]: entry t of each chosen block, from an index that only repeats top_blocks
        cand = scores.view(b, block, n_blocks).gather(2, top_blocks[:, None, :].expand(b, block, k)).view(b, block * k)
    else:
        flat_blocks = (torch.arange(b)[:, None] * n_blocks + top_blocks).view(-1)
        cand = scores.view(b * n_blocks, block).index_select(0, flat_blocks).view(b, k * block)
    rows, at = mask_entries(cand >= cut)  # sorted by row
    counts = torch.bincount(rows, minlength=b)
    if bool((counts < k).any()) or bool(torch.isneginf(cut).any()):  # NaN or -inf at the cut: torch's semantics
        return scores.topk(k, dim=-1, sorted=False).indices
    width = int(counts.max())
    starts = counts.cumsum(0) - counts
    slots = rows * width + torch.arange(rows.numel()) - starts[rows]
    padded = cand.new_full((b * width,), float("-inf")).index_put_((slots,), cand[rows, at])
    if strided:
        columns = top_blocks[rows, at % k] + n_blocks * (at // k)
    else:
        columns = top_blocks[rows, at // block] * block + at % block
    where = torch.zeros(b * width, dtype=torch.long).index_put_((slots,), columns)
    best = padded.view(b, width).topk(k, dim=-1, sorted=False).indices
    return where.view(b, width).gather(1, best)


#: rows·columns from which ``row_kth_largest`` splits its rows across torch's intra-op threads
#: (numpy's partition releases the GIL; below this the thread hand-off costs more than it saves)
SPLIT_ENTRIES = 1 << 18


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="row_kth")


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of the parent's threads


def row_kth_largest(scores: torch.Tensor, k: int) -> torch.Tensor | None:
    """Each row's k-th largest value (``0 < k ≤ n``; NaN ranks above every number, as in
    ``torch.topk``), or None where numpy cannot take the tensor (another device or dtype).

    numpy's ``partition`` is an introselect on the raw values, vectorised on x86 (AVX2 /
    AVX-512), where ATen's ``topk`` copies each row into (value, index) pairs first: at
    AuxK's shapes (k_aux among a few hundred dead columns) it is 2-5x faster on one core.
    """
    if scores.device.type != "cpu" or scores.dtype not in (torch.float32, torch.float64):
        return None
    values = scores.detach().numpy()
    at = values.shape[1] - k

    def kth(rows: np.ndarray) -> np.ndarray:
        return np.partition(rows, at, axis=1)[:, at]

    threads = min(torch.get_num_threads(), values.shape[0])
    if threads > 1 and values.size >= SPLIT_ENTRIES:
        out = np.concatenate(list(_pool(threads).map(kth, np.array_split(values, threads))))
    else:
        out = kth(values)
    return torch.from_numpy(np.ascontiguousarray(out))


@torch.no_grad()
def row_topk_mask(scores: torch.Tensor, k: int, eligible: int | None = None) -> torch.Tensor:
    """``[B, width]`` bool mask of each row's k largest ``scores`` among its first ``eligible``
    columns (default: all; the columns after them are False): the mask ``torch.topk`` would
    scatter, without its (value, index) sort.

    The mask is "not below the row's k-th largest value", so NaN counts as chosen, as in
    ``torch.topk``, and every row holds at least k. One count tells whether every row holds
    exactly k; rows with more (ties at the k-th value, NaN at the cut) are taken again by
    ``torch.topk``, so the choice is always k entries a row that topk could have made.
    """
    b, width = scores.shape
    n = width if eligible is None else eligible
    if not 0 <= k <= n <= width:
        raise ValueError(f"row_topk_mask: need 0 ≤ k ≤ eligible ≤ width, got k={k}, eligible={n}, width={width}")
    candidates = scores[:, :n]
    kth = row_kth_largest(candidates, k) if 0 < k < n else None
    if kth is None:
        return _scattered_topk(candidates, k, width)
    mask = torch.lt(scores, kth[:, None]).logical_not_()
    mask[:, n:] = False
    if int(torch.count_nonzero(mask)) != b * k:  # some row holds more than k
        over = (torch.count_nonzero(mask, dim=1) != k).nonzero().squeeze(1)
        mask[over] = _scattered_topk(candidates.index_select(0, over), k, width)
    return mask


def _scattered_topk(candidates: torch.Tensor, k: int, width: int) -> torch.Tensor:
    """``torch.topk``'s choice of k among the ``[B, n]`` candidates as a ``[B, width]`` mask."""
    mask = torch.zeros(candidates.shape[0], width, dtype=torch.bool, device=candidates.device)
    if k > 0:
        mask.scatter_(1, candidates.topk(k, dim=-1, sorted=False).indices, True)
    return mask
