"""Harvested activations against an independent reference: plain PyTorch hooks on the HF modules."""

from __future__ import annotations

import pytest
import torch

from sae.harvest import Harvester
from sae.task_positions import harvest_task_positions


def _hf_reference(hf, tokens):
    """Every hook kind read with forward hooks on the Hugging Face GPT-2 modules."""
    out, handles = {}, []
    d = hf.config.n_embd
    for layer, block in enumerate(hf.transformer.h):

        def pre(module, args, layer=layer):
            out[f"blocks.{layer}.hook_resid_pre"] = args[0].detach().clone()

        def post(module, args, output, layer=layer):
            out[f"blocks.{layer}.hook_resid_post"] = (
                output[0].detach().clone() if isinstance(output, tuple) else output.detach().clone()
            )

        def attn(module, args, output, layer=layer):
            out[f"blocks.{layer}.hook_attn_out"] = output[0].detach().clone()

        def qkv(module, args, output, layer=layer):
            q, k, v = output.detach().split(d, dim=-1)
            (
                out[f"blocks.{layer}.attn.hook_q"],
                out[f"blocks.{layer}.attn.hook_k"],
                out[f"blocks.{layer}.attn.hook_v"],
            ) = q, k, v

        def z(module, args, layer=layer):
            out[f"blocks.{layer}.attn.hook_z"] = args[0].detach().clone()

        def act(module, args, output, layer=layer):
            out[f"blocks.{layer}.mlp.hook_post"] = output.detach().clone()

        def mlp(module, args, output, layer=layer):
            out[f"blocks.{layer}.hook_mlp_out"] = output.detach().clone()

        handles += [
            block.register_forward_pre_hook(pre),
            block.register_forward_hook(post),
            block.attn.register_forward_hook(attn),
            block.attn.c_attn.register_forward_hook(qkv),
            block.attn.c_proj.register_forward_pre_hook(z),
            block.mlp.act.register_forward_hook(act),
            block.mlp.register_forward_hook(mlp),
        ]
    try:
        with torch.no_grad():
            hf(tokens)
    finally:
        for h in handles:
            h.remove()
    for layer in range(len(hf.transformer.h)):
        out[f"blocks.{layer}.hook_resid_mid"] = (
            out[f"blocks.{layer}.hook_resid_pre"] + out[f"blocks.{layer}.hook_attn_out"]
        )
    return out


SITES = [
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_attn_out",
    "hook_mlp_out",
    "mlp.hook_post",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_z",
]


@pytest.fixture(scope="module")
def tokens(organism):
    from organism.corpus import documents
    from sae.text import pack_rows

    _, tok = organism
    rows = pack_rows(documents(5), tok, 24)
    return torch.tensor([next(rows) for _ in range(6)])


def test_every_hook_kind_matches_plain_pytorch_hooks(organism, hf_organism, tokens):
    model, tok = organism
    hooks = [f"blocks.{layer}.{site}" for layer in (0, 2) for site in SITES]
    harvester = Harvester(model, tok, hooks)
    got = harvester.full(tokens)
    ref = _hf_reference(hf_organism, tokens)
    for h in hooks:
        torch.testing.assert_close(got[h], ref[h], atol=1e-5, rtol=1e-5, msg=h)


def test_per_head_rows_are_slices_of_the_concatenation(organism, tokens):
    model, tok = organism
    d_head = model.cfg.d_head
    got = Harvester(
        model,
        tok,
        ["blocks.1.attn.hook_z", "blocks.1.attn.hook_z[3]", "blocks.1.attn.hook_v[0]", "blocks.1.attn.hook_v"],
    ).full(tokens)
    torch.testing.assert_close(
        got["blocks.1.attn.hook_z[3]"], got["blocks.1.attn.hook_z"][..., 3 * d_head : 4 * d_head]
    )
    torch.testing.assert_close(got["blocks.1.attn.hook_v[0]"], got["blocks.1.attn.hook_v"][..., :d_head])


def test_bos_and_padding_rows_are_excluded(organism, tokens):
    model, tok = organism
    padded = tokens.clone()
    padded[0, -5:] = tok.pad_token_id
    harvester = Harvester(model, tok, ["blocks.1.hook_resid_post"])
    got = harvester(padded)
    n_bos = int((padded == tok.bos_token_id).sum())
    assert n_bos >= padded.shape[0]  # every row starts with BOS
    assert len(got.tokens) == padded.numel() - n_bos - 5
    assert tok.bos_token_id not in got.tokens.tolist() and tok.pad_token_id not in got.tokens.tolist()
    full = harvester.full(padded)["blocks.1.hook_resid_post"]
    r, p = got.positions[7]
    torch.testing.assert_close(got.acts["blocks.1.hook_resid_post"][7], full[r, p])


def test_stop_at_layer_is_deepest_plus_one_unless_gradients(organism):
    model, tok = organism
    assert Harvester(model, tok, ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]).stop_at_layer == 2
    assert Harvester(model, tok, ["blocks.3.hook_resid_post"]).stop_at_layer is None
    assert Harvester(model, tok, ["blocks.0.hook_resid_post"], with_grads=True).stop_at_layer is None


def test_gradients_equal_autograd_on_the_summed_loss(organism, hf_organism, tokens):
    model, tok = organism
    hooks = ["blocks.1.hook_resid_post", "blocks.2.attn.hook_z", "blocks.0.hook_mlp_out"]
    got = Harvester(model, tok, hooks, with_grads=True)(tokens[:3])

    hf = hf_organism
    captured = {}

    def keep(name):
        def hook(module, args, output):
            captured[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def keep_in(name):
        def hook(module, args):
            captured[name] = args[0]

        return hook

    emb = hf.transformer.wte(tokens[:3]).detach().requires_grad_(True)
    handles = [
        hf.transformer.h[1].register_forward_hook(keep(hooks[0])),
        hf.transformer.h[2].attn.c_proj.register_forward_pre_hook(keep_in(hooks[1])),
        hf.transformer.h[0].mlp.register_forward_hook(keep(hooks[2])),
    ]
    try:
        logits = hf(inputs_embeds=emb).logits
    finally:
        for h in handles:
            h.remove()
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:3, 1:].flatten(), reduction="sum")
    ref = torch.autograd.grad(loss, [captured[h] for h in hooks])
    keep_mask = tokens[:3] != tok.bos_token_id
    for h, g in zip(hooks, ref, strict=True):
        torch.testing.assert_close(got.grads[h], g[keep_mask], atol=1e-5, rtol=1e-4, msg=h)


def test_half_precision_rows(organism, tokens):
    model, tok = organism
    got = Harvester(model, tok, ["blocks.1.hook_resid_post"], dtype="bfloat16")(tokens)
    assert got.acts["blocks.1.hook_resid_post"].dtype == torch.bfloat16


def test_task_position_rows_carry_metadata(organism):
    from circuits.tasks import ioi

    model, tok = organism
    batch = ioi.make_batch(tok, 8, seed=0)
    rows = harvest_task_positions(
        model, tok, batch, ["blocks.2.attn.hook_z[0]", "blocks.1.hook_resid_post"], roles=["IO", "S2", "END"]
    )
    assert rows.acts["blocks.2.attn.hook_z[0]"].shape == (24, model.cfg.d_head)
    assert [m["role"] for m in rows.meta[:3]] == ["IO", "S2", "END"]
    m = rows.meta[4]
    assert m["prompt_id"] == 1 and m["IO"] == batch.attributes[1]["IO"] and m["order"] in ("ABBA", "BABA")
    full = Harvester(model, tok, ["blocks.1.hook_resid_post"]).full(batch.tokens)["blocks.1.hook_resid_post"]
    torch.testing.assert_close(rows.acts["blocks.1.hook_resid_post"][5], full[1, batch.positions["END"][1]])
    assert rows.select(role="END").tolist() == [2, 5, 8, 11, 14, 17, 20, 23]
