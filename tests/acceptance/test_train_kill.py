"""A real ``kill -9`` of ``saelab train``, then the same command again: same final weights."""

from __future__ import annotations

import pytest

from bench.faults import checkpoint_step, finish, kill9, start, training_differences, wait_for
from bench.soak import TRAIN_CONFIG


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_same_weights(tmp_path):
    import json

    cfg = tmp_path / "run.yaml"
    cfg.write_text(TRAIN_CONFIG)
    full, cut = tmp_path / "full", tmp_path / "cut"
    finish(start(["train", str(cfg), "--out", str(full)]))

    proc = start(["train", str(cfg), "--out", str(cut)])
    assert wait_for(proc, lambda: (checkpoint_step(cut) or 0) >= 40), "the run finished before it could be killed"
    kill9(proc)
    assert checkpoint_step(cut) < checkpoint_step(full) and not (cut / "topk" / "sae_weights.safetensors").exists()

    finish(start(["train", str(cfg), "--out", str(cut)]))
    assert training_differences(full, cut) == []
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
