"""kill -9 of a real `saelab cache` job, then the same command again: identical manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

CONFIG = """
model: organism
hooks: [blocks.1.hook_resid_post, blocks.1.hook_mlp_out, blocks.1.attn.hook_z]
context_size: 64
n_tokens: 400000
lm_batch_size: 32
shard_batches: 2
"""


def _cache(cfg, out, **kw):
    return subprocess.Popen([sys.executable, "-m", "saelab", "cache", str(cfg), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_minus_nine_and_resume(tmp_path):
    cfg = tmp_path / "cache.yaml"
    cfg.write_text(CONFIG)
    assert _cache(cfg, tmp_path / "whole").wait(timeout=600) == 0
    whole = json.loads((tmp_path / "whole" / "manifest.json").read_text())

    for attempt in range(3):  # kill at different moments
        proc = _cache(cfg, tmp_path / "killed")
        manifest = tmp_path / "killed" / "manifest.json"
        deadline = time.time() + 300
        target = 2 + 4 * attempt
        while time.time() < deadline:
            if manifest.exists():
                try:
                    if len(json.loads(manifest.read_text())["shards"]) >= target:
                        break
                except json.JSONDecodeError:
                    pytest.fail("a reader saw a half-written manifest")
            time.sleep(0.05)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _cache(cfg, tmp_path / "killed").wait(timeout=600) == 0
    resumed = json.loads(manifest.read_text())
    assert resumed["complete"] and resumed["rows"] == whole["rows"]
    assert [s["files"] for s in resumed["shards"]] == [s["files"] for s in whole["shards"]]
    assert [s["rows"] for s in resumed["shards"]] == [s["rows"] for s in whole["shards"]]
