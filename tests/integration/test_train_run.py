"""``saelab train`` end to end on the organism, at toy sizes: run dir, summary, resume, bad configs."""

from __future__ import annotations

import json

import pytest
import torch

from sae.heldout import measure
from sae.saving import load_sae
from saelab.cli import main

CONFIG = """
data: {model: organism, n_tokens: 12000, context_size: 32, lm_batch_size: 32, buffer_rows: 4096}
saes:
  - hook: blocks.1.hook_resid_post
    sae: {architecture: topk, d_sae: 128, k: 4}
  - hook: blocks.1.hook_resid_post
    sae: {architecture: gsae, d_sae: 128, k: 4, beta: 2.0}
  - hook: blocks.1.attn.hook_z
    sae: {architecture: mutual_choice, d_sae: 128, k: 4}
trainer: {batch_size: 512, lr: 0.003, warmup_steps: 2, checkpoint_every: 5, log_every: 5, wandb_project: null}
heldout: {n_tokens: 3000, pca_rank: 4, l0_target: 4, l0_tolerance: 0.1}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    cfg = root / "run.yaml"
    cfg.write_text(CONFIG)
    out = root / "run"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    return cfg, out


def test_run_dir_holds_every_sae_and_a_summary(trained):
    _, out = trained
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["kind"] == "sweep" and summary["model"] == "organism"
    names = {"topk", "gsae", "mutual_choice@blocks.1.attn.hook_z"}
    assert set(summary["saes"]) == names
    assert summary["heldout_rows"] == 3000
    for name, row in summary["saes"].items():
        assert {"hook", "fvu", "l0", "dead_fraction", "pca_fvu"} <= set(row)
        assert 0 < row["fvu"] < 1.5 and 0 <= row["dead_fraction"] <= 1
        _sae, cfg = load_sae(out / name)
        assert cfg["saelab"]["hook"] == row["hook"]
    assert summary["saes"]["topk"]["l0"] == pytest.approx(4.0)
    assert summary["saes"]["topk"]["l0_in_band"]
    flagged = [n for n, r in summary["saes"].items() if not r["l0_in_band"]]
    assert summary["outside_l0_band"] == flagged  # listed, not hidden
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == summary["train_steps"] and set(lines[-1]["saes"]) == names
    assert sum(lines[-1]["saes"]["topk"]["density_hist"]) == 128


def test_saved_saes_reproduce_the_summary_on_the_held_out_stream(trained):
    """The summary's numbers come from the saved (scale-folded) SAEs on raw activations."""
    cfg_path, out = trained
    from sae.config import load_config
    from sae.train_run import RunConfig, heldout_scores

    cfg = load_config(RunConfig, cfg_path)
    saes = {
        name: (load_sae(out / name)[0], json.loads((out / name / "heldout.json").read_text())["hook"])
        for name in ("topk", "gsae")
    }
    again, rows = heldout_scores(cfg, saes, None, None, progress=False)
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert rows == 3000
    for name in saes:
        for key in ("fvu", "l0", "dead_fraction", "pca_fvu"):
            assert again[name][key] == pytest.approx(summary["saes"][name][key], rel=1e-5, abs=1e-7)


def test_rerunning_resumes_instead_of_retraining(trained, tmp_path):
    cfg, out = trained
    before = (out / "topk" / "sae_weights.safetensors").read_bytes()
    steps = json.loads((out / "checkpoint" / "state.json").read_text())["step"]
    assert main(["train", str(cfg), "--out", str(out), "--quiet", "--set", "heldout.n_tokens=1000"]) == 0
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == steps
    assert (out / "topk" / "sae_weights.safetensors").read_bytes() == before


def test_another_run_into_the_same_dir_is_refused(trained, capsys):
    cfg, out = trained
    before = (out / "run_config.json").read_text()
    assert main(["train", str(cfg), "--out", str(out), "--quiet", "--set", "trainer.lr=0.01"]) == 1
    err = capsys.readouterr().err.strip()
    assert "holds a different run" in err and "\n" not in err
    assert (out / "run_config.json").read_text() == before


def test_measure_matches_a_naive_computation():
    torch.manual_seed(0)
    from sae.architectures import sae_class

    cls = sae_class("topk")
    sae = cls(cls.config_class(d_in=6, d_sae=20, k=2)).eval()
    x = torch.randn(300, 6) @ torch.randn(6, 6) + 3.0
    got = measure({"s": (sae, "h")}, [{"h": x[:100]}, {"h": x[100:]}], pca_rank=2)["s"]
    with torch.no_grad():
        codes = sae.encode(x)
        x_hat = sae.decode(codes)
    centred = x - x.mean(0)
    assert got["fvu"] == pytest.approx(float((x - x_hat).pow(2).sum() / centred.pow(2).sum()), rel=1e-5)
    assert got["l0"] == pytest.approx(float((codes > 0).sum(-1).float().mean()))
    assert got["dead_fraction"] == pytest.approx(float(((codes > 0).sum(0) == 0).float().mean()))
    s = torch.linalg.svdvals(centred.double())
    assert got["pca_fvu"] == pytest.approx(float(1 - s[:2].pow(2).sum() / s.pow(2).sum()), rel=1e-6)


def _one_line_error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("saelab: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_train_configs_are_one_line(capsys, tmp_path):
    cases = [
        (
            "saes: [{hook: blocks.1.hook_resid_post, sae: {architecture: topk, d_sae: 16, k: 99}}]\n",
            "bad.yaml: key 'saes.0.sae': k (99) is larger than d_sae (16)",
            2,
        ),
        (
            "saes: [{hook: blocks.1.hook_resid_post, sae: {architecture: gatd, d_sae: 16}}]\n",
            "'gatd' is not a trainable family",
            2,
        ),
        (
            "saes: [{hook: blocks.1.hook_resid_pots, sae: {architecture: topk, d_sae: 16, k: 2}}]\n",
            "unknown hook point",
            1,
        ),
        (
            "saes: [{hook: blocks.1.hook_resid_post, sae: {architecture: topk, d_sae: 16, k: 2, d_in: 7}}]\n",
            "key 'd_in': 7 does not match",
            2,
        ),
        (
            "saes: [{hook: blocks.1.hook_resid_post, sae: {architecture: topk, d_sae: 16, k: 2}}]\ntrainer: {lr: -1}\n",
            "key 'trainer.lr'",
            2,
        ),
        ("saes: []\n", "key 'saes'", 2),
        (
            "saes: [{hook: blocks.1.hook_resid_post, sae: {architecture: topk, d_sae: 16, k: 2}}]\n"
            "data: {n_tokens: -3}\n",
            "bad.yaml: key 'data.n_tokens'",
            2,
        ),
    ]
    for text, msg, exit_code in cases:
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(text)
        err = _one_line_error(capsys, ["train", str(cfg), "--out", str(tmp_path / "out"), "--quiet"], exit_code)
        assert msg in err, err
        assert not (tmp_path / "out").exists()


def test_set_overrides_reach_list_items():
    from sae.config import apply_overrides, parse_overrides
    from sae.errors import ConfigError

    data = {"saes": [{"sae": {"k": 4, "d_sae": 8}}, {"sae": {"k": 2}}], "trainer": {"lr": 1.0}}
    got = apply_overrides(data, parse_overrides(["saes.1.sae.k=8", "trainer.lr=0.5", "heldout=null"]))
    assert got == {"saes": [{"sae": {"k": 4, "d_sae": 8}}, {"sae": {"k": 8}}], "trainer": {"lr": 0.5}, "heldout": None}
    assert data["saes"][1]["sae"]["k"] == 2  # the input is not modified
    with pytest.raises(ConfigError, match="has no item '5'"):
        apply_overrides(data, parse_overrides(["saes.5.sae.k=8"]))


def test_an_sae_seed_fixes_its_initial_weights_whatever_else_the_run_holds():
    from sae.train_run import RunConfig, build_saes

    def init(saes: list[dict]) -> dict:
        torch.manual_seed(0)
        cfg = RunConfig.model_validate({"saes": saes, "heldout": None})
        return {name: sae.W_dec.detach().clone() for name, (sae, _) in build_saes(cfg, lambda hook: 16).items()}

    spec = {"hook": "blocks.0.hook_resid_post", "seed": 7}
    alone = init([{**spec, "name": "a", "sae": {"architecture": "topk", "d_sae": 32, "k": 2}}])
    crowd = init(
        [
            {"hook": spec["hook"], "name": "x", "sae": {"architecture": "relu", "d_sae": 32}},
            {**spec, "name": "a", "sae": {"architecture": "topk", "d_sae": 32, "k": 2}},
            {**spec, "name": "b", "sae": {"architecture": "mutual_choice", "d_sae": 32, "k": 2}},
        ]
    )
    assert torch.equal(alone["a"], crowd["a"]) and torch.equal(crowd["a"], crowd["b"])
    assert not torch.equal(crowd["x"], crowd["a"])  # unseeded SAEs still draw from the run's stream
