"""``saelab bench peers`` plumbing: scores, rows, the coefficient search and the shared stream (no peer venv)."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from safetensors.torch import save_file

from bench import peer_parity as pp
from bench import peer_stream as ps


def test_heldout_stats_on_a_hand_computed_case():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]])  # mean (2, 1)
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 0.0], [2.0, 2.0]])
    # Σ‖x − x̂‖² = 1 + 0 + 1 = 2; Σ‖x − x̄‖² = (1 + 1) + (1 + 1) + (0 + 4) = 8
    codes = torch.tensor([[0.0, 2.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    row_l0, fires = ps.code_counts(codes)
    assert row_l0.tolist() == [1, 2, 0] and fires.tolist() == [1, 2, 0, 0]
    got = ps.heldout_stats(x, x_hat, row_l0, fires)
    assert got == {"fvu": pytest.approx(0.25), "l0": pytest.approx(1.0), "dead_fraction": pytest.approx(0.5)}


def test_reconstruct_all_chunks_like_one_pass():
    torch.manual_seed(0)
    x = torch.randn(10, 3)
    W = torch.randn(3, 5)

    def fn(rows):
        codes = (rows @ W).relu()
        return codes @ W.T, codes

    out = ps.reconstruct_all(fn, x, chunk=4)
    whole_hat, whole_codes = fn(x)
    torch.testing.assert_close(out["x_hat"], whole_hat)
    assert out["row_l0"].tolist() == (whole_codes != 0).sum(1).tolist()
    assert out["fires"].tolist() == (whole_codes != 0).sum(0).tolist()


def _args(**kw):
    base = {"batch_size": 100, "d_sae": 64, "l0": 8, "threads": 1}
    return argparse.Namespace(**{**base, **kw})


def test_a_row_has_every_field_and_the_ratios():
    ours = {"seconds_per_step": 0.5, "steps": 40, "train_seconds": 20.0, "config": {"sae": {"k": 8}}}
    peer = {"seconds_per_step": 1.0, "steps": 40, "train_seconds": 40.0, "config": {"x": 1}, "peer_version": "9.9"}
    row = pp.row(
        pp.PAIRS[0],
        "topk",
        ours,
        peer,
        {"fvu": 0.105, "l0": 8.0, "dead_fraction": 0.0},
        {"fvu": 0.1, "l0": 8.5, "dead_fraction": 0.25},
        _args(),
    )
    for key in (
        *("family", "peer", "peer_version", "fvu", "peer_fvu", "l0", "peer_l0", "dead_fraction"),
        *("peer_dead_fraction", "seconds_per_step", "peer_seconds_per_step", "tokens_per_s", "peer_tokens_per_s"),
        *("n_tokens", "d_sae", "peer_config", "load_average"),
    ):
        assert key in row, key
    assert row["tokens_per_s"] == 200 and row["peer_tokens_per_s"] == 100 and row["tokens_per_s_ratio"] == 2
    assert row["fvu_ratio"] == pytest.approx(1.05) and row["n_tokens"] == 4000 and row["k"] == 8
    assert row["l0_within_10pct"] and row["meets_bar"]  # 1.05 is on the bar, 8 / 8.5 within 10%
    worse = pp.row(pp.PAIRS[0], "topk", ours, peer, {"fvu": 0.11, "l0": 8.0, "dead_fraction": 0}, row_peer(), _args())
    assert not worse["meets_bar"]
    slower = pp.row(pp.PAIRS[0], "topk", {**ours, "train_seconds": 80.0}, peer, ours_ok(), row_peer(), _args())
    assert not slower["meets_bar"] and slower["tokens_per_s_ratio"] == 0.5


def test_speed_is_the_whole_loop_not_the_median_step():
    """A side whose typical step is faster but whose loop takes longer (a costly half of its
    steps, as AuxK's once latents die) is the slower side: tokens/s come from the loop."""
    ours = {"seconds_per_step": 0.4, "steps": 40, "train_seconds": 44.0, "config": {"sae": {"k": 8}}}
    peer = {"seconds_per_step": 0.5, "steps": 40, "train_seconds": 40.0, "config": {}, "peer_version": "9.9"}
    row = pp.row(pp.PAIRS[0], "topk", ours, peer, ours_ok(), row_peer(), _args())
    assert row["seconds_per_step"] < row["peer_seconds_per_step"]
    assert row["tokens_per_s"] == pytest.approx(4000 / 44) and row["peer_tokens_per_s"] == 100
    assert row["tokens_per_s_ratio"] == pytest.approx(40 / 44) and not row["meets_bar"]


def row_peer():
    return {"fvu": 0.1, "l0": 8.0, "dead_fraction": 0.0}


def ours_ok():
    return {"fvu": 0.1, "l0": 8.0, "dead_fraction": 0.0}


def test_a_skipped_pair_says_why_and_keeps_the_keys():
    row = pp.skipped_row(pp.PAIRS[-1], "no transcoder here", _args(n_tokens=1050))
    assert row["skipped"] == "no transcoder here" and row["fvu"] is None and row["peer_fvu"] is None
    assert row["n_tokens"] == 1000  # whole batches only


def test_an_unregistered_family_is_skipped_with_a_reason():
    name, why = pp.resolve(pp.Pair("nothing", ("no_such_family",), "saelens", "topk"))
    assert name is None and "no_such_family" in why
    assert pp.resolve(pp.PAIRS[0]) == ("topk", None)


@pytest.mark.parametrize("increasing", [False, True])
def test_the_coefficient_search_brackets_then_bisects(increasing):
    # L0 falls with a penalty (L0 = 400 / c) or rises with a target-like knob (L0 = 2 c): the
    # search is told neither and finds both
    def trial(c):
        return {"l0": 2 * c if increasing else 400 / c}

    best, trail = pp.coefficient_search(trial, 1.0, 16.0, max_trials=12)
    assert abs(best["l0"] / 16 - 1) <= 0.05 and best["search_stopped"] is None
    assert trail[-1]["l0"] == best["l0"] and trail[-1]["phase"] == "refine"
    # the first round is the start, then ×4 and ÷4 around it
    assert [t["knob"] for t in trail[:3]] == [1.0, 4.0, 0.25]
    # the knobs tried walk toward the target: 400 / c = 16 at c = 25; 2 c = 16 at c = 8
    assert best["knob"] == pytest.approx(8.0 if increasing else 25.0, rel=0.1)


def test_the_search_keeps_the_nearest_trial_when_it_runs_out():
    best, trail = pp.coefficient_search(lambda c: {"l0": 400 / c}, 1.0, 16.0, max_trials=2)
    assert len(trail) == 2 and best["knob"] == 4.0 and best["l0"] == 100.0


def test_the_search_finds_the_target_on_a_curve_that_is_not_monotone():
    # L0 has a minimum (12) at the default and rises on both sides, as a JumpReLU's L0 in λ
    # once the L0 term saturates Adam (SL#720): a search that assumes "L0 too low → lower
    # the penalty" would walk down and never come back; this one brackets 16 either side
    def u(c):
        return {"l0": 12 + 3 * math.log(c) ** 2}

    best, trail = pp.coefficient_search(u, 1.0, 16.0, max_trials=8)
    assert abs(best["l0"] / 16 - 1) <= 0.05 and best["search_stopped"] is None
    assert any(t["phase"] == "refine" for t in trail) and len(trail) <= 6
    # dense check: the knob found is one where the curve is really at the target
    assert 12 + 3 * math.log(best["knob"]) ** 2 == pytest.approx(best["l0"])


def test_the_search_reports_a_minimum_short_of_the_target():
    # L0's minimum (30) is above the target: the nearest trial is reported, with why it stopped
    calls = []

    def u(c):
        calls.append(c)
        return {"l0": 30 + 3 * math.log(c) ** 2}

    best, _ = pp.coefficient_search(u, 4.0, 16.0, max_trials=12)
    assert "does not reach" in best["search_stopped"] and len(calls) < 12
    assert best["l0"] < 30 + 3 * math.log(4.0) ** 2 and best["knob"] == pytest.approx(1.0, rel=0.5)


def test_bad_flags_are_one_line_errors():
    from sae.errors import ConfigError

    good = {"families": ["topk"], "peers": ["saelens"], "n_tokens": 4096, "batch_size": 1024}
    assert [p.peer for p in pp.selected(argparse.Namespace(**good))] == ["saelens"]
    for bad in ({"families": ["topk", "nope"]}, {"peers": ["openai"]}, {"n_tokens": 100}):
        with pytest.raises(ConfigError):
            pp.selected(argparse.Namespace(**{**good, **bad}))


def test_both_sides_read_identical_rows_in_identical_order(tmp_path):
    """The lab's side and each peer script read the file through the same functions: the
    rows, their order and the number of steps agree, and the lab's Trainer consumes them all."""
    from sae.architectures import sae_class
    from sae.trainer import Member, Trainer, TrainerConfig

    gen = torch.Generator().manual_seed(3)
    x, y, held = torch.randn(1050, 6, generator=gen), torch.randn(1050, 6, generator=gen), torch.randn(7, 6)
    path = tmp_path / "stream.safetensors"
    save_file({"train/h": x, "train/h_out": y, "heldout/h": held}, str(path))
    assert torch.equal(ps.read(str(path), "train", "h"), x) and torch.equal(ps.read(str(path), "heldout", "h"), held)
    with pytest.raises(KeyError):
        ps.read(str(path), "train", "missing")

    lab = list(ps.batches({"x": ps.read(str(path), "train", "h")[:1050]}, 100))  # train_ours
    saelens_dl = list(ps.batches(ps.read(str(path), "train", "h")[:1050], 100))  # saelens/dictionary_learning
    sparsify = list(ps.batches({"x": x, "y": y}, 100))  # sparsify (input and target)
    assert len(lab) == len(saelens_dl) == len(sparsify) == ps.steps_for(1050, 100) == 10
    for i, (a, b, c) in enumerate(zip(lab, saelens_dl, sparsify, strict=True)):
        assert torch.equal(a["x"], b) and torch.equal(b, c["x"]) and torch.equal(b, x[100 * i : 100 * (i + 1)])
        assert torch.equal(c["y"], y[100 * i : 100 * (i + 1)])

    seen = []

    def recording(batches):
        for b in batches:
            seen.append(b["x"].clone())
            yield b

    cls = sae_class("topk")
    torch.manual_seed(0)
    sae = cls(cls.config_class(d_in=6, d_sae=8, k=2))
    cfg = TrainerConfig(batch_size=100, warmup_steps=0, wandb_project=None, checkpoint_every=0)
    data = ps.TimedBatches(recording(ps.batches({"x": x}, 100)))
    trainer = Trainer([Member.reading("s", sae, "x")], cfg, tmp_path / "run", progress=False)
    trainer.fit(data, total_steps=10)
    assert trainer.step == 10 and trainer.rows == 1000 and data.fetched == 10
    assert all(torch.equal(s, b) for s, b in zip(seen, saelens_dl, strict=True))
    assert data.seconds_per_step() > 0 and math.isfinite(data.seconds_per_step())


def test_a_peer_script_begins_and_finishes_through_the_shared_stream(tmp_path, monkeypatch, capsys):
    """``begin`` reads the payload and the train rows; ``finish`` writes the held-out outputs
    that saelab scores and prints the one JSON line it reads (what each peer script ends with)."""
    import io
    import json

    gen = torch.Generator().manual_seed(5)
    x, held = torch.randn(300, 4, generator=gen), torch.randn(9, 4, generator=gen)
    path = tmp_path / "stream.safetensors"
    save_file({"train/h": x, "heldout/h": held}, str(path))
    payload = {"stream": str(path), "hook_in": "h", "n_rows": 250, "batch_size": 50, "threads": 1, "seed": 0}
    payload["out"] = str(tmp_path / "out.safetensors")
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(payload)))
    p, rows, steps = ps.begin()
    assert p == payload and torch.equal(rows, x[:250]) and steps == 5

    class Halving:  # a module with an inference path: codes x/2 on the first two latents
        def encode(self, r):
            return torch.cat([r[:, :2] / 2, torch.zeros(r.shape[0], 2)], dim=1)

        def decode(self, codes):
            return codes * 2

    data = ps.TimedBatches(ps.batches(rows, 50))
    for _ in data:
        pass
    ps.finish(p, ps.encode_decode(Halving()), data, 1.5, "9.9", {"k": torch.tensor(3)})
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["peer_version"] == "9.9" and line["steps"] == 5 and line["config"] == {"k": 3}
    out = ps.read_outputs(payload["out"])
    expected = torch.cat([held[:, :2], torch.zeros(9, 2)], dim=1)
    assert torch.equal(out["x_hat"], expected) and torch.equal(out["row_l0"], (held[:, :2] != 0).sum(1))


def test_every_peer_script_runs_its_main():
    """A peer script without its ``__main__`` guard exits 0 having printed nothing (it
    happened): each ``*_parity.py`` must call ``main()`` under the guard."""
    import ast

    from bench.peers import SCRIPTS

    scripts = sorted(SCRIPTS.glob("*.py"))
    assert {s.name for s in scripts} >= {f"{peer}_parity.py" for peer in pp.PEERS}
    for script in scripts:
        tree = ast.parse(script.read_text())
        guards = [
            node
            for node in tree.body
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "main()" in ast.unparse(node)
        ]
        assert guards, f"{script.name} never calls main()"


def test_rows_pick_pairs_and_unknown_rows_are_one_line_errors():
    from sae.errors import ConfigError

    base = {"families": sorted({p.key for p in pp.PAIRS}), "peers": list(pp.PEERS), "n_tokens": 4096}
    args = argparse.Namespace(**base, batch_size=1024, rows="jumprelu:saelens, transcoder:sparsify")
    assert [(p.key, p.peer) for p in pp.selected(args)] == [("jumprelu", "saelens"), ("transcoder", "sparsify")]
    # --rows narrows --families/--peers, it does not widen them
    narrow = argparse.Namespace(**{**base, "peers": ["sparsify"]}, batch_size=1024, rows="jumprelu:saelens")
    assert pp.selected(narrow) == []
    assert len(pp.selected(argparse.Namespace(**base, batch_size=1024, rows=None))) == len(pp.PAIRS)
    for bad in ("jumprelu:sparsify", "jumprelu", "topk:saelens,,"):
        with pytest.raises(ConfigError, match="--rows"):
            pp.parse_rows(bad)


def _doc(rows, created, rows_arg):
    result = [{"pair": k, "peer": p, "fvu": v} for k, p, v in rows]
    return {"result": result, "created": created, "args": {"rows": rows_arg}, "machine": {"load_average": [1, 2, 3]}}


def test_a_rows_run_replaces_its_rows_and_keeps_the_others_in_pair_order():
    old = _doc([("topk", "saelens", 1.0), ("jumprelu", "saelens", 2.0), ("gated", "saelens", 3.0)], "t0", None)
    new = _doc([("jumprelu", "saelens", 20.0), ("topk", "sparsify", 5.0)], "t1", "jumprelu:saelens,topk:sparsify")
    got = pp.merge_saved(old, new)
    assert [(r["pair"], r["peer"], r["fvu"]) for r in got["result"]] == [
        ("topk", "saelens", 1.0),
        ("topk", "sparsify", 5.0),
        ("jumprelu", "saelens", 20.0),
        ("gated", "saelens", 3.0),
    ]
    assert got["created"] == "t1" and [r["created"] for r in got["runs"]] == ["t0", "t1"]
    assert got["runs"][0]["rows"] == ["gated:saelens", "topk:saelens"]
    assert got["runs"][1]["rows"] == ["jumprelu:saelens", "topk:sparsify"]
    # a full run (no --rows) replaces the file; so does a first run
    full = _doc([("topk", "saelens", 9.0)], "t2", None)
    assert pp.merge_saved(got, full) is full and pp.merge_saved(None, new) is new
    # a second --rows run appends to the existing record of runs
    again = pp.merge_saved(got, _doc([("gated", "saelens", 30.0)], "t3", "gated:saelens"))
    assert [r["created"] for r in again["runs"]] == ["t0", "t1", "t3"] and again["result"][-1]["fvu"] == 30.0


def test_saving_a_rows_run_merges_into_the_previous_file(tmp_path, monkeypatch):
    import json

    from bench import commands

    monkeypatch.setattr(commands, "RESULTS_DIR", tmp_path)
    first = argparse.Namespace(device="cpu", rows=None)
    commands._save("peers", [{"pair": "topk", "peer": "saelens", "fvu": 1.0}], first)
    second = argparse.Namespace(device="cpu", rows="gated:saelens")
    commands._save("peers", [{"pair": "gated", "peer": "saelens", "fvu": 2.0}], second)
    saved = json.loads((tmp_path / "peers.json").read_text())
    assert [(r["pair"], r["fvu"]) for r in saved["result"]] == [("topk", 1.0), ("gated", 2.0)]
    assert saved["args"]["rows"] == "gated:saelens" and len(saved["runs"]) == 2


def test_a_no_save_run_prints_and_leaves_the_results_alone(tmp_path, monkeypatch, capsys):
    import json
    import sys
    import types

    from bench import commands

    monkeypatch.setattr(commands, "RESULTS_DIR", tmp_path)
    fake = types.ModuleType("fake_bench")
    fake.run = lambda args: [{"ratio": 2.5}]
    monkeypatch.setitem(sys.modules, "fake_bench", fake)
    args = argparse.Namespace(module="fake_bench", bench_name="fake", device="cpu", json=True, no_save=True)
    assert commands._run_one(args) == 0
    assert json.loads(capsys.readouterr().out) == [{"ratio": 2.5}] and not list(tmp_path.iterdir())
    args.no_save = False
    commands._run_one(args)
    saved = json.loads((tmp_path / "fake.json").read_text())
    assert saved["result"] == [{"ratio": 2.5}] and "no_save" not in saved["args"]


def test_the_threshold_ema_scales_start_and_horizon_together():
    assert pp.threshold_ema(1000) == {"threshold_start_step": 1000, "threshold_beta": pytest.approx(0.999)}
    assert pp.threshold_ema(50)["threshold_beta"] == pytest.approx(0.98)

    # dictionary_learning's update on a batch minimum falling 3.0 -> 1.25 over 350 steps (the
    # organism stream's): β = 0.999 stays near the first value, the scaled β tracks the end
    def final(beta):
        theta = -1.0
        for i in range(350):
            low = 3.0 - 1.75 * min(1.0, i / 200)
            theta = low if theta < 0 else beta * theta + (1 - beta) * low
        return theta

    assert final(0.999) > 2.0
    assert final(pp.threshold_ema(50)["threshold_beta"]) == pytest.approx(1.25, rel=0.05)


def test_the_search_stops_when_l0_does_not_answer_the_knob():
    # the JumpReLU rows at 400 steps: L0 ~980 of 1024 whatever λ (log θ moves ~lr per step)
    calls = []

    def flat(c):
        calls.append(c)
        return {"l0": 980.0 + math.log(c)}

    best, trail = pp.coefficient_search(flat, 1.0, 16.0, max_trials=6)
    assert [t["knob"] for t in trail] == [1.0, 4.0, 0.25, 0.0625] and len(calls) == 4
    assert best["knob"] == 0.0625 and "does not reach" in best["search_stopped"]
    # a slow start that then answers is not cut short (dictionary_learning's Gated trail)
    slow = {0.025: 203.0, 0.1: 200.0, 0.4: 187.0, 1.6: 147.0, 6.4: 76.0, 25.6: 14.7}
    best, trail = pp.coefficient_search(lambda c: {"l0": slow[round(c, 4)]}, 0.1, 16.0, max_trials=6)
    assert best["l0"] == 14.7 and best["search_stopped"] is None and len(trail) == 6


def test_the_lr_search_chooses_on_validation_and_extends_past_an_end():
    # validation FVU has its minimum at 3x the default; the held-out FVU (never used to
    # choose) would prefer the smallest factor
    def trial(f):
        return {"validation_fvu": 0.1 + math.log(f / 3) ** 2, "heldout_fvu": f, "lr": 1e-3 * f}

    best, trail = pp.lr_search(trial)
    # the grid's best (4) is at its end, so one ×2 step beyond it (8), worse: 4 is interior
    assert [t["lr_factor"] for t in trail] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert best["lr_factor"] == 4.0 and best["heldout_fvu"] == 4.0 and best["lr"] == pytest.approx(4e-3)
    # falling all the way: two extensions at most, then the last one is kept
    best, trail = pp.lr_search(lambda f: {"validation_fvu": 1 / f})
    assert [t["lr_factor"] for t in trail][-2:] == [8.0, 16.0] and best["lr_factor"] == 16.0
    best, trail = pp.lr_search(lambda f: {"validation_fvu": f})
    assert [t["lr_factor"] for t in trail][-2:] == [0.125, 0.0625] and best["lr_factor"] == 0.0625


def test_passes_repeat_the_same_rows_in_the_same_order_on_every_side():
    x = torch.arange(35.0).reshape(35, 1)
    once = [b.clone() for b in ps.batches(x, 10)]
    thrice = list(ps.batches(x, 10, passes=3))
    assert len(once) == 3 and len(thrice) == 9
    assert all(torch.equal(a, b) for a, b in zip(thrice, once * 3, strict=True))
    assert ps.passes({}) == 1 and ps.passes({"passes": 15}) == 15


def test_the_per_pair_budget_and_its_flag():
    from sae.errors import ConfigError

    jr = next(p for p in pp.PAIRS if p.key == "jumprelu")
    gated = next(p for p in pp.PAIRS if p.key == "gated")
    args = argparse.Namespace(n_tokens=409_600, batch_size=1024, passes="jumprelu=15")
    assert pp.passes_for(jr, args) == 15 and pp.passes_for(gated, args) == 1
    assert pp.total_steps(jr, args) == 6000 and pp.total_steps(gated, args) == 400
    assert pp.passes_for(jr, argparse.Namespace()) == pp.PASSES["jumprelu"]  # no flag: the table
    assert pp.passes_for(jr, argparse.Namespace(passes="")) == 1
    for bad in ("jumprelu=0", "nope=3", "jumprelu", "jumprelu=x"):
        with pytest.raises(ConfigError, match="--passes"):
            pp.parse_passes(bad)
    # the schedule's decay is the same fraction of all the steps
    sched = pp.schedule(argparse.Namespace(lr=None, d_sae=1024, warmup_steps=50, decay_fraction=0.2), 6000, 4.0)
    assert sched == {"lr": pytest.approx(4 * 8e-4), "warmup_steps": 50, "decay_steps": 1200}


def test_the_peer_payload_carries_passes_lr_and_validation(tmp_path, monkeypatch):
    import bench.peers

    seen = {}

    def fake_run_peer(script, payload, peer):
        seen.update(payload, script=script, peer=peer)
        return {"steps": 1}

    monkeypatch.setattr(bench.peers, "run_peer", fake_run_peer)
    monkeypatch.setattr(ps, "read_outputs", lambda path: {"path": path})
    args = argparse.Namespace(
        n_tokens=409_600, batch_size=1024, d_sae=1024, l0=16, lr=None, warmup_steps=50, decay_fraction=0.2,
        threads=1, seed=0, passes="jumprelu=15",
    )  # fmt: skip
    jr = next(p for p in pp.PAIRS if p.key == "jumprelu" and p.peer == "dictionary_learning")
    got = pp.train_peer(jr, tmp_path / "s.safetensors", args, 16.0, str(tmp_path), 0.5, tmp_path / "v.safetensors")
    assert seen["passes"] == 15 and seen["decay_steps"] == 1200 and seen["lr_scale"] == 0.5
    assert seen["lr"] == pytest.approx(4e-4) and seen["coefficient"] == 16.0
    assert seen["validation_stream"].endswith("v.safetensors") and got["passes"] == 15
    assert got["validation_outputs"] == {"path": seen["validation_out"]} != got["outputs"]


def test_the_lab_side_trains_all_passes_and_scores_validation_rows(tmp_path):
    gen = torch.Generator().manual_seed(1)
    h = pp.SAE_HOOK
    stream, validation = tmp_path / "s.safetensors", tmp_path / "v.safetensors"
    save_file(
        {f"train/{h}": torch.randn(200, 8, generator=gen), f"heldout/{h}": torch.randn(30, 8, generator=gen)},
        str(stream),
    )
    save_file({f"validation/{h}": torch.randn(20, 8, generator=gen)}, str(validation))
    args = argparse.Namespace(
        n_tokens=200, batch_size=50, d_sae=16, l0=4, lr=None, warmup_steps=1, decay_fraction=0.2, threads=1,
        seed=0, passes="topk=3",
    )  # fmt: skip
    got = pp.train_ours("topk", pp.PAIRS[0], stream, args, None, 2.0, validation)
    assert got["steps"] == 12 and got["passes"] == 3
    assert got["config"]["trainer"]["lr"] == pytest.approx(2 * 2e-4 / math.sqrt(16 / 2**14))
    assert got["outputs"]["x_hat"].shape == (30, 8) and got["validation_outputs"]["x_hat"].shape == (20, 8)
    assert (got["validation_outputs"]["row_l0"] <= 4).all()


def test_the_lab_matches_the_l0_a_stalled_peer_reached():
    # a peer within the tolerance of the target: the lab aims at the target itself
    assert pp.matched_target(16.0, {"l0": 16.5}, 0.05) == 16.0
    # a peer whose search ended at L0 20 (its knob does not go lower): the lab aims there,
    # so the row compares both sides at matched L0 (±10%), not the lab at 16 against 20
    assert pp.matched_target(16.0, {"l0": 20.07}, 0.05) == 20.07
    assert pp.matched_target(16.0, {"l0": 12.0}, 0.05) == 12.0


def test_a_coefficient_row_searches_the_peer_first_and_matches_its_l0(tmp_path, monkeypatch):
    """``compare`` on the JumpReLU pair with both trainings faked by an L0(knob) curve: the
    peer stalls at L0 20 (dictionary_learning's JumpReLU), so the lab's search aims at 20."""
    h = pp.SAE_HOOK
    stream = tmp_path / "s.safetensors"
    heldout = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    save_file({f"train/{h}": torch.randn(100, 8), f"heldout/{h}": heldout}, str(stream))

    def side(l0: float, version: str | None = None) -> dict:
        return {
            "outputs": {
                "x_hat": heldout * 0.9,
                "row_l0": torch.full((30,), l0),
                "fires": torch.ones(64),
            },
            "seconds_per_step": 0.01,
            "steps": 10,
            "passes": 1,
            "train_seconds": 0.1,
            "config": {"sae": {}, "trainer": {"lr": 8e-4}},
            "peer_version": version,
        }

    ours_tried = []

    def ours(family_name, pair, stream, args, knob, lr_factor=1.0, validation=None):
        ours_tried.append(knob)
        return side(16.0 / knob**0.5)  # L0 = 16 at knob 1, 20 at knob 0.64

    def peer(pair, stream, args, knob, tmp, lr_factor=1.0, validation=None):
        return side(max(20.0, 40.0 / knob), "0.1.0")  # never below 20

    monkeypatch.setattr(pp, "train_ours", ours)
    monkeypatch.setattr(pp, "train_peer", peer)
    parser = argparse.ArgumentParser()
    pp.add_arguments(parser)
    args = parser.parse_args(["--search-trials", "8", "--batch-size", "10", "--d-sae", "64", "--n-tokens", "100"])
    pair = next(p for p in pp.PAIRS if p.key == "jumprelu" and p.peer == "dictionary_learning")
    got = pp.compare(pair, "jumprelu_ste", stream, args, str(tmp_path))
    search = got["coefficient_search"]
    assert search["target_l0"] == 16 and search["ours_target_l0"] == pytest.approx(20.0)
    assert got["peer_l0"] == pytest.approx(20.0) and abs(got["l0"] / 20.0 - 1) <= 0.05
    assert got["l0_within_10pct"] and got["fvu"] == pytest.approx(got["peer_fvu"])
    assert ours_tried[0] == pp.default_knob("jumprelu_ste")
