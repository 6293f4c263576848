"""Direct feature attribution reads each family's own pre-activation path
(``SparseAutoencoder.linear_encoder``): a Gated SAE's magnitude path against a dense reference."""

from __future__ import annotations

import pytest
import torch

from evals.attention import dfa, effective_bias
from sae.architectures import family
from sae.hooks import HookSpec

H, D_HEAD, T, D_SAE = 3, 4, 6, 10


def attention_case(seed: int = 0) -> dict[str, torch.Tensor]:
    """Causal softmax patterns [1, H, dst, src], values [1, src, H, d_head] and z = A v."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(1, H, T, T, generator=g).masked_fill(torch.ones(T, T).triu(1).bool(), -torch.inf)
    pattern = scores.softmax(-1)
    v = torch.randn(1, T, H, D_HEAD, generator=g)
    return {"pattern": pattern, "v": v, "z": torch.einsum("bhqs,bshd->bqhd", pattern, v)}


def gated(apply_b_dec: bool, d_in: int):
    entry = family("gated")
    torch.manual_seed(0)
    sae = entry.sae_class(entry.config_class(d_in=d_in, d_sae=D_SAE, apply_b_dec_to_input=apply_b_dec))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        sae.W_enc.normal_(0, 1, generator=g)
        for p in (sae.b_dec, sae.b_gate, sae.b_mag, sae.r_mag):
            p.normal_(0, 0.7, generator=g)
    return sae.eval()


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("head", [None, 1])
def test_gated_dfa_matches_the_dense_reference(apply_b_dec, head):
    parts = attention_case()
    spec = HookSpec(
        name="blocks.0.attn.hook_z" + (f"[{head}]" if head is not None else ""),
        tl_name="blocks.0.attn.hook_z",
        layer=0,
        site="attn.hook_z",
        head=head,
        shape=(H, D_HEAD),
    )
    sae = gated(apply_b_dec, spec.d_in)
    rows = spec.read(parts["z"])[0]  # [T, d_in]
    heads = [head] if head is not None else list(range(H))
    # the reference, written out: π_mag = (x − b_dec)(W_enc ⊙ exp(r_mag)) + b_mag
    w_mag = sae.W_enc.detach() * torch.exp(sae.r_mag.detach())[None, :]
    b_dec = sae.b_dec.detach() if apply_b_dec else torch.zeros(spec.d_in)
    pi_mag = (rows - b_dec) @ w_mag + sae.b_mag.detach()
    bias = sae.b_mag.detach() - b_dec @ w_mag
    with torch.no_grad():
        torch.testing.assert_close(sae.pre_acts(rows), pi_mag)
        torch.testing.assert_close(effective_bias(sae), bias)
        for feature in (0, 4, 9):
            for dst in (0, 3, T - 1):
                got = dfa(parts, sae, spec, feature, dst)
                ref = torch.zeros(len(heads), T)
                for i, h in enumerate(heads):
                    block = w_mag[(0 if head is not None else h) * D_HEAD :][:D_HEAD, feature]
                    for src in range(T):
                        ref[i, src] = parts["pattern"][0, h, dst, src] * (parts["v"][0, src, h] @ block)
                torch.testing.assert_close(got, ref)
                assert float(got.sum()) == pytest.approx(float(pi_mag[dst, feature] - bias[feature]), abs=1e-4)
    # reading W_enc and b_gate (the gate's path, what DFA read before) does not split π_mag
    assert not torch.allclose(w_mag, sae.W_enc.detach())


def test_every_family_has_a_linear_encoder_that_gives_its_pre_activations():
    """pre_acts(x) = x W + b for every trainable family (the identity DFA rests on)."""
    from sae.architectures import trainable

    x = torch.randn(7, 6)
    for name in trainable():
        entry = family(name)
        fields = dict(entry.config_at_l0(3, d_sae=D_SAE)[0][1]) if entry.has_k else {}
        sae = entry.sae_class(entry.config_class(architecture=name, d_in=6, d_sae=D_SAE, **fields)).eval()
        with torch.no_grad():
            sae.b_dec.normal_()
            for bias in ("b_enc", "b_mag", "r_mag"):
                if hasattr(sae, bias):
                    getattr(sae, bias).normal_()
            w, b = sae.linear_encoder()
            torch.testing.assert_close(sae.pre_acts(x), x @ w + b, msg=name)
