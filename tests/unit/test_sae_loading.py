"""load_sae: every SAELens architecture from a directory, by release and id, and by hf:// from
a local Hugging Face cache (offline), against dense references written in tests/saelens_files.py;
run-time normalisations; pre-6.0 configs; SAELens → saelab → SAELens round trips; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from saelens_files import (
    ARCHITECTURES,
    D_IN,
    is_transcoder,
    make_cfg,
    make_tensors,
    reference,
    write_hf_cache,
    write_release_table,
    write_saelens,
)
from safetensors.torch import load_file

from sae.architectures import families
from sae.architectures.registry import from_saelens, saved_architecture
from sae.errors import ConfigError, SaelabError
from sae.loading import gemma_scope_cfg, load_sae, parse_hf
from sae.saving import save_sae

REPO = "saelab-test/tiny-saes"
REV = "a" * 40


def needs_family(arch: str):
    """The registered family that loads SAELens ``arch``, or an explicit skip naming it."""
    entry = from_saelens(arch)
    if entry is None:
        pytest.skip(f"no registered family loads SAELens {arch!r} yet (gated: fam1; transcoders: fam2)")
    return entry


def _check(sae, cfg, tensors, x):
    codes, out = reference(cfg, tensors, x)
    torch.testing.assert_close(sae.encode(x), codes, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sae.reconstruct(x)[1], out, atol=1e-5, rtol=1e-5)


@pytest.fixture
def x():
    return torch.randn(32, D_IN, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_directory_of_every_architecture(arch, tmp_path, x):
    entry = needs_family(arch)
    cfg, tensors = make_cfg(arch), make_tensors(arch)
    sae = load_sae(write_saelens(tmp_path / arch, cfg, tensors, sparsity=True))
    assert saved_architecture(sae) == arch and sae.family.name == entry.name
    assert sae.hook == "blocks.0.hook_resid_pre" and sae.model_name == "organism"
    assert sae.log_sparsity is not None and sae.log_sparsity.shape == (cfg["d_sae"],)
    _check(sae, cfg, tensors, x)


@pytest.mark.parametrize("mode", ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"])
@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu", "gated", "transcoder"])
def test_normalize_activations(arch, mode, tmp_path, x):
    needs_family(arch)
    cfg, tensors = make_cfg(arch, normalize=mode), make_tensors(arch, seed=1)
    sae = load_sae(write_saelens(tmp_path / "sae", cfg, tensors))
    assert sae.input_normalization == ("none" if mode in ("none", "expected_average_only_in") else mode)
    # inputs far from the SAE's scale, so that a missing normalisation shows
    applied = "none" if mode == "expected_average_only_in" else mode
    _check(sae, {**cfg, "normalize_activations": applied}, tensors, 5 * x)


def test_layer_norm_is_not_the_identity(tmp_path, x):
    """The run-time normalisation changes the codes (so the test above can fail)."""
    plain = load_sae(write_saelens(tmp_path / "a", make_cfg("standard"), make_tensors("standard")))
    cfg = make_cfg("standard", normalize="layer_norm")
    normed = load_sae(write_saelens(tmp_path / "b", cfg, make_tensors("standard")))
    assert (plain.encode(5 * x) - normed.encode(5 * x)).abs().max() > 1e-2


def test_hook_head_index_dtype_and_processing_from_cfg(tmp_path):
    cfg = make_cfg("standard", hook="blocks.1.attn.hook_z", dtype="bfloat16")
    cfg["metadata"].update(hook_head_index=2, prepend_bos=False)
    cfg["metadata"]["model_from_pretrained_kwargs"] = {"fold_ln": True, "default_prepend_bos": False}
    sae = load_sae(write_saelens(tmp_path / "s", cfg, make_tensors("standard")))
    assert sae.hook == "blocks.1.attn.hook_z[2]" and sae.W_enc.dtype == torch.bfloat16
    assert sae.processing.fold_ln and not sae.processing.center_writing_weights and sae.prepend_bos is False
    assert load_sae(tmp_path / "s", dtype="float32").W_enc.dtype == torch.float32


def test_pre_6_configs(tmp_path, x):
    """SAELens < 6 wrote hook_point and activation_fn_str and no architecture (gpt2-small-res-jb)."""
    tensors = make_tensors("standard")
    old = {
        "d_in": D_IN,
        "d_sae": 16,
        "hook_point": "blocks.8.hook_resid_pre",
        "hook_point_layer": 8,
        "model_name": "gpt2-small",
        "dtype": "torch.float32",
        "device": "cpu",
        "activation_fn_str": "relu",
        "normalize_activations": False,
    }
    old["dtype"] = "float32"
    sae = load_sae(write_saelens(tmp_path / "old", old, tensors))
    assert sae.family.saelens_architecture == "standard" and sae.hook == "blocks.8.hook_resid_pre"
    assert sae.model_name == "gpt2-small"
    _check(sae, {"architecture": "standard", "apply_b_dec_to_input": True, "d_in": D_IN}, tensors, x)
    topk = {**old, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}}
    sae = load_sae(write_saelens(tmp_path / "oldk", topk, tensors))
    assert sae.family.saelens_architecture == "topk" and sae.cfg.k == 3


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local Hugging Face cache holding one SAE per loadable architecture under REPO, a
    release table naming them, and the hub switched off."""
    staged, files, table = tmp_path / "staged", {}, {}
    saes = []
    for arch in ARCHITECTURES:
        if from_saelens(arch) is None:
            continue
        cfg, tensors = make_cfg(arch), make_tensors(arch, seed=3)
        write_saelens(staged / arch, cfg, tensors)
        for name in ("cfg.json", "sae_weights.safetensors"):
            files[f"saes/{arch}/{name}"] = staged / arch / name
        saes.append({"id": f"{arch}-id", "path": f"saes/{arch}"})
    write_hf_cache(tmp_path / "hf", REPO, files, REV)
    overrides = {"model_from_pretrained_kwargs": {"center_writing_weights": True}}
    table["tiny-res"] = {"repo_id": REPO, "model": "organism", "saes": saes, "config_overrides": overrides}
    monkeypatch.setenv("SAELAB_SAE_RELEASES", str(write_release_table(tmp_path / "releases.yaml", table)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return staged


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_release_and_hf_url_from_the_cache_offline(arch, hub, x):
    needs_family(arch)
    cfg, tensors = make_cfg(arch), make_tensors(arch, seed=3)
    by_release = load_sae("tiny-res", f"{arch}-id")
    assert by_release.release == "tiny-res" and by_release.processing.center_writing_weights
    for sae in (
        by_release,
        load_sae(f"hf://{REPO}/saes/{arch}"),
        load_sae(f"hf://{REPO}/saes/{arch}@{REV}"),
        load_sae(f"hf://{REPO}@main", f"saes/{arch}"),
    ):
        _check(sae, cfg, tensors, x)
    assert not load_sae(f"hf://{REPO}/saes/{arch}").processing.any


def test_release_norm_scaling_factor_is_folded(tmp_path, monkeypatch, x):
    """expected_average_only_in with a release's norm_scaling_factor: SAELens folds s into the
    weights (W_enc·s, W_dec/s, b_dec/s), so the SAE reads raw x as it read x·s in training."""
    cfg, tensors = make_cfg("standard", normalize="expected_average_only_in"), make_tensors("standard")
    write_saelens(tmp_path / "s", cfg, tensors)
    names = ("cfg.json", "sae_weights.safetensors")
    write_hf_cache(tmp_path / "hf", REPO, {f"s/{n}": tmp_path / "s" / n for n in names})
    table = {"r": {"repo_id": REPO, "model": "m", "saes": [{"id": "a", "path": "s", "norm_scaling_factor": 2.5}]}}
    monkeypatch.setenv("SAELAB_SAE_RELEASES", str(write_release_table(tmp_path / "t.yaml", table)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    sae = load_sae("r", "a")
    codes, out = reference({**cfg, "normalize_activations": "none"}, tensors, 2.5 * x)
    torch.testing.assert_close(sae.encode(x), codes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sae.reconstruct(x)[1], out / 2.5, atol=1e-5, rtol=1e-5)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_unknown_release_and_id_suggest_names(hub):
    with pytest.raises(ConfigError) as e:
        load_sae("tiny-rez", "standard-id")
    assert "unknown SAE release 'tiny-rez'" in _one_line(e) and "tiny-res" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_sae("tiny-res", "standrd-id")
    assert "has no SAE 'standrd-id'" in _one_line(e) and "standard-id" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_sae("tiny-res")
    assert "name one" in _one_line(e)


def test_offline_without_cache_names_the_repo_and_the_ways_out(hub):
    with pytest.raises(SaelabError) as e:
        load_sae("hf://someone/elsewhere/layer_3")
    msg = _one_line(e)
    assert "someone/elsewhere" in msg and "HF_HUB_CACHE" in msg and "local SAE directory" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_missing_weights_in_the_cache_offline(hub, tmp_path):
    write_hf_cache(tmp_path / "hf", "saelab-test/half", {"x/cfg.json": hub / "standard" / "cfg.json"})
    with pytest.raises(SaelabError) as e:
        load_sae("hf://saelab-test/half/x")
    assert "sae_weights.safetensors not in the Hugging Face cache" in _one_line(e)


def test_parse_hf():
    assert parse_hf("hf://org/repo/a/b@v1.0") == type(parse_hf("hf://o/r"))("org/repo", "a/b", "v1.0")
    assert parse_hf("hf://org/repo").folder == ""
    with pytest.raises(ConfigError):
        parse_hf("hf://justone")


def test_gemma_scope_conventions(tmp_path):
    """As SAELens' get_gemma_2_config_from_hf: hook and width from the folder, no b_dec on the input."""
    cfg = gemma_scope_cfg("google/gemma-scope-2b-pt-res", "layer_12/width_16k/average_l0_82")
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"]) == ("jumprelu", 2304, 16384)
    assert cfg["metadata"]["hook_name"] == "blocks.12.hook_resid_post" and cfg["apply_b_dec_to_input"] is False
    att = gemma_scope_cfg("google/gemma-scope-9b-pt-att", "layer_3/width_131k/average_l0_20")
    assert (att["metadata"]["hook_name"], att["d_in"], att["d_sae"]) == ("blocks.3.attn.hook_z", 4096, 131072)
    from sae import releases

    canonical = releases.find("gemma-scope-2b-pt-res-canonical")
    if canonical is not None:
        item = canonical.sae("layer_12/width_16k/canonical")
        assert item.path.startswith("layer_12/width_16k/average_l0_")
    from sae.loading import _read_npz

    np.savez(tmp_path / "params.npz", W_enc=np.ones((2, 3), np.float32), threshold=np.zeros(3, np.float32))
    assert set(_read_npz(tmp_path / "params.npz")) == {"W_enc", "threshold"}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saelens_to_saelab_to_saelens(arch, tmp_path, x):
    """A SAELens directory loaded and saved again: the same tensors and the cfg keys SAELens reads."""
    needs_family(arch)
    cfg = make_cfg(arch, normalize="layer_norm" if arch == "standard" else "none")
    cfg["metadata"]["model_from_pretrained_kwargs"] = {"center_writing_weights": True}
    tensors = make_tensors(arch, seed=5)
    sae = load_sae(write_saelens(tmp_path / "theirs", cfg, tensors))
    save_sae(sae, tmp_path / "ours")
    again = json.loads((tmp_path / "ours" / "cfg.json").read_text())
    for key in ("architecture", "d_in", "d_sae", "dtype", "apply_b_dec_to_input", "normalize_activations"):
        assert again[key] == cfg[key], key
    if arch == "topk":
        assert again["k"] == cfg["k"]
    for key in ("hook_name", "hook_head_index", "model_name", "model_from_pretrained_kwargs"):
        assert again["metadata"][key] == cfg["metadata"][key], key
    saved = load_file(str(tmp_path / "ours" / "sae_weights.safetensors"))
    assert set(saved) == set(tensors)
    for name, tensor in tensors.items():
        torch.testing.assert_close(saved[name], tensor, atol=0, rtol=0)
    reloaded = load_sae(tmp_path / "ours")
    torch.testing.assert_close(reloaded.encode(x), sae.encode(x), atol=0, rtol=0)
    torch.testing.assert_close(reloaded.reconstruct(x)[1], sae.reconstruct(x)[1], atol=0, rtol=0)


@pytest.mark.parametrize("name", [f.name for f in families()])
def test_every_family_saves_a_complete_saelens_form(name, tmp_path, x):
    """Each registered family's saved directory, read as SAELens would (no saelab section),
    gives the same inference codes and reconstruction as the SAE that wrote it."""
    entry = next(f for f in families() if f.name == name)
    cls = entry.sae_class
    kw = {"k": 3} if entry.has_k else {}
    torch.manual_seed(0)
    if is_transcoder(entry.saelens_architecture):
        pytest.skip(f"{name}: transcoders have their own round trip")
    sae = cls(cls.config_class(d_in=D_IN, d_sae=16, **kw)).eval()
    with torch.no_grad():
        for bias in ("b_enc", "b_dec", "b_gate", "b_mag", "r_mag"):  # whichever the family has
            if isinstance(getattr(sae, bias, None), torch.nn.Parameter):
                getattr(sae, bias).normal_(0, 0.1)
        if isinstance(getattr(sae, "threshold", None), torch.nn.Parameter | torch.Tensor) and "threshold" in dict(
            sae.named_buffers()
        ):
            sae.threshold.uniform_(0, 0.2)
    save_sae(sae, tmp_path / "s", metadata={"hook": "blocks.0.hook_resid_pre", "model": "organism"})
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    cfg.pop("saelab")
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "s" / "saelab_state.safetensors").unlink(missing_ok=True)
    theirs = load_sae(tmp_path / "s")
    assert theirs.family.name == entry.form
    if getattr(entry, "needs_gradients", False):
        return  # a gradient SAE's inference form (TopK) differs from its gradient-aware rule by design
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), sae.encode(x), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(theirs.reconstruct(x)[1], sae.reconstruct(x)[1], atol=1e-5, rtol=1e-5)


def test_the_tuple_form_resolves_everything_too(hub):
    """``sae.saving.load_sae`` returns ``(sae, cfg_json)`` for the callers that read the cfg;
    it takes releases and hf:// as well, and the old positional device still means the device."""
    from sae.saving import load_sae as load_pair

    sae, cfg = load_pair("tiny-res", "standard-id")
    assert cfg["architecture"] == "standard" and cfg["model_from_pretrained_kwargs"]["center_writing_weights"]
    assert sae.processing.center_writing_weights
    sae, cfg = load_pair(f"hf://{REPO}/saes/topk", device="cpu")
    assert cfg["k"] == 3
    sae, cfg = load_pair(hub / "jumprelu", "cpu")
    assert sae.family.name == "jumprelu" and cfg["architecture"] == "jumprelu"
