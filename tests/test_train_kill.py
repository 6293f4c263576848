"""A real ``kill -9`` of ``saelab train``, then the same command again: same final weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

CONFIG = """
data: {model: organism, n_tokens: 120000, context_size: 32, lm_batch_size: 32, buffer_rows: 8192}
saes:
  - hook: blocks.1.hook_resid_post
    sae: {architecture: topk, d_sae: 64, k: 4}
  - hook: blocks.1.hook_resid_post
    sae: {architecture: vsae, d_sae: 64, k: 4}
  - hook: blocks.1.hook_resid_post
    sae: {architecture: feature_choice, d_sae: 64, k: 4}
trainer: {batch_size: 256, lr: 0.003, warmup_steps: 5, checkpoint_every: 20, log_every: 10, wandb_project: null,
          dead_after_tokens: 2000}
heldout: null
"""


def _train(cfg, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "saelab", "train", str(cfg), "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _state(out):
    path = out / "checkpoint" / "state.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_same_weights(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(CONFIG)
    full, cut = tmp_path / "full", tmp_path / "cut"
    proc = _train(cfg, full)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]

    proc = _train(cfg, cut)
    deadline = time.time() + 300
    while time.time() < deadline and not ((_state(cut) or {}).get("step", 0) >= 40):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _state(cut)["step"]
    assert killed_at < _state(full)["step"] and not (cut / "topk" / "sae_weights.safetensors").exists()

    proc = _train(cfg, cut)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]
    assert _state(cut)["step"] == _state(full)["step"]
    for name in ("topk", "vsae", "feature_choice"):
        for f in ("sae_weights.safetensors", "saelab_state.safetensors"):
            if (full / name / f).exists():
                assert (cut / name / f).read_bytes() == (full / name / f).read_bytes(), (name, f)
    assert (cut / "checkpoint" / "state.safetensors").read_bytes() == (
        full / "checkpoint" / "state.safetensors").read_bytes()
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
