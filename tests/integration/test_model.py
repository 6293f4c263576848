"""Model loading through TransformerBridge, hook names and shapes, offline behaviour."""

from __future__ import annotations

import time

import pytest
import torch

from sae.errors import SaelabError
from sae.hooks import list_hooks, resolve_hook
from sae.model import load_model, resolve_source

RESID = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")


def _check_gpt2_hooks(model, n_layers, n_heads, d_model, d_head, d_mlp):
    hooks = list_hooks(model)
    for layer in range(n_layers):
        for site in RESID:
            assert hooks[f"blocks.{layer}.{site}"] == (d_model,)
        assert hooks[f"blocks.{layer}.mlp.hook_post"] == (d_mlp,)
        for site in ("q", "k", "v", "z"):
            assert hooks[f"blocks.{layer}.attn.hook_{site}"] == (n_heads * d_head,)
            assert hooks[f"blocks.{layer}.attn.hook_{site}[{n_heads - 1}]"] == (d_head,)
    assert f"blocks.{n_layers}.hook_resid_pre" not in hooks


def test_organism_loads_with_gpt2_hooks(organism):
    model, tokenizer = organism
    cfg = model.cfg
    assert cfg.n_layers >= 4 and cfg.n_layers * cfg.n_heads >= 24 and cfg.d_model >= 128
    _check_gpt2_hooks(model, cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_head, 4 * cfg.d_model)
    assert tokenizer.bos_token_id is not None
    assert model.saelab_source.kind == "provider" and model.saelab_source.provider == "organism"


def test_organism_bridge_matches_hugging_face(organism, hf_organism):
    model, tokenizer = organism
    tokens = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode("When John and Mary went to the store")]])
    with torch.no_grad():
        ours = model(tokens)
        ref = hf_organism(tokens).logits
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_cached_activation_shapes_match_hook_listing(organism):
    model, _ = organism
    tokens = torch.zeros((2, 5), dtype=torch.long)
    spec = resolve_hook(model, "blocks.1.attn.hook_z")
    _, cache = model.run_with_cache(tokens, names_filter=[spec.tl_name])
    rows = spec.read(cache[spec.tl_name])
    assert rows.shape == (2, 5, model.cfg.n_heads * model.cfg.d_head)
    head = resolve_hook(model, "blocks.1.attn.hook_z[3]")
    torch.testing.assert_close(head.read(cache[spec.tl_name]), cache[spec.tl_name][:, :, 3])
    # write() inverts read()
    torch.testing.assert_close(spec.write(cache[spec.tl_name], rows), cache[spec.tl_name])


def test_random_gpt2_from_config(random_gpt2):
    model, _ = random_gpt2
    _check_gpt2_hooks(model, 3, 4, 64, 16, 256)
    assert model.saelab_source.kind == "random"


def test_random_pythia_has_no_resid_mid(random_neox):
    model, _ = random_neox
    hooks = list_hooks(model)
    assert "blocks.0.hook_resid_mid" not in hooks  # parallel attention and MLP
    for site in ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
        assert hooks[f"blocks.1.{site}"] == (64,)
    assert hooks["blocks.1.attn.hook_z"] == (64,)
    with pytest.raises(SaelabError, match=r"unknown hook point 'blocks.0.hook_resid_mid'"):
        resolve_hook(model, "blocks.0.hook_resid_mid")


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("blocks.1.hook_resid_mdi", "nearest: blocks.1.hook_resid_mid"),
        ("blocks.9.hook_resid_post", "unknown hook point"),
        ("blocks.1.attn.hook_z[99]", "head 99 out of range"),
        ("blocks.1.hook_resid_post[0]", "has no heads"),
        ("resid_post", "unknown hook point"),
    ],
)
def test_bad_hook_names_get_clear_errors(random_gpt2, name, expect):
    model, _ = random_gpt2
    with pytest.raises(SaelabError, match=expect.replace("[", r"\[")):
        resolve_hook(model, name)


def test_offline_hub_name_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    start = time.time()
    with pytest.raises(SaelabError, match="'gpt2' is not in the local Hugging Face cache and the hub is unreachable"):
        load_model("gpt2")
    assert time.time() - start < 10


def test_hf_hub_offline_env_is_respected(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SaelabError, match="unreachable"):
        load_model("EleutherAI/pythia-70m")


def test_local_directory_loads(tmp_path, organism_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=len(organism_tokenizer))
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path)
    organism_tokenizer.save_pretrained(tmp_path)
    model, _tok = load_model(tmp_path)
    assert model.cfg.n_layers == 2 and model.saelab_source.kind == "local"
    assert list_hooks(model)["blocks.1.attn.hook_z"] == (32,)


def test_bad_model_paths(tmp_path):
    with pytest.raises(SaelabError, match="no such model directory"):
        resolve_source(str(tmp_path / "missing"))
    with pytest.raises(SaelabError, match=r"no config.json"):
        resolve_source(str(tmp_path))
    assert resolve_source("gpt2").kind == "hub"
    assert resolve_source("EleutherAI/pythia-70m").kind == "hub"
