"""memory: peak memory while training from an on-disk cache larger than the memory the job may use.

A TopK SAE trains through a whole organism activation cache in a fresh process. Where
this machine allows it (root with a cgroup-v1 memory controller, as on the project's
machines), that process runs in a memory cgroup whose limit is a fraction of the cache's
size, so the cache cannot be held in memory in full: the job must stream it
(memory-mapped shards, bounded read blocks) to finish at all. Reported per cache size:
the peak resident set (VmHWM, which counts mapped cache pages), the peak anonymous
memory (RssAnon: what the job itself allocates), and whether the job finished under the
limit. Two cache sizes show that the anonymous peak does not grow with the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
HOOK = "blocks.1.hook_resid_post"
CGROUP_ROOT = Path("/sys/fs/cgroup/memory")

TRAIN = """
import json, sys, threading, time
from pathlib import Path
spec = json.loads(sys.argv[1])
import torch
from sae.architectures import sae_class
from sae.cache import CachedStore
from sae.trainer import Member, Trainer, TrainerConfig

peak = {"rss": 0.0, "anon": 0.0}
def status():
    out = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon"):
            out[key] = int(value.split()[0]) / 1024
    return out
def watch():
    while True:
        s = status(); peak["anon"] = max(peak["anon"], s["RssAnon"]); time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
store = CachedStore(spec["cache_dir"], verify=False)
cls = sae_class("topk")
torch.manual_seed(0)
sae = cls(cls.config_class(d_in=store.d_in(spec["hook"]), d_sae=spec["d_sae"], k=spec["k"]))
cfg = TrainerConfig(batch_size=spec["batch_size"], checkpoint_every=0, wandb_project=None, log_every=50)
trainer = Trainer([Member.reading("topk", sae, spec["hook"])], cfg, spec["run_dir"], progress=False)
steps = store.count_rows() // spec["batch_size"]
start = time.time()
trainer.fit(lambda skip: store.batches(spec["batch_size"], skip_rows=skip), steps)
s = status()
print(json.dumps({"steps": trainer.step, "rows": trainer.rows, "seconds": time.time() - start,
                  "peak_rss_mb": s["VmHWM"], "peak_anon_mb": max(peak["anon"], s["RssAnon"])}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokens",
        type=int,
        nargs=2,
        default=[1_000_000, 3_000_000],
        help="token budgets of the two caches (one residual hook, 512 B a row in fp32)",
    )
    parser.add_argument(
        "--limit-fraction",
        type=float,
        default=0.35,
        help="memory limit of the training job as a fraction of the larger cache's size",
    )
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4096)


def _cache(tokens: int) -> tuple[Path, float]:
    from bench.harvest import write_cache_fresh

    cache_dir = CACHE / f"train_memory_cache_{tokens}"
    cfg = {
        "hooks": [HOOK],
        "n_tokens": tokens,
        "context_size": 64,
        "lm_batch_size": 128,
        "cache_dir": str(cache_dir),
        "shard_batches": 16,
    }
    write_cache_fresh(cfg)
    size = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file())
    return cache_dir, size / 2**20


def _cgroup(limit_mb: int) -> Path | None:
    """A fresh memory cgroup (v1) limited to ``limit_mb``, or None where this machine offers none."""
    if not (CGROUP_ROOT / "memory.limit_in_bytes").exists() or os.geteuid() != 0:
        return None
    group = CGROUP_ROOT / f"saelab_bench_{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
    except OSError:
        return None
    return group


def _train(cache_dir: Path, limit_mb: int | None, a) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        spec = {
            "cache_dir": str(cache_dir),
            "hook": HOOK,
            "d_sae": a.d_sae,
            "k": a.k,
            "batch_size": a.batch_size,
            "run_dir": run_dir,
        }
        group = _cgroup(limit_mb) if limit_mb else None
        # The child joins the cgroup before it imports anything, so all of its memory counts.
        join = f"open('{group}/cgroup.procs','w').write(str(__import__('os').getpid()))\n" if group else ""
        try:
            proc = subprocess.run(
                [sys.executable, "-c", join + TRAIN, json.dumps(spec)], capture_output=True, text=True
            )
        finally:
            if group is not None:
                group.rmdir()
    result = {"memory_limit_mb": limit_mb if group else None, "finished": proc.returncode == 0}
    if proc.returncode == 0:
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    else:
        result["error"] = (proc.stderr.strip().splitlines() or ["killed"])[-1][:200]
    return result


def run(args: argparse.Namespace) -> dict:
    caches = [_cache(tokens) for tokens in args.tokens]
    limit = int(max(mb for _, mb in caches) * args.limit_fraction)
    rows = {}
    for (cache_dir, mb), tokens in zip(caches, args.tokens, strict=True):
        rows[f"{tokens}"] = {"cache_mb": round(mb, 1), **_train(cache_dir, limit, args)}
    big = rows[str(args.tokens[1])]
    return {
        "hook": HOOK,
        "d_sae": args.d_sae,
        "batch_size": args.batch_size,
        "memory_limit_mb": big["memory_limit_mb"],
        "cache_mb": big["cache_mb"],
        "peak_rss_mb": big.get("peak_rss_mb"),
        "peak_anon_mb": big.get("peak_anon_mb"),
        "finished_under_limit": big["finished"],
        "by_cache_tokens": rows,
    }
