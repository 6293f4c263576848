"""soak: random kill -9s of training and caching jobs; every rerun must resume to identical results.

One uninterrupted reference run of each job is timed (and the moment its first checkpoint
or shard lands). Then, per kill, a fresh run of the same command is killed with SIGKILL at a
moment drawn from a seeded RNG over the reference's duration, in three bands taken in turn:
middle, early (before the first checkpoint/shard), and late (the last fifth, around the final
saves); middle and late moments count from the first checkpoint, so they stay after it on a
machine slower than when the reference ran. The same command is then run again to completion
and its result compared with the reference: training by every safetensors tensor (final SAE
weights, extra state, last checkpoint), exactly; caching by the manifest (rows, per-shard rows
and checksums) and the shard bytes.
Jobs run on the organism with small configs, one thread each.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.faults import (
    cache_differences,
    checkpoint_step,
    finish,
    kill9,
    manifest_shards,
    start,
    training_differences,
    wait_for,
)

SCHEMA_VERSION = 1
# Three families with different state (vSAE's sampling noise and extra encoder, feature choice's
# running densities), checkpoints every 8 steps: most kills land between checkpoints, so the rerun
# redoes steps and must get them bit-identical. (Also the config of tests/test_train_kill.py.)
TRAIN_CONFIG = """\
data: {model: organism, n_tokens: 32000, context_size: 32, lm_batch_size: 32, buffer_rows: 4096}
saes:
  - hook: blocks.1.hook_resid_post
    sae: {architecture: topk, d_sae: 128, k: 4}
  - hook: blocks.1.hook_resid_post
    sae: {architecture: vsae, d_sae: 128, k: 4}
  - hook: blocks.1.hook_resid_post
    sae: {architecture: feature_choice, d_sae: 128, k: 4}
trainer: {batch_size: 256, lr: 0.003, warmup_steps: 5, checkpoint_every: 8, log_every: 8, wandb_project: null,
          dead_after_tokens: 4000}
heldout: null
"""
CACHE_CONFIG = """\
model: organism
hooks: [blocks.1.hook_resid_post, blocks.1.hook_mlp_out, blocks.1.attn.hook_z]
context_size: 64
n_tokens: 80000
lm_batch_size: 32
shard_batches: 2
"""
BANDS = ("middle", "early", "late")  # a soak of one kill still resumes mid-run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-kills", type=int, default=20, help="kill -9s of the training job (default 20)")
    parser.add_argument("--cache-kills", type=int, default=5, help="kill -9s of the caching job (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--workdir", help="where the runs go (default: a temporary directory, removed after)")


class Job:
    """One kind of job: its command, its progress probe and its comparison."""

    def __init__(self, kind: str, config: Path):
        self.kind, self.config = kind, config

    def args(self, out: Path) -> list[str]:
        return ["train" if self.kind == "train" else "cache", str(self.config), "--out", str(out)]

    def progress(self, out: Path) -> int | None:
        """Checkpointed steps (train) or written shards (cache); None before the first."""
        try:
            got = checkpoint_step(out) if self.kind == "train" else manifest_shards(out)
        except ValueError:  # a torn file: never acceptable
            raise AssertionError(f"{out}: a reader saw a half-written file") from None
        return got or None

    def differences(self, reference: Path, resumed: Path) -> list[str]:
        return (training_differences if self.kind == "train" else cache_differences)(reference, resumed)


def reference(job: Job, out: Path) -> dict:
    """Time an uninterrupted run, and when its first checkpoint (or shard) appeared."""
    started = time.perf_counter()
    proc = start(job.args(out))
    wait_for(proc, lambda: job.progress(out) is not None, timeout=900)
    first = time.perf_counter() - started
    finish(proc)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "first_progress_s": round(first, 2),
        "final_progress": job.progress(out),
    }


def kill_moment(rng: random.Random, band: str, ref: dict) -> tuple[bool, float]:
    """``(after_first, seconds)``: kill that long after the start, or (middle and late) after the
    first checkpoint or shard lands, so the bands hold on a machine slower than the reference's."""
    total, first = ref["seconds"], ref["first_progress_s"]
    if band == "early":
        return False, rng.uniform(0.3 * first, 0.95 * first)
    lo, hi = {"middle": (0.0, 0.8), "late": (0.8, 0.98)}[band]
    return True, rng.uniform(lo, hi) * (total - first)


def one_kill(job: Job, ref_dir: Path, out: Path, moment: tuple[bool, float], band: str) -> dict:
    """Kill a fresh run at ``moment`` (earlier, if it finished first), rerun it, compare."""
    after_first, when = moment
    for _ in range(6):
        shutil.rmtree(out, ignore_errors=True)
        proc = start(job.args(out))
        started = time.perf_counter()
        if after_first:
            wait_for(proc, lambda: job.progress(out) is not None, timeout=900)
        deadline = time.perf_counter() + when
        wait_for(proc, lambda deadline=deadline: time.perf_counter() >= deadline, timeout=when + 600, poll=0.01)
        killed_at = time.perf_counter() - started
        if kill9(proc):
            break
        when *= 0.7  # it finished before the moment (a faster machine than the reference's): aim earlier
    else:
        raise RuntimeError(f"{job.kind}: the run kept finishing before it could be killed")
    at_kill = job.progress(out)
    rerun_start = time.perf_counter()
    finish(start(job.args(out)))
    diffs = job.differences(ref_dir, out)
    return {
        "job": job.kind,
        "band": band,
        "kill_at_s": round(killed_at, 2),
        "progress_at_kill": at_kill,
        "rerun_s": round(time.perf_counter() - rerun_start, 2),
        "identical": not diffs,
        "differences": diffs[:5],
    }


def soak(job: Job, kills: int, rng: random.Random, root: Path) -> tuple[dict, list[dict]]:
    ref_dir = root / f"{job.kind}_reference"
    ref = reference(job, ref_dir)
    rows = []
    for i in range(kills):
        band = BANDS[i % len(BANDS)]
        rows.append(one_kill(job, ref_dir, root / f"{job.kind}_killed", kill_moment(rng, band, ref), band))
        row = rows[-1]
        print(
            f"soak {job.kind} kill {i + 1}/{kills} ({band}, {row['kill_at_s']} s, at {row['progress_at_kill']}): "
            f"{'identical' if row['identical'] else 'DIFFERENT'}",
            file=sys.stderr,
            flush=True,
        )
    return ref, rows


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    rng = random.Random(args.seed)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="saelab_soak_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        (root / "train.yaml").write_text(TRAIN_CONFIG)
        (root / "cache.yaml").write_text(CACHE_CONFIG)
        train_ref, train_rows = soak(Job("train", root / "train.yaml"), args.train_kills, rng, root)
        cache_ref, cache_rows = soak(Job("cache", root / "cache.yaml"), args.cache_kills, rng, root)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    per_kill = train_rows + cache_rows
    return {
        "kind": "bench",
        "schema_version": SCHEMA_VERSION,
        "name": "soak",
        "model": "organism",
        "train_kills": len(train_rows),
        "train_identical": sum(r["identical"] for r in train_rows),
        "cache_kills": len(cache_rows),
        "cache_identical": sum(r["identical"] for r in cache_rows),
        "killed_before_first_checkpoint": sum(r["progress_at_kill"] is None for r in per_kill),
        "train_reference": train_ref,
        "cache_reference": cache_ref,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
        "per_kill": per_kill,
    }
