"""The fused harvesting forward against the bridge's eager forward, and its fallbacks.

Parity: every block hook the fused path computes, at every layer, equals what the bridge
gives (``Harvester(fused=False)``) to max |Δ| ≤ 1e-4 in float32, on the organism and on
random-weight GPT-2 models built from configs (one with the attention scaled by the
inverse layer index and an activation the fused path has no kernel for).
"""

from __future__ import annotations

import pytest
import torch

from sae.fused_forward import FUSED_SITES, FusedForward, fused_forward_support
from sae.harvest import Harvester

TOL = 1e-4


def _tokens(tok, n_rows: int, n_pos: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """Random tokens with BOS first and some padding at the ends of rows, as packed rows have."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, vocab, (n_rows, n_pos), generator=g)
    tokens[:, 0] = tok.bos_token_id
    tokens[0, -3:] = tok.pad_token_id
    tokens[1, n_pos // 2] = tok.bos_token_id  # a document boundary inside a row
    return tokens


def _all_hooks(model) -> list[str]:
    return [f"blocks.{layer}.{site}" for layer in range(model.cfg.n_layers) for site in FUSED_SITES]


def _assert_parity(model, tok, hooks, tokens) -> None:
    fused = Harvester(model, tok, hooks)
    assert fused.fused_reason is None and fused.uses_fused()
    bridge = Harvester(model, tok, hooks, fused=False)
    assert not bridge.uses_fused()
    got, ref = fused.full(tokens), bridge.full(tokens)
    for h in hooks:
        assert got[h].shape == ref[h].shape, h
        delta = float((got[h] - ref[h]).abs().max())
        assert delta <= TOL, f"{h}: max |Δ| {delta:.2e}"
    # the rows a store receives, BOS and padding dropped
    rows, ref_rows = fused(tokens), bridge(tokens)
    assert torch.equal(rows.tokens, ref_rows.tokens) and torch.equal(rows.positions, ref_rows.positions)
    for h in hooks:
        assert float((rows.acts[h] - ref_rows.acts[h]).abs().max()) <= TOL, h
        assert not rows.acts[h].is_inference()  # usable with autograd downstream


def test_organism_every_hook_matches_the_bridge(organism):
    model, tok = organism
    tokens = _tokens(tok, 6, 48, model.cfg.d_vocab)
    _assert_parity(model, tok, _all_hooks(model), tokens)


def test_organism_harvest_hooks_match_and_stop_early(organism):
    """The benchmark's hooks: the forward stops in layer 2, and per-head reads slice the concatenation."""
    model, tok = organism
    hooks = ["blocks.2.hook_resid_post", "blocks.2.hook_mlp_out", "blocks.2.attn.hook_z", "blocks.1.attn.hook_q[3]"]
    tokens = _tokens(tok, 4, 64, model.cfg.d_vocab, seed=1)
    _assert_parity(model, tok, hooks, tokens)
    ff = FusedForward(model, Harvester(model, tok, hooks).tl_names)
    assert ff.last == 2 and len(ff.blocks) == 3


def test_resid_mid_only_skips_the_last_mlp(organism):
    model, tok = organism
    hooks = ["blocks.1.hook_resid_mid", "blocks.1.attn.hook_v"]
    ff = FusedForward(model, hooks)
    assert not ff.last_needs_mlp
    _assert_parity(model, tok, hooks, _tokens(tok, 3, 32, model.cfg.d_vocab, seed=2))


def test_random_gpt2_every_hook_matches_the_bridge(random_gpt2):
    model, tok = random_gpt2
    _assert_parity(model, tok, _all_hooks(model), _tokens(tok, 5, 40, model.cfg.d_vocab, seed=3))


@pytest.fixture(scope="module")
def odd_gpt2(organism_tokenizer):
    """GPT-2 with the attention scaled by 1/(layer+1) and SiLU, which the fused path runs through
    the model's own activation module."""
    from transformers import GPT2Config

    from sae.model import random_model

    cfg = GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=32,
        vocab_size=len(organism_tokenizer),
        activation_function="silu",
        scale_attn_by_inverse_layer_idx=True,
    )
    return random_model(cfg, organism_tokenizer, seed=1)


def test_inverse_layer_scaling_and_a_module_activation_match(odd_gpt2):
    model, tok = odd_gpt2
    _assert_parity(model, tok, _all_hooks(model), _tokens(tok, 4, 32, model.cfg.d_vocab, seed=4))


def test_weights_are_read_live_not_copied(random_gpt2):
    """An in-place edit of the weights after the harvester is built is seen by both paths alike."""
    model, tok = random_gpt2
    hooks = ["blocks.1.hook_resid_post"]
    fused, bridge = Harvester(model, tok, hooks), Harvester(model, tok, hooks, fused=False)
    tokens = _tokens(tok, 2, 16, model.cfg.d_vocab, seed=5)
    before = fused.full(tokens)[hooks[0]]
    weight = model.blocks[0].mlp.out._original_component.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(3.0)
        got, ref = fused.full(tokens)[hooks[0]], bridge.full(tokens)[hooks[0]]
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert float((got - before).abs().max()) > 1e-2
    assert float((got - ref).abs().max()) <= TOL


def test_a_hook_on_the_model_falls_back_to_the_bridge(organism):
    """A user's hook (or a spliced SAE's) must act: with one attached the bridge runs, and the
    fused path resumes once it is removed."""
    model, tok = organism
    hooks = ["blocks.1.hook_resid_post"]
    h = Harvester(model, tok, hooks)
    tokens = _tokens(tok, 2, 16, model.cfg.d_vocab, seed=6)
    clean = h.full(tokens)[hooks[0]]

    def zero(act, hook):
        return torch.zeros_like(act)

    with model.hooks(fwd_hooks=[("blocks.0.hook_attn_out", zero)]):
        assert not h.uses_fused()
        edited = h.full(tokens)[hooks[0]]
    assert h.uses_fused()
    assert float((edited - clean).abs().max()) > 1e-3
    torch.testing.assert_close(h.full(tokens)[hooks[0]], clean)


def test_pythia_falls_back_to_the_bridge(random_neox):
    model, tok = random_neox
    hooks = ["blocks.1.hook_resid_post", "blocks.0.attn.hook_z"]
    h = Harvester(model, tok, hooks)
    assert "GPT-2" in h.fused_reason and not h.uses_fused()
    tokens = _tokens(tok, 3, 16, model.cfg.d_vocab, seed=7)
    rows = h(tokens)
    ref = Harvester(model, tok, hooks, fused=False)(tokens)
    for name in hooks:
        torch.testing.assert_close(rows.acts[name], ref.acts[name], atol=0, rtol=0)


def test_support_reasons(random_gpt2, organism_tokenizer):
    from transformers import GPT2Config

    from sae.model import random_model

    model, _ = random_gpt2
    assert fused_forward_support(model, ["blocks.0.hook_resid_post"]) is None
    assert "not one the fused forward computes" in fused_forward_support(model, ["blocks.0.ln1.hook_normalized"])
    assert "not one the fused forward computes" in fused_forward_support(model, ["blocks.9.hook_resid_post"])
    assert Harvester(model, organism_tokenizer, ["blocks.0.hook_resid_post"], with_grads=True)._fused is None
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=len(organism_tokenizer))
    processed, _ = random_model(cfg, organism_tokenizer, processing={"fold_ln": True})
    assert "processing" in fused_forward_support(processed, ["blocks.0.hook_resid_post"])


def test_the_cache_spec_ignores_the_fused_switch():
    """Like the device, the switch changes rows by rounding only: a cache stays valid across it."""
    from sae.cache import _spec
    from sae.store import StoreConfig

    on = StoreConfig(hooks=["blocks.0.hook_resid_post"])
    off = StoreConfig(hooks=["blocks.0.hook_resid_post"], fused_forward=False)
    assert on.fused_forward and not off.fused_forward
    assert _spec(on) == _spec(off)
