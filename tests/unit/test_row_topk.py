"""sae.row_topk chooses what torch.topk chooses: the same values per row, every index a real one."""

from __future__ import annotations

import pytest
import torch

from sae.row_topk import plan_block, row_topk_indices


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


def test_winners_crowded_into_one_block_and_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 1024, generator=g)
    scores[0, 64:96] += 10.0  # the whole top k of row 0 in one block
    scores[1] = 0.0  # a row of ties: any k of them
    scores[2, ::2] = 1.5  # ties at the cut
    scores[3, :] = scores[3, :].round()  # many small ties
    assert_same_choice(scores, 8)


def test_nan_and_infinite_rows_take_torchs_semantics():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 1024, generator=g)
    scores[0, 5] = float("nan")
    scores[1, :1022] = float("-inf")  # two finite entries: -inf ones are chosen too
    scores[2, 7] = float("inf")
    assert plan_block(1024, 4) is not None
    got = row_topk_indices(scores, 4)
    want = scores.topk(4, dim=-1, sorted=False).indices
    torch.testing.assert_close(
        scores.gather(1, got).sort(-1).values, scores.gather(1, want).sort(-1).values, equal_nan=True
    )


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
