"""The suite end to end on a tiny trained run: results schema, splice checks, report, CLI errors."""

from __future__ import annotations

import json

import pytest
import torch

from evals.suite_config import SuiteConfig


def test_results_schema_and_definitions(tiny_results):
    _results, out = tiny_results
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["kind"] == "eval" and on_disk["schema_version"] == 1
    assert "E||x||^2 - ||E x||^2" in on_disk["definitions"]["explained_variance"]
    assert on_disk["definitions"]["ce_loss_recovered_zero"] == "(CE_zero - CE_sae) / (CE_zero - CE_clean)"
    by_name = {s["name"]: s for s in on_disk["saes"]}
    assert set(by_name) == {"topk", "attn", "head5"}
    for s in on_disk["saes"]:
        for key in ("architecture", "model", "hook", "run_dir", "sae_dir", "d_sae"):
            assert s[key] is not None, key
        m = s["metrics"]
        for key in (
            "ce_loss_recovered_zero",
            "ce_loss_recovered_mean",
            "kl_div",
            "explained_variance",
            "fvu",
            "l0",
            "dead_fraction",
            "relative_reconstruction_bias",
            "cosine_similarity",
            "underused_fraction",
        ):
            assert isinstance(m[key], float), key
        assert m["fvu"] == pytest.approx(1 - m["explained_variance"])
        # the splice check: x_hat + (x - x_hat) reproduces the clean model
        assert m["ce_loss_with_sae_and_error"] == pytest.approx(m["splice_check_ce_clean"], abs=1e-4)
        assert m["kl_div_with_error"] < 1e-5
        assert m["splice_check_max_abs_diff"] < 1e-6  # the hook sees the activation the cache holds
        assert len(s["densities"]) == s["d_sae"]
        assert sum(s["density_histogram"]["counts"]) + s["density_histogram"]["dead"] == s["d_sae"]
    assert by_name["topk"]["metrics"]["l0"] == pytest.approx(8.0)  # TopK: exactly k on every token
    resid = by_name["topk"]["metrics"]  # zero-ablating the residual stream wrecks the model (one head need not)
    assert resid["ce_loss_zero_ablation"] > resid["ce_loss_clean"] + 1
    assert by_name["head5"]["hook"] == "blocks.2.attn.hook_z[5]"
    assert by_name["attn"]["attention"]["head_attribution"]["n_heads"] == 8
    for ex in by_name["attn"]["attention"]["dfa_examples"]:
        assert ex["dfa_sum"] == pytest.approx(ex["pre_activation"] - ex["effective_bias"], abs=1e-3)
    assert by_name["head5"]["attention"]["head_attribution"] == {"single_head": 5}
    page = (out / "report.html").read_text()
    assert page.count('class="plotly-graph-div"') >= 6 and "Splice check" in page


def test_identity_and_zero_saes_by_hand(organism, tmp_path):
    """Identity: FVU 0, CE recovered 1 (both baselines); zero SAE: CE recovered 0 vs zero ablation."""
    from evals.core.evaluate import EvalTarget, evaluate_saes, mean_activations
    from sae.architectures import sae_class
    from sae.hooks import resolve_hook
    from sae.store import StoreConfig, token_batches

    model, tok = organism
    cls = sae_class("relu")
    entries = []
    for hook in ("blocks.1.hook_resid_post", "blocks.1.attn.hook_z", "blocks.2.attn.hook_z[3]"):
        spec = resolve_hook(model, hook)
        d = spec.d_in
        identity = cls(cls.config_class(architecture="relu", d_in=d, d_sae=2 * d))
        zero = cls(cls.config_class(architecture="relu", d_in=d, d_sae=4))
        with torch.no_grad():
            eye = torch.eye(d)  # f = (relu(x), relu(-x)); x_hat = relu(x) - relu(-x) = x
            identity.W_enc.copy_(torch.cat([eye, -eye], 1))
            identity.W_dec.copy_(torch.cat([eye, -eye], 0))
            identity.b_enc.zero_()
            identity.b_dec.zero_()
            for p in zero.parameters():
                p.zero_()
        entries += [EvalTarget(f"id {hook}", identity.eval(), spec), EvalTarget(f"zero {hook}", zero.eval(), spec)]

    def batches(seed):
        return token_batches(
            StoreConfig(
                hooks=["blocks.1.hook_resid_post"], n_tokens=1024, context_size=32, lm_batch_size=32, seed=seed
            ),
            tok,
        )

    means = mean_activations(model, tok, [e.spec for e in entries], batches(7))
    res = evaluate_saes(model, tok, entries, batches(8), means, progress=False)
    for hook in ("blocks.1.hook_resid_post", "blocks.1.attn.hook_z", "blocks.2.attn.hook_z[3]"):
        ident, zero = res[f"id {hook}"], res[f"zero {hook}"]
        assert ident["fvu"] == pytest.approx(0.0, abs=1e-10)
        assert ident["ce_loss_recovered_zero"] == pytest.approx(1.0, abs=1e-6)
        assert ident["ce_loss_recovered_mean"] == pytest.approx(1.0, abs=1e-6)
        assert ident["kl_div"] == pytest.approx(0.0, abs=1e-7)
        assert zero["ce_loss_recovered_zero"] == pytest.approx(0.0, abs=1e-6)
        assert zero["ce_loss_with_sae"] == pytest.approx(zero["ce_loss_zero_ablation"], abs=1e-6)
        assert zero["fvu"] >= 1.0 and zero["dead_fraction"] == 1.0
    # ablating the middle residual stream is catastrophic; mean ablation less so than zero
    resid = res["id blocks.1.hook_resid_post"]
    assert resid["ce_loss_zero_ablation"] > resid["ce_loss_mean_ablation"] > resid["ce_loss_clean"] + 1


def test_mean_ablation_uses_the_mean_over_non_bos_tokens(organism):
    from evals.core.evaluate import mean_activations
    from sae.hooks import resolve_hook

    model, tok = organism
    spec = resolve_hook(model, "blocks.1.hook_resid_post")
    tokens = torch.tensor([[tok.bos_token_id] + tok("the cat sat on the mat")["input_ids"]])
    _, cache = model.run_with_cache(tokens, names_filter=[spec.tl_name])
    expected = cache[spec.tl_name][0, 1:].mean(0)
    got = mean_activations(model, tok, [spec], [tokens])[spec.name]
    assert torch.allclose(got, expected, atol=1e-5)


def test_cli_writes_results_and_report(tiny_run, tmp_path, capsys):
    from saelab.cli import main

    out = tmp_path / "eval"
    argv = ["eval", "--suite", "configs/eval_suite.yaml", str(tiny_run), "--out", str(out), "--quiet"]
    for key, value in (
        ("data.n_tokens", 1024),
        ("data.lm_batch_size", 32),
        ("mean_ablation.n_tokens", 512),
        ("synthetic.enabled", "false"),
        ("attention.dfa_prompts", 1),
    ):
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "CE rec 0" in printed
    assert (out / "results.json").is_file() and (out / "report.html").is_file()


def _one_line(capsys, argv, code):
    from saelab.cli import main

    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("saelab: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_cli_errors_are_one_line(tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dta: {}\n")
    assert "key 'dta': unknown key" in _one_line(capsys, ["eval", "--suite", str(bad), str(tiny_run)], 2)
    err = _one_line(capsys, ["eval", "--suite", "configs/eval_suite.yaml", str(tmp_path / "none")], 1)
    assert "no such run directory" in err
    # the run trained on organism text with seed 0: evaluating on seed 0 is refused
    err = _one_line(
        capsys,
        [
            "eval",
            "--suite",
            "configs/eval_suite.yaml",
            str(tiny_run),
            "--set",
            "data.seed=0",
            "--out",
            str(tmp_path / "o"),
        ],
        2,
    )
    assert "trained on generated text with seed 0" in err
    assert "needs a 'train' section" in _one_line(
        capsys, ["eval", "--suite", "configs/eval_suite.yaml", "--set", "claims=true"], 2
    )


def test_claims_verdicts_from_hand_made_results():
    from evals.claims import evaluate_claims

    def sae(name, seed, **m):
        base = {"l0": 16.0, "fvu": 0.1, "dead_fraction": 0.0, "underused_fraction": 0.1, "delta_ce": 0.1}
        return {"name": name, "architecture": name, "train_seed": seed, "metrics": {**base, **m}}

    saes = []
    for seed in range(3):
        saes += [
            sae("topk", seed, fvu=0.10, dead_fraction=0.01),
            sae("mutual_choice", seed, fvu=0.09),
            sae("feature_choice", seed, underused_fraction_zipf=0.05, dead_fraction=0.0 if seed else 0.001),
            sae("feature_choice_auxk", seed, underused_fraction_zipf=0.08),
            sae("gsae", seed, delta_ce=0.05 if seed < 2 else 0.2),
            sae("vsae", seed, dead_fraction=0.3, l0=20.0),
        ]
    cfg = SuiteConfig.model_validate(
        {
            "train": {
                "seeds": [0, 1, 2],
                "run": {
                    "saes": [
                        {"name": n, "hook": "blocks.1.hook_resid_post", "sae": {"architecture": n, "d_sae": 64, "k": 4}}
                        for n in ("topk", "vsae")
                    ]
                },
            },
            "claims": True,
            "l0_target": 16,
        }
    )
    out = evaluate_claims(saes, cfg)
    verdicts = {c["key"]: c["verdict"] for c in out["claims"]}
    assert verdicts == {
        "mc_reconstructs_better": "held",
        "fc_no_dead": "mixed",
        "aux_zipf_fewer_underused": "held",
        "gsae_lower_delta_ce": "mixed",
        "vsae_more_dead": "not matched",
        "matryoshka_absorbs_less": "not tested",  # no matryoshka SAE here
        "mc_absorbs_less": "not tested",  # the absorption eval did not run
    }
    mc = next(c for c in out["claims"] if c["key"] == "mc_reconstructs_better")
    assert mc["difference"]["mean"] == pytest.approx(-0.01) and mc["seeds"] == 3
    assert "AuxK matched" in out["notes"][0]
    for s in saes:
        if s["name"].startswith("feature_choice"):
            s["metrics"]["underused_fraction_zipf"] = 0.0
    tie = {c["key"]: c["verdict"] for c in evaluate_claims(saes, cfg)["claims"]}
    assert tie["aux_zipf_fewer_underused"] == "no difference"
    row = next(r for r in out["table"] if r["name"] == "vsae")
    assert row["l0"]["mean"] == 20.0 and not row["l0_in_band"]


def test_the_claims_suite_runs_end_to_end_at_a_toy_budget(tmp_path, capsys):
    """configs/claims.yaml itself, shrunk: every SAE trains once per seed from that seed's
    own weights, and the claims table carries numbers and a verdict for every claim."""
    from evals.claims import CLAIMS
    from saelab.cli import main

    out = tmp_path / "claims"
    argv = ["eval", "--suite", "configs/claims.yaml", "--out", str(out), "--quiet"]
    for key, value in (
        ("train.seeds", "[0, 1]"),
        ("train.run.data.n_tokens", 4096),
        ("data.n_tokens", 1024),
        ("mean_ablation.n_tokens", 1024),
        ("train.run.trainer.batch_size", 512),
    ):
        argv += ["--set", f"{key}={value}"]
    assert main(argv) == 0
    doc = json.loads((out / "results.json").read_text())
    ids = {s["id"] for s in doc["saes"]}
    assert {"train/topk.s0", "train/topk.s1", "train/vsae.s0", "train/feature_choice_auxk.s1"} <= ids
    # 8 trained SAEs per seed, and the g-SAE evaluated a second time with the gradient at inference
    assert {"train/vsae_paper.s0", "train/gsae.s1_grad_inference"} <= ids
    assert len(ids) == 18 and {s["train_seed"] for s in doc["saes"]} == {0, 1}
    rules = {s["id"]: s.get("inference_rule") for s in doc["saes"]}
    assert rules["train/gsae.s0"] == "no_gradient" and rules["train/gsae.s0_grad_inference"] == "gradient"
    # the named rows of the claims table (items 3 and 4 of issue 18), 2 seeds each
    table = {r["name"]: r for r in doc["claims"]["table"]}
    for name, words in (
        ("vsae", "fair-comparison"),
        ("vsae_paper", "paper's setting"),
        ("gsae", "no gradient at inference"),
        ("gsae_grad_inference", "gradient at inference"),
    ):
        assert words in table[name]["setting"] and table[name]["seeds"] == 2, (name, table[name])
    by_id = {s["id"]: s["metrics"] for s in doc["saes"]}
    assert by_id["train/gsae.s0"]["l0"] == by_id["train/gsae.s0_grad_inference"]["l0"] == 16  # k either way
    assert by_id["train/gsae.s0"]["fvu"] != by_id["train/gsae.s0_grad_inference"]["fvu"]  # a different rule
    claims = {c["key"]: c for c in doc["claims"]["claims"]}
    assert set(claims) == {c.key for c in CLAIMS}
    for key in ("matryoshka_absorbs_less", "mc_absorbs_less"):  # configs/claims_absorption.yaml tests these
        assert claims.pop(key)["verdict"] == "not tested"
    for c in claims.values():
        assert c["verdict"] in {"held", "mixed", "not held", "not matched", "no difference"}
        assert len(c["per_seed"]) == 2
    report = (out / "report.html").read_text()
    assert "Claims" in report and "gradient at inference" in report


def test_the_splice_check_reports_a_misaligned_hook(organism):
    """x̂ + (x_clean − x̂) with x_clean the cached clean activation: the clean model when the
    hook is where the cache was taken, a different one (KL to clean > 0, and a nonzero
    live-vs-cached difference) when it is one layer off or one position off. With the live
    activation in place of x_clean (the old check) every one of these gave the clean model."""
    from circuits.tasks import ioi
    from evals.core.evaluate import _capture, _run, splice_mask
    from evals.core.splice import kl_to_clean, scored_positions, splice_hook, token_losses
    from sae.hooks import resolve_hook

    model, tok = organism
    tokens = ioi.make_batch(tok, 4, seed=0).tokens
    keep = splice_mask(tokens, tok)
    scored = scored_positions(tokens, keep, tok.pad_token_id)
    spec = resolve_hook(model, "blocks.1.hook_resid_post")
    cache: dict = {}
    with torch.no_grad():
        logits = _run(model, tokens, [(spec.tl_name, _capture(cache, spec.tl_name))])
    logp_clean = token_losses(logits, tokens, scored)[1]
    clean = spec.read(cache[spec.tl_name])[keep]
    x_hat = torch.zeros_like(clean)  # any reconstruction: the error term restores x_clean

    def spliced(at, mask):
        seen: dict = {}
        hook = splice_hook(at, "sae_error", mask, x_hat, clean=clean, check=seen)
        with torch.no_grad():
            out = _run(model, tokens, [(at.tl_name, hook)])
        return float(kl_to_clean(logp_clean, token_losses(out, tokens, scored)[1]).mean()), seen["max_abs_diff"]

    kl, drift = spliced(spec, keep)
    assert kl < 1e-6 and drift == 0.0
    kl, drift = spliced(resolve_hook(model, "blocks.0.hook_resid_post"), keep)  # one layer off
    assert kl > 1e-3 and drift > 1e-2
    kl, drift = spliced(spec, torch.roll(keep, 1, dims=1))  # one position off
    assert kl > 1e-3 and drift > 1e-2
    with pytest.raises(ValueError, match="clean"):
        splice_hook(spec, "sae_error", keep, x_hat)
