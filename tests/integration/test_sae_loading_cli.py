"""Published-SAE loading through the CLI and against models: ``saelab sae list/info``, the
model processing an SAE asks for (a GPT-2-config random bridge; the organism), the splice
refusing a mismatch, and bad input as one line with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from saelens_files import make_cfg, make_tensors, write_hf_cache, write_release_table, write_saelens

from sae.errors import ConfigError
from sae.loading import load_sae
from sae.processing import NONE, Processing, check_processing, check_splice, model_processing
from saelab.cli import main

D_MODEL = 128  # the organism's width


def _one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _organism_sae(directory, **kwargs):
    cfg = make_cfg("standard", hook="blocks.1.hook_resid_pre", d_in=D_MODEL, d_sae=32)
    cfg["metadata"]["model_from_pretrained_kwargs"] = kwargs
    return write_saelens(directory, cfg, make_tensors("standard", d_in=D_MODEL, d_sae=32))


def test_fold_ln_sae_gets_a_processed_random_gpt2(organism_tokenizer, tmp_path):
    """A GPT-2-config random bridge given an SAE's processing is the processed model: the
    splice check accepts it and refuses the raw one; centring shows in the activations
    (every residual write has zero mean over d_model)."""
    from transformers import GPT2Config

    from sae.model import random_model

    sae = load_sae(_organism_sae(tmp_path / "s", fold_ln=True, center_writing_weights=True))
    assert sae.processing == Processing(fold_ln=True, center_writing_weights=True)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=D_MODEL, n_positions=64, vocab_size=len(organism_tokenizer))
    raw, _ = random_model(cfg, organism_tokenizer, seed=0)
    processed, _ = random_model(cfg, organism_tokenizer, seed=0, processing=sae.processing)
    assert model_processing(raw) == NONE and model_processing(processed) == sae.processing
    check_splice(processed, sae)
    with pytest.raises(ConfigError, match="trained on a model with fold_ln, center_writing_weights"):
        check_splice(raw, sae)
    tokens = torch.randint(2, len(organism_tokenizer), (2, 12))
    name = "blocks.1.hook_resid_pre"
    with torch.no_grad():
        logits_raw, cache_raw = raw.run_with_cache(tokens, names_filter=[name])
        logits_p, cache_p = processed.run_with_cache(tokens, names_filter=[name])
    assert cache_p[name].mean(-1).abs().max() < 1e-5 < cache_raw[name].mean(-1).abs().max()
    centred = logits_p - logits_p.mean(-1, keepdim=True)  # the processing keeps the function
    torch.testing.assert_close(centred, logits_raw - logits_raw.mean(-1, keepdim=True), atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match="already carries"):  # a second, different processing
        from sae.processing import apply_processing

        apply_processing(processed, Processing(fold_ln=True))


def test_load_model_for_the_organism(tmp_path):
    from sae.model import load_model_for

    sae = load_sae(_organism_sae(tmp_path / "s", center_writing_weights=True))
    model, _ = load_model_for(sae)
    check_processing(model, sae)
    assert model_processing(model) == Processing(center_writing_weights=True)


def test_impossible_processing_is_one_line(capsys, tmp_path):
    _organism_sae(tmp_path / "s", fold_layer_norms=True)
    line = _one_line_error(capsys, ["sae", "info", str(tmp_path / "s")])
    assert "'fold_layer_norms' is not a model processing saelab can apply" in line
    with pytest.raises(ConfigError, match="must be true or false"):
        Processing.from_kwargs({"fold_ln": "yes"})


def test_sae_info_checks_the_model(capsys, tmp_path):
    _organism_sae(tmp_path / "s", center_writing_weights=True)
    capsys.readouterr()
    assert main(["sae", "info", str(tmp_path / "s"), "--model", "organism", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["processing"] == "center_writing_weights" and info["fits_model"] == "organism"
    assert info["hook"] == "blocks.1.hook_resid_pre" and info["d_in"] == D_MODEL


def test_shape_that_does_not_fit_the_hook(capsys, tmp_path):
    cfg = make_cfg("standard", hook="blocks.1.hook_resid_pre", d_in=64)
    write_saelens(tmp_path / "s", cfg, make_tensors("standard", d_in=64))
    line = _one_line_error(capsys, ["sae", "info", str(tmp_path / "s"), "--model", "organism"])
    assert "reads 64-wide rows but hook 'blocks.1.hook_resid_pre' of this model is 128 wide" in line


def test_missing_weight_file(capsys, tmp_path):
    write_saelens(tmp_path / "s", make_cfg("standard"), make_tensors("standard"))
    (tmp_path / "s" / "sae_weights.safetensors").unlink()
    assert "sae_weights.safetensors is missing" in _one_line_error(capsys, ["sae", "info", str(tmp_path / "s")])


def test_unknown_architecture(capsys, tmp_path):
    write_saelens(tmp_path / "s", make_cfg("crosscoder_v9"), make_tensors("standard"))
    line = _one_line_error(capsys, ["sae", "info", str(tmp_path / "s")])
    assert "architecture 'crosscoder_v9' is not one saelab loads" in line and "standard" in line


def test_unknown_release_or_id_suggests(capsys, tmp_path, monkeypatch):
    write_saelens(tmp_path / "s", make_cfg("standard"), make_tensors("standard"))
    files = {f"l0/{n}": tmp_path / "s" / n for n in ("cfg.json", "sae_weights.safetensors")}
    write_hf_cache(tmp_path / "hf", "org/tiny", files)
    table = {"tiny-res-jb": {"repo_id": "org/tiny", "model": "organism", "saes": [{"id": "blocks.0.x", "path": "l0"}]}}
    monkeypatch.setenv("SAELAB_SAE_RELEASES", str(write_release_table(tmp_path / "t.yaml", table)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert "nearest: tiny-res-jb" in _one_line_error(capsys, ["sae", "info", "tiny-res-j", "blocks.0.x"])
    assert "nearest: blocks.0.x" in _one_line_error(capsys, ["sae", "info", "tiny-res-jb", "blocks.0.y"])
    assert "nearest: tiny-res-jb" in _one_line_error(capsys, ["sae", "list", "--release", "tiny-res"])
    capsys.readouterr()
    assert main(["sae", "list", "--release", "tiny-res-jb"]) == 0
    assert "blocks.0.x" in capsys.readouterr().out
    assert main(["sae", "info", "tiny-res-jb", "blocks.0.x", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["architecture"] == "relu"
    line = _one_line_error(capsys, ["sae", "info", "hf://org/absent/l0"])
    assert "org/absent" in line and "HF_HUB_CACHE" in line


def test_sae_list_prints_the_shipped_releases(capsys, monkeypatch):
    monkeypatch.delenv("SAELAB_SAE_RELEASES", raising=False)
    capsys.readouterr()
    assert main(["sae", "list"]) == 0
    out = capsys.readouterr().out
    for release in ("gpt2-small-res-jb", "pythia-70m-deduped-res-sm", "gemma-scope-2b-pt-res-canonical"):
        assert release in out


def test_the_eval_splice_refuses_a_processing_mismatch(organism, tmp_path):
    """evals.core.evaluate splices only an SAE whose processing is the model's (here: none)."""
    from evals.core.evaluate import EvalTarget, evaluate_saes
    from sae.hooks import resolve_hook

    model, tok = organism
    sae = load_sae(_organism_sae(tmp_path / "s", center_writing_weights=True))
    spec = resolve_hook(model, sae.hook)
    tokens = torch.randint(2, 800, (2, 16))
    tokens[:, 0] = tok.bos_token_id
    target = [EvalTarget("s", sae, spec, {})]
    with pytest.raises(ConfigError, match="trained on a model with center_writing_weights"):
        evaluate_saes(model, tok, target, [tokens], {spec.name: torch.zeros(D_MODEL)}, progress=False)
    sae.processing = NONE
    out = evaluate_saes(model, tok, target, [tokens], {spec.name: torch.zeros(D_MODEL)}, progress=False)
    assert "ce_loss_with_sae" in out["s"]
