"""Attention-SAE analyses: DFA sums to the pre-activation minus the bias; head attribution."""

from __future__ import annotations

import pytest
import torch

from circuits.attn_sae import head_attribution
from evals.attention import attention_parts, dfa, dfa_examples, effective_bias, head_summary
from sae.architectures import sae_class
from sae.hooks import resolve_hook


def _sae(arch: str, d_in: int, d_sae: int, apply_b_dec: bool, seed: int = 0):
    cls = sae_class(arch)
    fields = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "apply_b_dec_to_input": apply_b_dec}
    if arch == "topk":
        fields["k"] = 4
    sae = cls(cls.config_class(**fields))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(d_sae, generator=g))
        sae.b_dec.copy_(torch.randn(d_in, generator=g))
    return sae.eval()


@pytest.mark.parametrize("hook", ["blocks.1.attn.hook_z", "blocks.2.attn.hook_z[5]"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_dfa_sums_to_pre_activation_minus_bias(organism, hook, apply_b_dec):
    model, tok = organism
    spec = resolve_hook(model, hook)
    sae = _sae("topk" if apply_b_dec else "relu", spec.d_in, 32, apply_b_dec)
    tokens = tok(["Then, Mary and John went to the store. John gave a book to"], return_tensors="pt")["input_ids"]
    tokens = torch.cat([torch.tensor([[tok.bos_token_id]]), tokens], 1)
    parts = attention_parts(model, spec, tokens)
    pattern, v, z = parts["pattern"], parts["v"], parts["z"]
    assert torch.allclose(torch.einsum("bhqs,bshd->bqhd", pattern, v), z, atol=1e-5)  # z = A v exactly
    pre = sae.pre_acts(spec.read(z)[0])  # [T, d_sae]
    bias = effective_bias(sae)
    with torch.no_grad():
        for feature in (0, 7, 31):
            for dst in (0, 5, tokens.shape[1] - 1):
                total = dfa(parts, sae, spec, feature, dst).sum()
                assert float(total) == pytest.approx(float(pre[dst, feature] - bias[feature]), abs=1e-4)
    if apply_b_dec:  # the b_dec correction matters: with it dropped the identity fails
        assert not torch.allclose(sae.b_enc, bias)


def test_dfa_examples_record_the_strongest_feature(organism):
    model, tok = organism
    spec = resolve_hook(model, "blocks.1.attn.hook_z")
    sae = _sae("topk", spec.d_in, 64, True, seed=3)
    tokens = torch.tensor([[tok.bos_token_id] + tok("the cat sat on the mat and the dog ran")["input_ids"]])
    (ex,) = dfa_examples(model, tok, sae, spec, tokens, 1)
    assert ex["dfa_sum"] == pytest.approx(ex["pre_activation"] - ex["effective_bias"], abs=1e-4)
    codes = sae.encode(spec.read(attention_parts(model, spec, tokens)["z"]))[0, 1:]
    assert ex["activation"] == pytest.approx(float(codes.max().detach()), rel=1e-5)
    assert len(ex["dfa"]) == 8 and len(ex["dfa"][0]) == ex["dst"] + 1


def test_head_attribution_shares():
    W_dec = torch.zeros(3, 8 * 4)
    W_dec[0, 8:12] = 1.0  # all on head 2
    W_dec[1, :] = 1.0  # spread evenly
    W_dec[2, 0:4], W_dec[2, 28:32] = 3.0, 1.0  # heads 0 and 7, 3:1
    share = head_attribution(W_dec, 8)
    assert torch.allclose(share.sum(1), torch.ones(3))
    assert share[0, 2] == 1.0 and torch.allclose(share[1], torch.full((8,), 1 / 8))
    assert share[2, 0] == pytest.approx(0.75) and share[2, 7] == pytest.approx(0.25)

    class Fake:
        pass

    sae = Fake()
    sae.W_dec = W_dec
    spec = type("S", (), {"head": None})()
    summary = head_summary(sae, spec, 8, densities=[0.1, 0.1, 0.0], top=2)
    assert summary["live_features"] == 2 and summary["dominant_head_counts"][2] == 1
    assert summary["single_head_fraction"] == 0.5
    assert summary["top_features"]["2"][0] == [0, 1.0]
