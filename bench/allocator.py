"""allocator: the harvest with and without saelab's malloc tuning (``sae.allocator``), side by side.

glibc reads its thresholds once per process, so each side runs in a fresh interpreter:
one as the CLI runs (``keep_freed_memory()``), one with ``SAELAB_MALLOC_TUNING=0`` (the
C library's defaults). Each job times a bare forward pass and a three-hook store pass
over the same pre-tokenized rows, after one warm-up pass of each, so what is counted is
the steady state: minor page faults (a fault is a 4 KiB page mapped and zeroed on first
touch), system seconds, and tokens per second. The jobs alternate between the sides and
the median over repeats is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

from bench.harvest import HOOKS
from sae.allocator import OPT_OUT

JOB = """
import json, sys
from sae.allocator import keep_freed_memory
from bench.allocator import measure
print(json.dumps({"malloc": keep_freed_memory(), **measure(json.loads(sys.argv[1]))}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-tokens", type=int, default=300_000, help="tokens per measured pass")
    parser.add_argument("--passes", type=int, default=2, help="measured passes per job, after one warm-up pass")
    parser.add_argument("--repeats", type=int, default=3, help="jobs per side")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())


def measure(spec: dict) -> dict:
    """In the job's process: faults, system seconds and seconds of every measured pass of
    ``saelab bench harvest``'s two sides (the bare forward pass and our three-hook store)."""
    import resource
    from types import SimpleNamespace

    from bench.harvest import _forward, _ours, _token_dataset, token_store_config
    from sae.harvest import Harvester
    from sae.model import load_model
    from sae.store import token_batches

    torch.set_num_threads(spec["threads"])
    model, tokenizer = load_model("organism")
    sizes = SimpleNamespace(n_tokens=spec["n_tokens"], context_size=64, lm_batch_size=128, batch_size=4096)
    dataset = _token_dataset(tokenizer, -(-sizes.n_tokens // sizes.context_size), sizes.context_size)
    cfg = token_store_config(HOOKS, dataset, sizes)
    batches = list(token_batches(cfg, tokenizer))
    stop = Harvester(model, tokenizer, HOOKS).stop_at_layer
    sides = {
        "forward": lambda: _forward(model, batches, stop),
        "harvest": lambda: _ours(model, tokenizer, HOOKS, dataset, sizes)[0],
    }

    out: dict[str, list[dict]] = {name: [] for name in sides}
    for i in range(spec["passes"] + 1):
        for name, timed in sides.items():
            before = resource.getrusage(resource.RUSAGE_SELF)
            seconds = timed()
            after = resource.getrusage(resource.RUSAGE_SELF)
            if i:  # pass 0 warms the heap up
                out[name].append(
                    {
                        "faults": after.ru_minflt - before.ru_minflt,
                        "sys_s": after.ru_stime - before.ru_stime,
                        "seconds": seconds,
                    }
                )
    return out


def _job(spec: dict, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env[OPT_OUT] = "1" if tuned else "0"
    done = subprocess.run(
        [sys.executable, "-c", JOB, json.dumps(spec)], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    spec = {"n_tokens": args.n_tokens, "passes": args.passes, "threads": args.threads}
    passes: dict[str, dict[str, list[dict]]] = {side: {"forward": [], "harvest": []} for side in ("tuned", "default")}
    malloc = {}
    for _ in range(args.repeats):  # alternate the sides so drift hits both alike
        for side in ("tuned", "default"):
            got = _job(spec, tuned=side == "tuned")
            malloc[side] = got["malloc"]
            for name in ("forward", "harvest"):
                passes[side][name] += got[name]
    mtok = args.n_tokens / 1e6

    def median(side: str, name: str, key: str) -> float:
        return statistics.median(p[key] for p in passes[side][name])

    result: dict = {
        "device": "cpu",
        "threads": args.threads,
        "n_tokens": args.n_tokens,
        "hooks": HOOKS,
        "measured_passes": args.passes * args.repeats,
        "malloc": malloc,
    }
    for side in ("tuned", "default"):
        result.update(
            {
                f"{side}_forward_faults_per_mtok": median(side, "forward", "faults") / mtok,
                f"{side}_harvest_faults_per_mtok": median(side, "harvest", "faults") / mtok,
                f"{side}_harvest_sys_s_per_mtok": median(side, "harvest", "sys_s") / mtok,
                f"{side}_harvest_over_forward": median(side, "forward", "seconds") / median(side, "harvest", "seconds"),
            }
        )
    for name in ("forward", "harvest"):
        result[f"{name}_speedup_tuned_over_default"] = median("default", name, "seconds") / median(
            "tuned", name, "seconds"
        )
    return result
