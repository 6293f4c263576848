"""``saelab export``: Neuronpedia's feature JSON (schema-checked for every trainable family) and
a Hugging Face repo folder in SAELens' pretrained layout that loads back identically."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

SCHEMAS = Path(__file__).resolve().parents[2] / "app" / "schemas"
HOOK = "blocks.1.hook_resid_post"


def _like_trained(arch: str):
    """An SAE of ``arch`` with its buffers moved as training moves them (EMA thresholds,
    running densities) and nonzero biases: the export reads only the saved files and the
    dashboard build, so a few train-mode passes stand in for a training run (fast tier)."""
    from sae.architectures import family, sae_class

    cls = sae_class(arch)
    torch.manual_seed(3)
    sae = cls(cls.config_class(d_in=128, d_sae=32, **({"k": 4} if family(arch).has_k else {}))).train()
    with torch.no_grad():
        for bias in ("b_enc", "b_gate", "b_mag", "r_mag"):
            if isinstance(getattr(sae, bias, None), torch.nn.Parameter):
                getattr(sae, bias).normal_(0, 0.1)
    for _ in range(3):
        sae(torch.randn(64, 128))
    return sae.eval()


@pytest.fixture(scope="session")
def family_run(tmp_path_factory, organism):
    """A run directory with an SAE of every trainable family on the organism's residual stream,
    with its dashboard build: the smallest run each export must handle."""
    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run
    from sae.architectures import trainable
    from sae.saving import save_sae

    out = tmp_path_factory.mktemp("family_run")
    for arch in trainable():
        save_sae(_like_trained(arch), out / arch, metadata={"hook": HOOK, "model": "organism", "name": arch})
    model, tok = organism
    cfg = DashboardConfig(n_tokens=1024, context_size=32, lm_batch_size=32, n_top=5, n_intervals=5, left=4, right=2)
    build_run(out, cfg, progress=False, model=model, tokenizer=tok)
    return out


def _validators():
    import jsonschema

    batch = json.loads((SCHEMAS / "neuronpedia_batch.schema.json").read_text())
    skipped = json.loads((SCHEMAS / "neuronpedia_skipped_indexes.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(batch)
    return jsonschema.Draft202012Validator(batch), jsonschema.Draft202012Validator(skipped)


def test_schema_rejects_what_the_format_forbids():
    batch, _ = _validators()
    feature = {k: [] for k in batch.schema["$defs"]["feature"]["required"]}
    feature.update(feature_index=0, frac_nonzero=0.1, n_prompts_total=1, n_tokens_in_prompt=8, dataset="x")
    doc = {"model_id": "m", "layer": 1, "sae_set": "s", "sae_id_suffix": None, "features": [feature]}
    assert batch.is_valid(doc)
    for broken in (
        {**doc, "layer": "1"},  # the batch's layer is an int (skipped_indexes' is a string)
        {**doc, "features": [{k: v for k, v in feature.items() if k != "pos_str"}]},
        {**doc, "features": [{**feature, "activations": [{"tokens": ["a"], "values": [1.0]}]}]},
        {k: v for k, v in doc.items() if k != "sae_id_suffix"},
    ):
        assert not batch.is_valid(broken)


def test_neuronpedia_export_validates_for_every_family(family_run, tmp_path, capsys):
    from app.dashboard_data import read_contexts, read_features
    from sae.architectures import trainable
    from sae.saving import load_sae
    from saelab.cli import main

    batch_v, skipped_v = _validators()
    out = tmp_path / "np"
    out.mkdir()
    (out / "stray.txt").write_text("x")  # --force replaces a non-empty folder whole
    argv = ["export", "neuronpedia", str(family_run), "--out", str(out), "--features-per-batch", "12", "--force"]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("wrote") == len(trainable()) and not (out / "stray.txt").exists()
    for arch in trainable():
        folder = out / f"organism_{arch}_{HOOK}_32"  # NeuronpediaRunner's {model_id}_{sae_set}_{hook}_{d_sae}
        feats = read_features(family_run / arch)
        skipped = json.loads((folder / "skipped_indexes.json").read_text())
        skipped_v.validate(skipped)
        dead = sorted(int(f) for f in feats.feature[~(feats.log10_density >= -6)])
        assert skipped["skipped_indexes"] == dead and skipped["layer"] == "1"
        settings = json.loads((folder / "run_settings.json").read_text())
        assert settings["n_features_at_a_time"] == 12 and settings["outputs_dir"] == str(folder)
        live = [f for f in range(32) if f not in dead]
        files = sorted(folder.glob("batch-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        sizes = np.array_split(np.arange(len(live)), int(np.ceil(len(live) / 12)))
        assert [p.name for p in files] == [f"batch-{i}.json" for i in range(len(sizes))]
        seen = []
        for path, part in zip(files, sizes, strict=True):
            doc = json.loads(path.read_text())
            batch_v.validate(doc)
            assert doc["model_id"] == "organism" and doc["layer"] == 1 and doc["sae_set"] == arch
            assert len(doc["features"]) == len(part)
            seen += [f["feature_index"] for f in doc["features"]]
        assert seen == live
        # one feature, field by field against the build
        f = json.loads(files[0].read_text())["features"][0]
        i = f["feature_index"]
        row = feats.iloc[i]
        meta = json.loads((family_run / arch / "dashboard" / "meta.json").read_text())
        positions = meta["n_sequences"] * meta["config"]["context_size"]  # BOS positions count, as SAEDashboard's
        assert positions > meta["n_positions"]
        assert f["frac_nonzero"] == pytest.approx(row["count"] / positions, abs=1e-5)
        norm = float(load_sae(family_run / arch)[0].W_dec[i].norm())  # fold_W_dec_norm: values in unit-decoder units
        assert f["pos_values"] == pytest.approx([round(float(v) / norm, 3) for v in row.pos_values], abs=1e-3)
        assert f["pos_str"][0] == row.pos_tokens[0].replace("Ġ", " ")
        assert f["correlated_features_indices"] == list(row.corr_feat_ids)
        assert sum(f["freq_hist_data_bar_heights"]) == sum(row.act_hist_heights) > 0
        assert len(f["logits_hist_data_bar_heights"]) == 50
        ctx = read_contexts(family_run / arch, i)
        top = [a for a in f["activations"] if a["bin_min"] == -1]
        assert len(top) == int((ctx.group == "top").sum())
        assert top[0]["bin_max"] == pytest.approx(round(float(row.max_act) * norm, 3), abs=1e-3)
        for a in f["activations"]:
            assert len(a["tokens"]) == len(a["values"])
            assert a["values"][a["qualifying_token_index"]] > 0
            assert "<bos>" not in a["tokens"][:1] or a["qualifying_token_index"] == 0
            assert all(v == round(v, 3) for v in a["values"])
        bins = [a for a in f["activations"] if a["bin_min"] != -1]
        assert all(0 <= a["bin_contains"] <= 1 for a in bins)
        assert [a["bin_max"] for a in bins] == sorted((a["bin_max"] for a in bins), reverse=True)


def test_bos_dropped_and_index_shifted_at_the_sequence_start(family_run, organism):
    """A window that starts its sequence loses the BOS and its index moves by one, as
    SAEDashboard's ``tokens[1:]`` and ``qualifying_token_index - 1``."""
    from app.export_neuronpedia import _activation

    tok = organism[1]
    bos = tok.convert_ids_to_tokens(tok.bos_token_id)
    c = {"tokens": [bos, "Ġa", "Ġb"], "acts": [0.0, 1.23456, 0.5], "centre": 1, "row": 64 + 1}
    a = _activation(c, 32, -1, 2.0, -1)
    assert a["tokens"] == [" a", " b"] and a["values"] == [1.235, 0.5] and a["qualifying_token_index"] == 0
    c = {"tokens": ["x", "Ġa", "Ġb"], "acts": [0.1, 1.0, 0.5], "centre": 1, "row": 64 + 5}
    a = _activation(c, 32, -1, 2.0, -1)
    assert a["tokens"] == ["x", " a", " b"] and a["qualifying_token_index"] == 1


def test_neuronpedia_export_refusals(family_run, tmp_path, capsys):
    from saelab.cli import main

    out = tmp_path / "np"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["export", "neuronpedia", str(family_run), "--out", str(out)]) == 2
    assert "not empty; pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    built = family_run / "topk" / "dashboard" / "meta.json"
    meta = json.loads(built.read_text())
    try:  # a build from before the feature tables: rebuild, not a half-filled export
        built.write_text(json.dumps({**meta, "schema_version": 1}))
        assert main(["export", "neuronpedia", str(family_run), "--out", str(tmp_path / "np2")]) == 2
        assert "older saelab" in capsys.readouterr().err and not (tmp_path / "np2").exists()
    finally:
        built.write_text(json.dumps(meta))


def _peer_python() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    for base in (root, Path("/work/main")):
        py = base / "bench" / ".peers" / "saelens" / "bin" / "python"
        if py.is_file():
            return py
    return None


def test_hf_export_loads_back_identically(family_run, tmp_path, capsys, monkeypatch):
    import yaml

    from sae.architectures import trainable
    from sae.saving import load_sae
    from saelab.cli import main

    out = tmp_path / "repo"
    assert main(["export", "hf", str(family_run), "me/organism-saes", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    readme = (out / "README.md").read_text()
    header = yaml.safe_load(readme.split("---")[1])
    assert header["library_name"] == "saelab" and HOOK in header["tags"]
    snippet = yaml.safe_load(readme.split("```yaml")[1].split("```")[0])
    release = snippet["organism-saes"]
    assert release["repo_id"] == "me/organism-saes" and release["model"] == "organism"
    assert sorted(s["id"] for s in release["saes"]) == sorted(trainable())
    x = torch.randn(40, 128, generator=torch.Generator().manual_seed(0))
    for arch in trainable():
        assert f"`{arch}`" in readme
        assert sorted(p.name for p in (out / arch).iterdir()) >= ["cfg.json", "sae_weights.safetensors"]
        exported, _ = load_sae(out / arch)
        original, _ = load_sae(family_run / arch)
        torch.testing.assert_close(exported.encode(x), original.encode(x), atol=0, rtol=0)
        torch.testing.assert_close(exported.decode(exported.encode(x)), original.decode(original.encode(x)))
        from app.dashboard_data import read_features

        density = read_features(family_run / arch).density.to_numpy()
        assert np.allclose(exported.log_sparsity.numpy(), np.log10(density.astype(np.float32) + 1e-10), atol=1e-6)
    # --push never reaches the network offline: one line, and the folder stays for a later push
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["export", "hf", str(family_run), "me/organism-saes", "--out", str(out), "--force", "--push"]) == 2
    assert "hub is disabled" in capsys.readouterr().err and (out / "README.md").is_file()


@pytest.mark.slow
def test_hf_export_loads_in_saelens(family_run, tmp_path):
    """SAELens' own ``SAE.load_from_disk`` reads the exported folders (when its venv is there)."""
    import subprocess

    from app.export_hf import export_hf

    py = _peer_python()
    if py is None:
        pytest.skip("no bench/.peers/saelens venv")
    out = export_hf(family_run, "me/organism-saes", tmp_path / "repo")
    script = (
        "import sys, torch; from sae_lens import SAE\n"
        "for d in sys.argv[1:]:\n"
        "    s = SAE.load_from_disk(d); x = torch.randn(4, s.cfg.d_in); print(d, tuple(s.encode(x).shape))\n"
    )
    folders = [str(out / a) for a in ("topk", "relu", "jumprelu_ste", "gated")]
    proc = subprocess.run([str(py), "-c", script, *folders], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("(4, 32)") == len(folders)
