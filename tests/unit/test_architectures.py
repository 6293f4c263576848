"""Each SAE family against a naive reference, and its losses on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from sae.architectures import family, sae_class, trainable
from sae.architectures.base import EncoderPass, Selection, auxk_loss, geometric_median
from sae.architectures.feature_choice import demand, largest_remainder
from sae.architectures.mutual_choice import global_topk_indices
from sae.architectures.vsae import gaussian_kl
from sae.errors import SaelabError

D, F = 8, 32


def make(arch, **kw):
    cls = sae_class(arch)
    base = {"d_in": D, "d_sae": F}
    if family(arch).has_k:
        base["k"] = 4
    torch.manual_seed(0)
    return cls(cls.config_class(**{**base, **kw}))


def naive_topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Per row, loop over latents in order of decreasing value and keep the first k, ReLU'd."""
    out = torch.zeros_like(pre)
    for r in range(pre.shape[0]):
        for j in sorted(range(pre.shape[1]), key=lambda j: -float(pre[r, j]))[:k]:
            out[r, j] = max(float(pre[r, j]), 0.0)
    return out


def test_registry_knows_every_family_and_refuses_others():
    for arch in (*trainable(), "jumprelu"):
        assert sae_class(arch).architecture == arch
    with pytest.raises(SaelabError, match="unknown SAE architecture 'gatd'"):
        sae_class("gatd")


def test_k_larger_than_d_sae_is_refused():
    cls = sae_class("topk")
    with pytest.raises(ValueError, match=r"k \(64\) is larger than d_sae \(32\)"):
        cls.config_class(d_in=D, d_sae=F, k=64)
    with pytest.raises(ValueError):
        cls.config_class(d_in=D, d_sae=F, k=0)


def test_topk_matches_the_naive_rule_and_yields_indices_and_values():
    sae = make("topk")
    pre = torch.randn(10, F)
    sel = sae.select(pre)
    torch.testing.assert_close(sel.dense(F), naive_topk(pre, 4))
    assert sel.indices.shape == (10, 4) and sel.topk_values.shape == (10, 4)


@pytest.mark.parametrize("per_token", [True, False])
def test_sparse_decoder_equals_the_dense_product_with_gradients(per_token):
    torch.manual_seed(0)
    W = torch.randn(F, D, requires_grad=True)
    pre = torch.randn(12, F, requires_grad=True)
    keep = pre.detach() > 1.0
    keep[3] = False
    rows, lat = keep.nonzero(as_tuple=True)
    perm = torch.randperm(len(rows))

    def selection():
        if per_token:
            v, i = pre.topk(5, dim=-1)
            return Selection.from_topk(v, i)
        # uneven rows, unsorted coordinates, one empty row
        return Selection(rows=rows[perm], latents=lat[perm], values=pre[rows[perm], lat[perm]], n_rows=12)

    target = torch.randn(12, D)
    sparse = selection().decode(W)
    (sparse - target).pow(2).sum().backward()
    g_sparse = (W.grad.clone(), pre.grad.clone())
    W.grad, pre.grad = None, None
    sel = selection()
    dense = sel.dense(F) @ W
    (dense - target).pow(2).sum().backward()
    torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(g_sparse[0], W.grad)
    torch.testing.assert_close(g_sparse[1], pre.grad)
    assert torch.equal(sel.fire_counts(F), (sel.dense(F) > 0).sum(0))


def test_mutual_choice_selects_exactly_k_times_b():
    sae = make("mutual_choice")
    pre = torch.randn(16, F).abs() + 0.01  # all positive: the budget is used in full
    codes = sae.select(pre).dense(F)
    assert int((codes > 0).sum()) == 4 * 16
    threshold = pre.flatten().sort(descending=True).values[4 * 16 - 1]
    assert torch.equal(codes > 0, pre >= threshold)  # the global top-(k·B), nothing else
    torch.testing.assert_close(codes, pre * (pre >= threshold))
    counts = (codes > 0).sum(1)
    assert counts.min() != counts.max()  # tokens get different numbers of latents
    # negative entries are never selected, even when the budget is not filled
    pre[:, :] = -1.0
    pre[0, 0] = 2.0
    assert sae.select(pre).values.tolist() == [2.0]


def test_global_topk_pruning_is_exact_even_when_one_row_holds_most_winners():
    torch.manual_seed(1)
    pre = torch.randn(64, 256)
    for budget in (64, 640):
        ref = set(pre.flatten().topk(budget).indices.tolist())
        assert set(global_topk_indices(pre, budget).tolist()) == ref
    pre[5] += 10.0  # row 5 holds far more than 4·budget/B winners: the fallback must catch it
    ref = set(pre.flatten().topk(200).indices.tolist())
    assert set(global_topk_indices(pre, 200).tolist()) == ref


def test_mutual_choice_threshold_tracks_the_smallest_selected_value():
    sae = make("mutual_choice", threshold_decay=0.5).train()
    pre = torch.randn(16, F).abs() + 0.01
    sae.observe(pre, sae.select(pre))
    first = pre.flatten().topk(64).values.min()
    assert torch.allclose(sae.threshold, first.expand(F))
    pre2 = pre * 2
    sae.observe(pre2, sae.select(pre2))
    assert torch.allclose(sae.threshold, (0.5 * first + 0.5 * 2 * first).expand(F))
    sae.eval()
    x = torch.randn(5, D)
    p = sae.pre_acts(x)
    torch.testing.assert_close(sae.encode(x), p.relu() * (p > sae.threshold))
    # the batch-free rule gives each row the same codes whatever else is in the batch
    torch.testing.assert_close(sae.encode(x[:1]), sae.encode(x)[:1])


@pytest.mark.parametrize("capacity", ["uniform", "zipf"])
def test_feature_choice_gives_each_latent_at_most_its_capacity(capacity):
    sae = make("feature_choice", capacity=capacity)
    pre = torch.randn(64, F)
    m = sae.capacities(64)
    assert int(m.sum()) == 4 * 64 and int(m.max()) <= 64
    codes = sae.select(pre).dense(F)
    per_latent = (codes > 0).sum(0)
    assert (per_latent <= m).all()
    for j in range(F):  # naive: latent j takes its own m_j largest tokens, positive ones only
        order = sorted(range(64), key=lambda r: -float(pre[r, j]))[: int(m[j])]
        expected = {r for r in order if pre[r, j] > 0}
        assert set(codes[:, j].nonzero().flatten().tolist()) == expected
        torch.testing.assert_close(codes[list(expected), j], pre[list(expected), j])
    positive = pre.abs() + 0.01  # all positive: each latent fills its capacity exactly
    assert torch.equal((sae.select(positive).dense(F) > 0).sum(0), m)
    if capacity == "uniform":
        assert int(m.max()) - int(m.min()) <= 1
    else:
        assert m[0] > m[-1]  # rank 1 gets more than rank d_sae


def test_zipf_capacities_follow_the_formula_and_the_density_ranking():
    sae = make(
        "feature_choice", capacity="zipf", zipf_alpha=1.0, zipf_beta=2.0, rerank_every=1, density_decay=0.0
    ).train()
    ranks = torch.arange(1, F + 1, dtype=torch.float32)
    expected = (ranks + 2.0).pow(-1.0)
    torch.testing.assert_close(sae.shares(), expected / expected.sum())
    # after one step the densest latent (by the inference rule) gets rank 1 and the largest capacity
    x = torch.randn(256, D)
    with torch.no_grad():
        sae.b_enc[7] = 5.0  # latent 7 fires on every token
    sae(x)
    assert int(sae.rank[7]) == 1
    assert int(sae.capacities(256).argmax()) == 7


def test_feature_choice_thresholds_are_the_smallest_selected_activation():
    sae = make("feature_choice", capacity="uniform", density_decay=0.0, threshold_decay=0.0).train()
    pre = torch.randn(64, F).abs() + 0.01
    sae.observe(pre, sae.select(pre))
    m = sae.capacities(64)
    for j in range(F):
        assert float(sae.threshold[j]) == float(pre[:, j].sort(descending=True).values[int(m[j]) - 1])
    # the inference rule fires latent j where pre > θ_j: on this batch, m_j − 1 tokens each
    assert torch.equal((sae.inference_encode(pre) > 0).sum(0), m - 1)
    # the running density is the demand: how often each latent is in the batch's global top-(k·B)
    cut = pre.flatten().sort(descending=True).values[4 * 64 - 1]
    torch.testing.assert_close(sae.density, (pre >= cut).float().mean(0))
    # a latent with fewer positive activations than its capacity takes them all: θ = 0
    pre[:, 2] = -1.0
    pre[0, 2] = 0.5
    sae.observe(pre, sae.select(pre))
    assert float(sae.threshold[2]) == 0.0


def test_demand_is_the_unconstrained_global_allocation():
    torch.manual_seed(4)
    pre = torch.randn(32, 16)
    got = demand(pre, 3)
    cut = pre.flatten().sort(descending=True).values[3 * 32 - 1]
    torch.testing.assert_close(got, (pre >= cut).float().mean(0))
    assert float(got.sum()) == pytest.approx(3.0)


def test_largest_remainder_is_exact_and_capped():
    out = largest_remainder(torch.tensor([0.7, 0.2, 0.1]), total=10, cap=5)
    assert out.tolist() == [5, 3, 2]  # 7 capped at 5; the excess goes to the others
    assert int(largest_remainder(torch.rand(100), 1234, 40).sum()) == 1234
    assert int(largest_remainder(torch.rand(100), 1234, 40).max()) <= 40


def test_gsae_with_beta_zero_is_topk():
    topk, gsae = make("topk"), make("gsae", beta=0.0)
    gsae.load_state_dict(topk.state_dict())
    x, g = torch.randn(20, D), torch.randn(20, D)
    torch.testing.assert_close(gsae(x, g=g).codes, topk(x).codes)
    torch.testing.assert_close(make("gsae", beta=2.0)(x).codes, make("topk")(x).codes)  # no gradient: TopK
    torch.testing.assert_close(make("gsae", beta=2.0).encode(x), make("topk").encode(x))  # inference: TopK


def test_gsae_selection_follows_the_gradient():
    sae = make("gsae", beta=5.0)
    x = torch.randn(50, D)
    g1, g2 = torch.randn(50, D), torch.randn(50, D)
    c0, c1, c2 = sae(x).codes, sae(x, g=g1).codes, sae(x, g=g2).codes
    assert not torch.equal(c1 > 0, c2 > 0) and not torch.equal(c0 > 0, c1 > 0)
    # naive reference: score z_i + β z_i |d_i · g| latent by latent; values are z
    pre = sae.pre_acts(x).detach()
    ref = torch.zeros_like(pre)
    for r in range(50):
        score = [float(pre[r, i] + 5.0 * pre[r, i] * abs(float(sae.W_dec[i].detach() @ g1[r]))) for i in range(F)]
        for i in sorted(range(F), key=lambda i: -score[i])[:4]:
            ref[r, i] = max(float(pre[r, i]), 0.0)
    torch.testing.assert_close(c1.detach(), ref)
    # scaling g by c is the same as scaling β by c
    other = make("gsae", beta=2.5)
    torch.testing.assert_close(other(x, g=2 * g1).codes, c1)


def test_auxk_on_a_hand_computed_case():
    W_dec = torch.eye(3, 2)  # latents 0 and 1 decode to the axes, latent 2 to nothing
    pre = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 4.0]])
    residual = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    dead = torch.tensor([True, True, False])
    # k_aux = 1 among dead {0, 1}: row 0 picks latent 1 (3.0) → ê = (0, 3); row 1 picks latent 0 (0.5) → (0.5, 0)
    # ‖e − ê‖² = (1 + 4) + (0.25 + 4) = 9.25; ē = (0.5, 1.5), ‖e − ē‖² = 0.25+0.25+0.25+0.25 = 1
    assert float(auxk_loss(pre, residual, W_dec, dead, k_aux=1)) == pytest.approx(9.25)
    assert auxk_loss(pre, residual, W_dec, torch.zeros(3, dtype=torch.bool), 1) == 0
    # one normalisation (OpenAI's): fewer dead latents than k_aux are all used, with no
    # SAELens min(n_dead / k_aux, 1) factor (the old code halved this to 2.625)
    # only latent 0: ê = (1, 0) and (0.5, 0): ‖e − ê‖² = 1 + 4.25 = 5.25, over ‖e − ē‖² = 1
    one = torch.tensor([True, False, False])
    assert float(auxk_loss(pre, residual, W_dec, one, k_aux=2)) == pytest.approx(5.25)


def test_topk_forward_adds_aux_k_weighted_by_its_coefficient():
    sae = make("topk", aux_coefficient=0.25)
    x = torch.randn(16, D)
    dead = torch.zeros(F, dtype=torch.bool)
    dead[:10] = True
    out = sae(x, dead=dead)
    pre = sae.pre_acts(x)
    expected = 0.25 * auxk_loss(pre, x - out.x_hat, sae.W_dec, dead, D // 2)
    torch.testing.assert_close(out.losses["aux_k"], expected)
    assert "aux_k" not in make("topk", aux_coefficient=0.0)(x, dead=dead).losses


def test_aux_zipf_targets_underused_latents():
    sae = make("feature_choice", capacity="uniform", underused_fraction=0.5)
    expected = sae.expected_density()  # k / d_sae each
    torch.testing.assert_close(expected, torch.full((F,), 4 / F))
    sae.density.copy_(expected)
    sae.density[3] = 0.4 * expected[3]  # under-used
    sae.density[5] = 0.0  # dead
    sae.density[7] = 0.6 * expected[7]  # fine
    assert sae.underused().nonzero().flatten().tolist() == [3, 5]
    plain = make("feature_choice", capacity="uniform", aux_loss="k")
    plain.density.copy_(sae.density)
    assert plain.underused().nonzero().flatten().tolist() == [5]


def test_aux_zipf_on_a_hand_computed_case():
    """Zipf capacities over 4 latents (α=1, β=0): shares ∝ 1/r = 12/25, 6/25, 4/25, 3/25.

    With k = 1 the expected densities are those shares; latent 0 (rank 1) fires at 0.2 <
    0.5·0.48 and latent 3 (rank 4) at 0.05 < 0.5·0.12, so both are under-used; latents 1 and
    2 are fine. k_aux = 1: each row's largest ReLU'd pre-activation among {0, 3} decodes
    the residual.
    """
    cls = sae_class("feature_choice")
    sae = cls(
        cls.config_class(
            d_in=2, d_sae=4, k=1, k_aux=1, zipf_alpha=1.0, zipf_beta=0.0, underused_fraction=0.5, aux_coefficient=0.5
        )
    )
    torch.testing.assert_close(sae.shares(), torch.tensor([12, 6, 4, 3]) / 25.0)
    sae.density.copy_(torch.tensor([0.2, 0.2, 0.1, 0.05]))
    assert sae.underused().tolist() == [True, False, False, True]
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.6, 0.8]]))
    pre = torch.tensor([[2.0, 9.0, 9.0, 1.0], [0.5, 9.0, 9.0, 3.0]])
    residual = torch.tensor([[2.0, 0.0], [2.0, 4.0]])
    # row 0 picks latent 0 (2.0) → ê = (2, 0), error 0; row 1 picks latent 3 (3.0) → ê = (1.8, 2.4),
    # error 0.04 + 2.56 = 2.6. ē = (2, 2): ‖e − ē‖² = 4 + 4 = 8 (no extra factor).
    x_hat = torch.zeros(2, 2)
    enc = EncoderPass(x=residual, shift=None, sae_in=residual, pre=pre, W_enc=sae.W_enc, b_enc=sae.b_enc, sparse=False)
    losses = sae.losses(residual, x_hat, enc, dead=None)
    assert float(losses["aux_zipf"].detach()) == pytest.approx(0.5 * 2.6 / 8)
    assert float(losses["mse"]) == pytest.approx((4 + 4 + 16) / 2)


def test_gaussian_kl_on_hand_computed_cases():
    assert gaussian_kl(torch.tensor(0.0), torch.tensor(0.0)) == 0  # N(0,1) to itself
    # μ=1, σ²=e: ½(e + 1 − 1 − 1) = (e − 1)/2
    assert float(gaussian_kl(torch.tensor(1.0), torch.tensor(1.0))) == pytest.approx((math.e - 1) / 2)
    # μ=2, σ²=1/4: ½(1/4 + 4 − 1 + ln 4)
    assert float(gaussian_kl(torch.tensor(2.0), torch.tensor(math.log(0.25)))) == pytest.approx(
        0.5 * (0.25 + 4 - 1 + math.log(4))
    )
    fixed = make("vsae", variance="fixed", fixed_sigma=1.0, kl_coefficient=2.0)
    x = torch.randn(6, D)
    mu = fixed.pre_acts(x)
    torch.testing.assert_close(fixed(x).losses["kl"], 2.0 * (0.5 * mu.pow(2)).sum(-1).mean())
    learned = make("vsae", kl_coefficient=0.5)  # W_var = 0, b_var = −4: log σ² = −4 everywhere
    mu = learned.pre_acts(x)
    expected = 0.5 * (0.5 * (math.exp(-4) + mu.pow(2) - 1 + 4)).sum(-1).mean()
    torch.testing.assert_close(learned(x).losses["kl"], expected)


def test_vsae_samples_in_training_and_uses_mu_at_inference():
    sae = make("vsae").train()
    x = torch.randn(8, D)
    torch.manual_seed(1)
    a = sae(x).codes
    torch.manual_seed(2)
    b = sae(x).codes
    assert not torch.equal(a, b)
    sae.eval()
    topk = make("topk")
    topk.load_state_dict({k: v for k, v in sae.state_dict().items() if not k.endswith("_var")})
    torch.testing.assert_close(sae.encode(x), topk.encode(x))
    torch.testing.assert_close(sae(x).codes, topk(x).codes)  # eval forward: no sampling
    no_aux = make("vsae", aux_coefficient=0.0)
    assert "aux_k" not in no_aux(x, dead=torch.ones(F, dtype=torch.bool)).losses
    assert "aux_k" in make("vsae")(x, dead=torch.ones(F, dtype=torch.bool)).losses


def test_gsae_inference_rule_has_no_gradient_and_the_variant_uses_it():
    """The lab's g-SAE inference rule is TopK on z; ``reconstruct_with_gradient`` applies the
    training rule z + β·z⊙|W_dec g| at inference."""
    sae = make("gsae", beta=1.0, k=1)
    x = torch.randn(6, D)
    g = torch.randn(6, D) * 10
    pre = sae.pre_acts(x)
    plain, _ = sae.reconstruct(x)
    assert torch.equal(plain.dense(F), make("topk", k=1).inference_encode(pre))
    with_g, x_hat = sae.reconstruct_with_gradient(x, g)
    expected = sae.select(pre, g)
    torch.testing.assert_close(with_g.dense(F), expected.dense(F))
    torch.testing.assert_close(x_hat, expected.dense(F) @ sae.W_dec + sae.b_dec)
    assert not torch.equal(with_g.dense(F), plain.dense(F))  # the gradient term changes some choices


def test_vsae_paper_setting_var_flag_0():
    """The paper's code with var_flag=0: no sampling in training (z = μ), σ = 1, KL = ½Σ ReLU(μ)²
    times the mean decoder row norm, AuxK off."""
    sae = make(
        "vsae", sample=False, variance="fixed", kl_on="relu_mu", kl_scale="decoder_norm", aux_coefficient=0.0
    ).train()
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, F)[:, None])  # rows of varied norm
    x = torch.randn(8, D)
    torch.manual_seed(1)
    a = sae(x, dead=torch.ones(F, dtype=torch.bool))
    torch.manual_seed(2)
    torch.testing.assert_close(sae(x).codes, a.codes)  # deterministic: nothing sampled
    topk = make("topk")
    topk.load_state_dict(sae.state_dict())
    torch.testing.assert_close(a.codes, topk(x).codes)  # training codes are TopK of μ
    mu = sae.pre_acts(x)
    norm = sae.W_dec.norm(dim=1).mean()
    torch.testing.assert_close(a.losses["kl"], (0.5 * mu.relu().pow(2)).sum(-1).mean() * norm)
    assert "aux_k" not in a.losses
    # the defaults are unchanged: sampling, no decoder-norm factor
    default = make("vsae")
    assert default.cfg.sample and default.cfg.kl_scale == "none"


def test_relu_penalty_weights_by_decoder_norm():
    sae = make("relu", l1_coefficient=0.5)
    with torch.no_grad():
        sae.W_dec.mul_(3.0)
    x = torch.randn(4, D)
    out = sae(x)
    expected = 0.5 * (out.codes * sae.W_dec.norm(dim=1)).sum(-1).mean()
    torch.testing.assert_close(out.losses["l1"], expected)
    assert not sae.cfg.unit_norm_decoder and not sae.cfg.apply_b_dec_to_input
    torch.testing.assert_close(out.codes, (x @ sae.W_enc + sae.b_enc).relu())


def test_unit_norm_decoder_and_parallel_gradient_removed():
    sae = make("topk")
    x = torch.randn(32, D)
    sum(sae(x).losses.values()).backward()
    sae.remove_parallel_gradient()
    w = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    assert (sae.W_dec.grad * w).sum(1).abs().max() < 1e-5
    with torch.no_grad():
        sae.W_dec.mul_(2)
    sae.normalize_decoder()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(F))
    relu = make("relu")  # its decoder stays free
    with torch.no_grad():
        relu.W_dec.mul_(2)
    before = relu.W_dec.clone()
    relu.normalize_decoder()
    assert torch.equal(relu.W_dec, before)


def test_init_ties_encoder_to_decoder_and_geometric_median():
    sae = make("topk")
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(F))
    torch.testing.assert_close(make("relu").W_dec.norm(dim=1), torch.full((F,), 0.1))
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
    med = geometric_median(pts)
    # the geometric median resists the outlier, unlike the mean (2.75, 2.75)
    assert med.norm() < 1.0
    obj = lambda p: (pts - p).norm(dim=1).sum()  # noqa: E731
    assert obj(med) <= obj(pts.mean(0)) and all(obj(med) <= obj(med + d) + 1e-6 for d in 0.01 * torch.randn(20, 2))


@pytest.mark.parametrize("arch", trainable())
def test_folding_the_input_scale_keeps_reconstructions(arch):
    sae = make(arch).train()
    for _ in range(2):
        sae(torch.randn(64, D) * 3.7)  # thresholds and densities as after training
    sae.eval()
    x = torch.randn(12, D)
    scale = 3.7
    before_codes = sae.encode(x * scale)
    before = sae.decode(before_codes) / scale
    sae.fold_input_scale(scale)
    torch.testing.assert_close(sae.encode(x), before_codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.decode(sae.encode(x)), before, atol=1e-5, rtol=1e-5)
    _, x_hat = sae.reconstruct(x)
    torch.testing.assert_close(x_hat, before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kl_on", ["mu", "relu_mu"])
@pytest.mark.parametrize("variance", ["learned", "fixed"])
def test_vsae_fused_sampling_and_kl_match_plain_autograd(kl_on, variance):
    sae = make("vsae", kl_on=kl_on, variance=variance, fixed_sigma=0.5, kl_coefficient=0.3).train()
    with torch.no_grad():
        sae.b_dec.normal_()
        if variance == "learned":
            sae.W_var.normal_(0, 0.1)
    x = torch.randn(12, D)
    torch.manual_seed(7)
    out = sae(x, dead=torch.ones(F, dtype=torch.bool))
    sum(out.losses.values()).backward()
    fused = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    # the same computation in plain autograd, with the same noise
    torch.manual_seed(7)
    sae_in = x - sae.b_dec
    mu = sae_in @ sae.W_enc + sae.b_enc
    logvar = (sae_in @ sae.W_var + sae.b_var) if variance == "learned" else torch.full_like(mu, 2 * math.log(0.5))
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    kl = gaussian_kl(mu.relu() if kl_on == "relu_mu" else mu, logvar).sum(-1).mean()
    torch.testing.assert_close(out.losses["kl"], 0.3 * kl)
    values, indices = z.topk(4, dim=-1)
    x_hat = Selection.from_topk(values.relu(), indices).dense(F) @ sae.W_dec + sae.b_dec
    torch.testing.assert_close(out.x_hat, x_hat)
    aux = sae.cfg.aux_coefficient * auxk_loss(z, x - x_hat, sae.W_dec, torch.ones(F, dtype=torch.bool), D // 2)
    ((x_hat - x).pow(2).sum(-1).mean() + 0.3 * kl + aux).backward()
    for name, p in sae.named_parameters():
        torch.testing.assert_close(fused[name], p.grad, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
