"""sae.row_topk chooses what torch.topk chooses: the same values per row, every index a real one."""

from __future__ import annotations

import pytest
import torch

from sae.row_topk import (
    MASK_SHARE,
    STRIDED_BLOCK,
    above_zero,
    mask_entries,
    plan_block,
    row_kth_largest,
    row_topk_indices,
    row_topk_mask,
)


def assert_same_choice(scores: torch.Tensor, k: int) -> None:
    got = row_topk_indices(scores, k)
    want = scores.topk(k, dim=-1, sorted=False).values
    assert got.shape == (scores.shape[0], k)
    assert all(len(set(row.tolist())) == k for row in got)  # k distinct latents a row
    torch.testing.assert_close(
        scores.gather(1, got).sort(-1).values, want.sort(-1).values, rtol=0, atol=0, equal_nan=True
    )


@pytest.mark.parametrize(("n", "k"), [(1024, 4), (2048, 16), (512, 8), (4096, 3)])
def test_random_rows(n, k):
    assert plan_block(n, k) is not None  # the block-wise plan is what is tested
    g = torch.Generator().manual_seed(n + k)
    assert_same_choice(torch.randn(37, n, generator=g), k)


@pytest.mark.parametrize(("k", "layout"), [(8, "contiguous"), (16, "strided")])
def test_winners_crowded_into_one_block_and_ties(k, layout):
    assert (plan_block(1024, k) <= STRIDED_BLOCK) == (layout == "strided")
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(7, 1024, generator=g)
    scores[0, 64:96] += 10.0  # the whole top k of row 0 in one contiguous block
    scores[1] = 0.0  # a row of ties: any k of them
    scores[2, ::2] = 1.5  # ties at the cut
    scores[3, :] = scores[3, :].round()  # many small ties
    scores[4, ::128] += 10.0  # eight winners in one strided group
    scores[5, :64] = 3.0  # maxima tie across blocks
    assert_same_choice(scores, k)


@pytest.mark.parametrize("k", [4, 16])  # contiguous and strided blocks
def test_nan_and_infinite_rows_take_torchs_semantics(k):
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 1024, generator=g)
    scores[0, 5] = float("nan")
    scores[1, :1022] = float("-inf")  # two finite entries: -inf ones are chosen too
    scores[2, 7] = float("inf")
    assert plan_block(1024, k) is not None
    got = row_topk_indices(scores, k)
    want = scores.topk(k, dim=-1, sorted=False).indices
    torch.testing.assert_close(
        scores.gather(1, got).sort(-1).values, scores.gather(1, want).sort(-1).values, equal_nan=True
    )


@pytest.mark.parametrize(("n", "k"), [(450, 64), (580, 64), (100, 99), (3, 1)])
def test_dense_choices_come_from_the_mask(n, k):
    """No block plan and k ≥ n/MASK_SHARE: the indices are the mask's (AuxK's choice among the dead)."""
    assert plan_block(n, k) is None and k * MASK_SHARE >= n
    g = torch.Generator().manual_seed(n)
    scores = torch.randn(33, n, generator=g)
    assert_same_choice(scores, k)
    scores[0] = 0.0  # ties: rows topk takes again
    scores[1, : n // 2] = float("nan")
    assert_same_choice(scores, k)


def test_plans_fall_back_where_blocks_do_not_pay():
    assert plan_block(64, 4) is None  # blocks of 2: torch.topk
    assert plan_block(1000, 4) == 8  # the widest power of two dividing n with 8 blocks per chosen latent
    assert plan_block(8192, 32) == 32
    assert plan_block(8192, 2048) is None
    scores = torch.randn(5, 64)
    assert_same_choice(scores, 4)


def test_topk_family_uses_it_and_matches_the_dense_path():
    """A TopK SAE wide enough for the block plan: the fused path still equals the dense reference."""
    from sae.architectures import sae_class

    cls = sae_class("topk")
    torch.manual_seed(0)
    sparse = cls(cls.config_class(d_in=16, d_sae=1024, k=4, kernel="sparse")).train()
    dense = cls(cls.config_class(d_in=16, d_sae=1024, k=4, kernel="dense")).train()
    dense.load_state_dict(sparse.state_dict())
    x = torch.randn(32, 16)
    dead = torch.zeros(1024, dtype=torch.bool)
    dead[::4] = True
    outs, grads = [], []
    for sae in (sparse, dense):
        out = sae(x, dead=dead)
        sum(out.losses.values()).backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in sae.named_parameters()})
    reference = x - sparse.b_dec.detach()
    pre = reference @ sparse.W_enc.detach() + sparse.b_enc.detach()
    want = pre.topk(4, dim=-1).values.relu().sort(-1).values
    got = outs[0].codes.detach().topk(4, dim=-1).values.sort(-1).values
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(outs[0].x_hat, outs[1].x_hat, atol=1e-5, rtol=1e-5)
    for name in grads[1]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-5)


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The reference: torch.topk's indices scattered into a mask."""
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, scores.topk(k, dim=-1, sorted=False).indices, True)


@pytest.mark.parametrize(("rows", "n", "k"), [(37, 450, 64), (5, 64, 1), (9, 100, 99), (3, 10, 10), (4, 10, 0)])
def test_mask_is_topks_mask_on_distinct_values(rows, n, k):
    g = torch.Generator().manual_seed(rows * n + k)
    scores = torch.randn(rows, n, generator=g)
    assert torch.equal(row_topk_mask(scores, k), topk_mask(scores, k))


def test_mask_leaves_the_columns_past_eligible_out():
    g = torch.Generator().manual_seed(3)
    block = torch.randn(20, 512, generator=g)
    block[:, 450:] += 100.0  # padding columns would win every row were they eligible
    got = row_topk_mask(block, 64, eligible=450)
    assert not got[:, 450:].any()
    assert torch.equal(got[:, :450], topk_mask(block[:, :450], 64))


def test_mask_ties_and_nan_hold_exactly_k_a_row_like_topk():
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(6, 300, generator=g)
    scores[0] = 0.0  # a row of ties: any k of them
    scores[1, ::3] = 2.0  # 100 ties at the cut
    scores[2] = scores[2].round()  # many small ties
    scores[3, 7] = float("nan")  # NaN ranks above every number (topk's semantics): chosen
    scores[4, :50] = float("nan")  # more NaN than k: k of them
    scores[5, :] = float("-inf")
    k = 40
    got = row_topk_mask(scores, k)
    assert torch.equal(got.sum(1), torch.full((6,), k))
    want = scores.topk(k, dim=-1, sorted=False).values.sort(-1).values
    chosen = scores[got].view(6, k).sort(-1).values  # rows keep their order under boolean indexing
    torch.testing.assert_close(chosen, want, rtol=0, atol=0, equal_nan=True)
    assert got[3, 7] and got[4, :50].sum() == k


def test_mask_split_across_threads_matches_one_thread(monkeypatch):
    """Above SPLIT_ENTRIES the rows go to torch's threads in chunks: the same mask as one chunk."""
    import sae.row_topk as rt

    g = torch.Generator().manual_seed(5)
    scores = torch.randn(301, 200, generator=g)
    monkeypatch.setattr(rt, "SPLIT_ENTRIES", 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        split = row_topk_mask(scores, 25)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(split, topk_mask(scores, 25))


def test_mask_falls_back_to_topk_for_other_dtypes_and_rejects_bad_k():
    scores = torch.randn(8, 96, dtype=torch.bfloat16)
    assert row_kth_largest(scores, 5) is None
    assert torch.equal(row_topk_mask(scores, 5), topk_mask(scores, 5))
    with pytest.raises(ValueError, match="k ≤ eligible"):
        row_topk_mask(scores, 50, eligible=40)


def test_above_zero_and_mask_entries_are_torchs():
    """numpy's comparison and flatnonzero on CPU give ``> 0`` and ``nonzero`` exactly: NaN not
    above zero, entries row-major; other dtypes and strided masks take torch's own."""
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(37, 53, generator=gen)
    scores[3, 7], scores[4, :] = float("nan"), -1.0  # a NaN, and a row with nothing above 0
    for t in (scores, scores.double(), scores.bfloat16(), scores.t()):
        assert torch.equal(above_zero(t), t > 0)
    for mask in (scores > 0, (scores > 0).t(), torch.zeros(3, 4, dtype=torch.bool), scores > 9):
        rows, cols = mask_entries(mask)
        want_rows, want_cols = mask.nonzero(as_tuple=True)
        assert torch.equal(rows, want_rows) and torch.equal(cols, want_cols) and rows.dtype == torch.long
