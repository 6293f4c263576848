"""Data-parallel jobs for real: torchrun, gloo on CPU, processes killed and hung (slow tier).

- ``saelab train --nproc 2`` reaches the weights of one process (same global batch and seed):
  to 1e-5 for TopK and ReLU; mutual and feature choice to 1e-2, since GEMMs over half a batch
  round differently, and an entry at the cut may then fall on the other side (that the rules
  themselves are the one-process rules is checked exactly in tests/test_ranks.py);
- ``kill -9`` of one rank stops the whole job at once with one line, and the same command
  again resumes from the last checkpoint to bit-identical weights;
- a rank that hangs (SIGSTOP) makes the others fail at the collective timeout, in one line;
- ``saelab cache --nproc 2`` writes the cache one process writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

CONFIG = """
data: {{model: organism, n_tokens: {tokens}, context_size: 32, lm_batch_size: 64, cache_dir: {cache}}}
saes:
  - {{hook: blocks.1.hook_resid_post, sae: {{architecture: topk, d_sae: 256, k: 8}}}}
  - {{hook: blocks.1.hook_resid_post, sae: {{architecture: relu, d_sae: 256, l1_coefficient: 2.0}}}}
  - {{hook: blocks.1.hook_resid_post, sae: {{architecture: mutual_choice, d_sae: 256, k: 8}}}}
  - {{hook: blocks.1.hook_resid_post, sae: {{architecture: feature_choice, d_sae: 256, k: 8}}}}
trainer: {{batch_size: 512, lr: 0.002, warmup_steps: 5, dead_after_tokens: 4000, checkpoint_every: 10,
          wandb_project: null, collective_timeout_s: 20}}
heldout: null
"""
NAMES = ("topk", "relu", "mutual_choice", "feature_choice")


def saelab(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "saelab", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 900) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def weights(run: Path) -> dict:
    return {name: load_file(str(run / name / "sae_weights.safetensors")) for name in NAMES}


def max_diff(a: dict, b: dict) -> dict[str, float]:
    return {name: max(float((a[name][k] - b[name][k]).abs().max()) for k in a[name]) for name in a}


def rank_pid(config: Path, rank: int, timeout: float = 120) -> int:
    """The pid of one rank of the job training ``config``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for pid in Path("/proc").iterdir():
            try:
                cmd = (pid / "cmdline").read_bytes().split(b"\0")
                env = (pid / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if b"sae.train" in cmd and str(config).encode() in cmd and f"RANK={rank}".encode() in env:
                return int(pid.name)
        time.sleep(0.2)
    raise AssertionError(f"no rank {rank} found")


def checkpoint_step(run: Path) -> int:
    try:
        return json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return -1


def start_two_ranks(config: Path, run: Path, until_step: int) -> tuple[subprocess.Popen, int]:
    """A two-process job, once it has checkpointed ``until_step``; and its rank 1's pid."""
    proc = saelab("train", str(config), "--out", str(run), "--quiet", "--nproc", "2")
    deadline = time.time() + 600
    while checkpoint_step(run) < until_step and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the job finished before it could be interrupted"
    return proc, rank_pid(config, 1)


def write_config(root: Path, tokens: int) -> Path:
    config = root / f"run_{tokens}.yaml"
    config.write_text(CONFIG.format(cache=root / f"cache_{tokens}", tokens=tokens))
    return config


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A 180-step config over a cache built once, and its uninterrupted two-process run."""
    root = tmp_path_factory.mktemp("ddp")
    config = write_config(root, 100_000)
    code, log = finish(saelab("train", str(config), "--out", str(root / "two"), "--quiet", "--nproc", "2"))
    assert code == 0, log[-2000:]
    return root, config


def test_two_processes_reach_the_weights_of_one(tmp_path):
    config = write_config(tmp_path, 12_000)  # 22 steps of 512 rows
    for name, nproc in (("one", "1"), ("two", "2")):
        code, log = finish(saelab("train", str(config), "--out", str(tmp_path / name), "--quiet", "--nproc", nproc))
        assert code == 0, log[-2000:]
    diff = max_diff(weights(tmp_path / "one"), weights(tmp_path / "two"))
    assert diff["topk"] <= 1e-5 and diff["relu"] <= 1e-5, diff
    assert diff["mutual_choice"] <= 1e-2 and diff["feature_choice"] <= 1e-2, diff


def test_killing_one_rank_stops_the_job_and_the_rerun_resumes_exactly(job):
    root, config = job
    run = root / "killed"
    proc, pid = start_two_ranks(config, run, until_step=20)
    os.kill(pid, signal.SIGKILL)
    started = time.time()
    code, log = finish(proc, timeout=120)
    assert code != 0 and time.time() - started < 60  # the whole job stops at once, no hang
    assert "killed (signal 9)" in log and "Traceback" not in log
    assert not (run / "topk" / "sae_weights.safetensors").exists()
    code, log = finish(saelab("train", str(config), "--out", str(run), "--quiet", "--nproc", "2"))
    assert code == 0, log[-2000:]
    assert set(max_diff(weights(root / "two"), weights(run)).values()) == {0.0}  # bit-identical


def test_a_hung_rank_fails_the_job_at_the_collective_timeout(job):
    root, config = job
    run = root / "hung"
    proc, pid = start_two_ranks(config, run, until_step=10)
    os.kill(pid, signal.SIGSTOP)  # alive but silent: only the timeout can tell
    started = time.time()
    try:
        code, log = finish(proc, timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert code != 0 and time.time() - started < 180
    assert "stopped answering" in log and "Traceback" not in log


def test_a_cache_written_by_two_processes_is_the_cache_of_one(tmp_path):
    spec = tmp_path / "cache.yaml"
    spec.write_text(
        "hooks: [blocks.0.hook_resid_post, blocks.1.attn.hook_z]\nn_tokens: 60000\ncontext_size: 32\n"
        "lm_batch_size: 32\nshard_batches: 4\n"
    )
    for name, nproc in (("one", "1"), ("two", "2")):
        code, log = finish(saelab("cache", str(spec), "--out", str(tmp_path / name), "--quiet", "--nproc", nproc))
        assert code == 0, log[-2000:]
    one, two = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("one", "two"))
    assert two["complete"] and two["rows"] == one["rows"] and two["hooks"] == one["hooks"]
    assert [s["files"] for s in two["shards"]] == [s["files"] for s in one["shards"]]
