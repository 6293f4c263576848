"""The training benchmark's plumbing: every side's data, its sides, its tables and figures."""

from __future__ import annotations

import argparse
import json

import pytest
import torch


def _args(*argv: str) -> argparse.Namespace:
    from bench import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_side_steps_through_the_same_batches():
    from bench.peer_timing import dead_mask, shared_batches
    from bench.train import activations

    p = {"seed": 3, "batch_size": 5, "d_in": 7, "device": "cpu", "d_sae": 20, "dead_fraction": 0.1}
    for mine, theirs in zip(activations(4, 5, 7, 3, "cpu"), shared_batches(p), strict=True):
        assert torch.equal(mine, theirs)
    assert dead_mask(p).tolist() == [True, True] + [False] * 18


def test_sides_and_their_errors():
    from bench.train import sides
    from sae.errors import ConfigError

    assert sides(_args()) == ["sparse", "dense", "saelens", "sparsify", "dictionary_learning"]
    assert sides(_args("--peers", "sparsify", "--no-dense")) == ["sparse", "sparsify"]
    assert sides(_args("--no-peers")) == ["sparse", "dense"]
    with pytest.raises(ConfigError, match="--peers: unknown nope"):
        sides(_args("--peers", "nope"))


def test_families_and_their_sides():
    from bench.train import families, sides
    from sae.errors import ConfigError

    assert families(_args()) == ["topk"]
    assert families(_args("--families", "jumprelu_ste,gated,topk")) == ["jumprelu_ste", "gated", "topk"]
    assert sides(_args(), "gated") == ["sparse", "dense"]  # the peers are TopK-only
    assert sides(_args("--no-dense"), "jumprelu_ste") == ["sparse"]
    for bad in ("relu", "nope", ""):
        with pytest.raises(ConfigError, match="--families: unknown"):
            families(_args("--families", bad))


@pytest.mark.parametrize("arch", ["jumprelu_ste", "gated"])
def test_a_threshold_familys_trained_state_fires_about_k_per_row(arch):
    from bench.train_side import build

    p = {"d_in": 16, "d_sae": 64, "k": 4, "batch_size": 512, "seed": 0, "device": "cpu", "kernel": "sparse"}
    x = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))  # the side's first batch
    for state, (low, high) in (("trained", (3.5, 4.5)), ("init", (16, 48))):
        family, sae = build({**p, "family": arch, "state": state})
        with torch.no_grad():
            fired = (sae.training_pass(x).codes > 0).sum(1).float().mean()
        assert family == arch and low <= float(fired) <= high, (state, float(fired))


def test_the_saelab_side_reports_a_step_and_its_memory():
    from bench.train import run_side

    payload = {"d_in": 16, "d_sae": 64, "k": 4, "batch_size": 32, "steps": 1, "dead_fraction": 0.1}
    got = run_side("sparse", {**payload, "threads": 1, "seed": 0, "device": "cpu", "lr": 2e-4})
    assert got["median_step_seconds"] > 0 and got["peak_rss_mib"] > 50 and got["kernel"] == "sparse"
    assert got["family"] == "topk"
    got = run_side("dense", {**payload, "threads": 1, "seed": 0, "device": "cpu", "lr": 2e-4, "family": "gated"})
    assert got["family"] == "gated" and got["kernel"] == "dense" and got["median_step_seconds"] > 0


HOLD_AND_SPAWN = """
import subprocess, sys
import torch
held = torch.ones(3 * 2**27)  # 1.5 GiB, touched
child = "from bench.peer_timing import peak_rss; print(*peak_rss())"
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""


def test_a_sides_peak_rss_is_its_own_not_the_benchmarks():
    """Linux carries ``ru_maxrss`` from parent to child through fork and exec, so a side
    started by a bench process that once held 1.5 GiB would read at least that; VmHWM is
    the child's own (a Python with torch imported: a few hundred MiB)."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", HOLD_AND_SPAWN], capture_output=True, text=True, check=True, cwd=root, timeout=120
    )
    mib, source = out.stdout.split()
    assert source == "VmHWM" and 20 < float(mib) < 1000, out.stdout


def test_rows_before_vmhwm_carry_a_warning_on_their_memory():
    from bench.results_doc import rss_caveat

    assert rss_caveat([{"peak_rss_from": "VmHWM"}] * 2) == []
    assert "upper bound" in " ".join(rss_caveat([{"peak_rss_from": "VmHWM"}, {}]))


def _row(axis, d_sae, k, scale=1.0):
    return {
        "axis": axis,
        "d_in": 768,
        "d_sae": d_sae,
        "k": k,
        "batch_size": 4096,
        "device": "cpu",
        "saelab_tokens_per_s": 1e6 / d_sae * scale,
        "saelab_peak_rss_mib": 300.0 + d_sae / 100,
        "step_over_encoder_gemm": 1.4,
        "sparsify_tokens_per_s": 5e5 / d_sae,
        "sparsify_peak_rss_mib": 400.0,
        "speedup_vs_sparsify": 2.0 * scale,
        "sparsify_version": "1.3.3",
        "sparsify_optimizer": "signum",
    }


def test_scaling_is_drawn_per_axis_and_per_side(tmp_path):
    from bench.figures import sections, write_page
    from bench.results_doc import section

    rows = [_row("d_sae", d, 32) for d in (4096, 8192)] + [_row("k", 16384, k) for k in (16, 32, 64)]
    (tmp_path / "scaling.json").write_text(json.dumps({"kind": "bench", "name": "scaling", "result": rows}))
    (tmp_path / "other.json").write_text(json.dumps({"kind": "bench", "name": "other", "result": {"x": 1}}))
    [drawn] = sections(tmp_path)
    tokens_by_d_sae, _, tokens_by_k, _ = drawn.figures
    assert [t.name for t in tokens_by_d_sae.data] == ["saelab (fused sparse)", "sparsify"]
    assert list(tokens_by_d_sae.data[0].x) == [4096, 8192] and list(tokens_by_k.data[1].x) == [16, 32, 64]
    assert tokens_by_d_sae.data[0].y[0] == pytest.approx(1e6 / 4096)
    page = write_page(tmp_path, tmp_path / "page.html").read_text()
    assert page.count('class="plotly-graph-div"') == 4
    text = "\n".join(section(tmp_path / "scaling.json"))
    assert "| k | 16,384 | 64 | 61 | 31 | 1.40 | 464 / 400 |" in text


def test_the_results_page_shows_every_peer_of_the_training_benchmark(tmp_path):
    from bench.results_doc import section

    rows = [{**_row("d_sae", 8192, 32), "saelens_tokens_per_s": 100.0, "speedup_vs_saelens": 1.2}]
    (tmp_path / "train.json").write_text(json.dumps({"kind": "bench", "name": "train", "result": rows}))
    text = "\n".join(section(tmp_path / "train.json"))
    assert "| d_sae | k | saelab sparse tok/s | saelab dense tok/s | SAELens tok/s | sparsify tok/s |" in text
    assert "sparsify 1.3.3 with signum" in text


def test_each_dead_fraction_gets_its_rows():
    from bench.train import run

    args = _args(
        *("--d-in", "16", "--d-sae", "64", "--k", "4", "--batch-size", "32", "--steps", "1", "--rounds", "1"),
        *("--threads", "1", "--no-peers", "--no-dense", "--dead-fraction", "0.1", "0"),
    )
    rows = run(args)
    assert [(r["family"], r["dead_fraction"], r["d_sae"]) for r in rows] == [("topk", 0.1, 64), ("topk", 0.0, 64)]
    assert all(r["step_over_encoder_gemm"] > 0 for r in rows)


def test_silent_dead_latents_fire_on_about_half_a_percent_of_rows():
    """``--dead-kind silent``: every side lowers its dead latents' encoder biases to −2.6‖w_j‖,
    so on the shared standard-normal batches each is above 0 on ~0.5% of rows; ``marked``
    leaves them as initialised (about half above 0, as a live latent)."""
    from bench.peer_timing import SILENT_BIAS_SD, dead_mask, shared_batches
    from bench.train_side import build

    p = {"d_in": 32, "d_sae": 200, "k": 4, "batch_size": 4096, "seed": 0, "device": "cpu", "kernel": "sparse"}
    p["dead_fraction"] = 0.1
    x = shared_batches(p)[0]
    dead = dead_mask(p)
    shares = {}
    for kind in ("marked", "silent"):
        _, sae = build({**p, "dead_kind": kind})
        with torch.no_grad():
            shares[kind] = float((sae.pre_acts(x)[:, dead] > 0).float().mean())
            if kind == "silent":
                expected = -SILENT_BIAS_SD * sae.W_enc.T[dead].norm(dim=1)
                torch.testing.assert_close(sae.b_enc[dead], expected)
                assert (sae.b_enc[~dead] == 0).all()  # live latents untouched
    assert 0.4 < shares["marked"] < 0.6 and 0.001 < shares["silent"] < 0.012, shares


def test_each_dead_kind_gets_its_rows_and_a_run_can_keep_the_others(tmp_path):
    from bench.results_doc import section
    from bench.train import merge_saved, run

    args = _args(
        *("--d-in", "16", "--d-sae", "64", "--k", "4", "--batch-size", "32", "--steps", "1", "--rounds", "1"),
        *("--threads", "1", "--no-peers", "--no-dense", "--dead-fraction", "0.1", "0"),
        *("--dead-kind", "marked", "silent"),
    )
    rows = run(args)
    # with none dead the two kinds are one measurement: no silent row at 0%
    assert [(r["dead_fraction"], r["dead_kind"]) for r in rows] == [(0.1, "marked"), (0.0, "marked"), (0.1, "silent")]
    old = {"name": "train", "created": "then", "args": {}, "result": [{**r, "saelab_tokens_per_s": 1.0} for r in rows]}
    machine = {"load_average": [0.5, 0.5, 0.5]}
    new = {"name": "train", "created": "now", "args": {"keep_other_rows": True}, "machine": machine, "result": rows[2:]}
    merged = merge_saved(old, new)
    assert merged["result"] == old["result"][:2] + rows[2:]  # the silent row replaced, the others kept
    assert [len(r["rows"]) for r in merged["runs"]] == [2, 1] and merged["runs"][1]["created"] == "now"
    assert merge_saved(old, {**new, "args": {}})["result"] == rows[2:]  # without the flag a run replaces the file
    (tmp_path / "train.json").write_text(json.dumps({"kind": "bench", "name": "train", "result": merged["result"]}))
    text = "\n".join(section(tmp_path / "train.json"))
    assert "| topk | 10% silent | 64 | 4 |" in text and "| topk | 10% | 64 | 4 |" in text
