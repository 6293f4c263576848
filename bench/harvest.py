"""harvest: tokens → shuffled batches, against a bare forward pass and SAELens's ActivationsStore.

The reference forward is the bridge's eager forward to the deepest hook's layer, as it was
before ``sae.fused_forward``: our harvest runs the fused forward (``--no-fused``: the bridge),
so ``harvest_over_forward`` above 1 means the harvest beats eager PyTorch.

All sides read the same pre-tokenized rows of the organism corpus (so tokenization is
out of the measurement) with the same model, hook, context, LM batch and training batch
sizes, on the same thread count; they run alternately in one invocation and the median
of the repeats is reported. Memory: peak anonymous memory (RssAnon, which excludes the
memory-mapped cache pages) while iterating caches of two sizes, both several times
larger than that figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HOOKS = ["blocks.2.hook_resid_post", "blocks.2.hook_mlp_out", "blocks.2.attn.hook_z"]
CACHE = Path(__file__).resolve().parent / ".cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-tokens", type=int, default=1_000_000, help="token budget per measurement")
    parser.add_argument("--context-size", type=int, default=64)
    parser.add_argument("--lm-batch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4096, help="training batch (rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-peers", action="store_true", help="skip SAELens")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--no-fused", action="store_true", help="harvest through the bridge, not sae.fused_forward (the path before it)"
    )


def _token_dataset(tokenizer, n_rows: int, context_size: int) -> Path:
    """The organism corpus as pre-tokenized rows, saved once as a datasets directory."""
    import datasets

    from organism.corpus import documents
    from sae.text import pack_rows

    path = CACHE / f"tokens_{n_rows}x{context_size}"
    if not (path / "dataset_info.json").exists():
        rows = pack_rows(documents(0), tokenizer, context_size)
        data = [next(rows) for _ in range(n_rows)]
        datasets.Dataset.from_dict({"tokens": data}).save_to_disk(str(path))
    return path


def token_store_config(hooks: list[str], dataset: Path, a):
    """The store every side of the harvest benchmarks reads: ``dataset``'s pre-tokenized rows,
    with ``a``'s ``n_tokens``, ``context_size`` and ``lm_batch_size``."""
    from sae.store import StoreConfig

    return StoreConfig(
        hooks=hooks,
        source={"kind": "tokens", "path": str(dataset)},
        context_size=a.context_size,
        n_tokens=a.n_tokens,
        lm_batch_size=a.lm_batch_size,
        fused_forward=not getattr(a, "no_fused", False),
    )


def write_cache_fresh(cfg: dict) -> None:
    """``sae.cache.write_cache`` of the ``StoreConfig`` fields ``cfg`` in a fresh process, so the
    memory it used is not counted in a later measurement of this one."""
    build = (
        "import json,sys\nfrom sae.cache import write_cache\nfrom sae.store import StoreConfig\n"
        "write_cache(StoreConfig(**json.loads(sys.argv[1])), progress=False)\n"
    )
    subprocess.run([sys.executable, "-c", build, json.dumps(cfg)], capture_output=True, text=True, check=True)


def _ours(model, tokenizer, hooks, dataset: Path, a) -> tuple[float, int]:
    from sae.store import open_store

    cfg = token_store_config(hooks, dataset, a)
    store = open_store(cfg, model, tokenizer, progress=False)
    start = time.perf_counter()
    rows = sum(len(b) for b in store.batches(a.batch_size))
    return time.perf_counter() - start, rows


@torch.no_grad()
def _forward(model, batches, stop_at_layer) -> float:
    start = time.perf_counter()
    for tokens in batches:
        model(tokens, stop_at_layer=stop_at_layer) if stop_at_layer is not None else model(tokens)
    return time.perf_counter() - start


def _memory(tokens: int, a) -> dict:
    """Peak RssAnon (MB) while iterating a cache of ``tokens`` tokens, in a fresh process."""
    cache_dir = CACHE / f"memory_cache_{tokens}"
    cfg = {
        "hooks": HOOKS,
        "n_tokens": tokens,
        "context_size": a.context_size,
        "lm_batch_size": 128,
        "cache_dir": str(cache_dir),
        "shard_batches": 32,
    }
    write_cache_fresh(cfg)
    code = (  # a fresh process, so nothing from building the cache counts
        "import json,os,sys\n"
        "from sae.cache import CachedStore\n"
        "def anon():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('RssAnon:'): return int(line.split()[1]) / 1024\n"
        "root = json.loads(sys.argv[1])['cache_dir']\n"
        "store = CachedStore(root, verify=False)\n"
        "peak = anon(); n = 0\n"
        "for b in store.batches(4096):\n"
        "    n += len(b); peak = max(peak, anon())\n"
        "size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)\n"
        "print(json.dumps({'peak_anon_mb': peak, 'cache_mb': size / 2**20, 'rows': n}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict:
    from bench.peers import run_peer
    from organism.provider import WEIGHTS
    from sae.harvest import Harvester
    from sae.model import load_model
    from sae.store import StoreConfig, token_batches

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model("organism")
    n_rows = -(-args.n_tokens // args.context_size)
    dataset = _token_dataset(tokenizer, n_rows, args.context_size)
    cfg = token_store_config(HOOKS, dataset, args)
    batches = list(token_batches(cfg, tokenizer))
    probe = Harvester(model, tokenizer, HOOKS, fused=not args.no_fused)
    stop = probe.stop_at_layer
    d_ins = {h: Harvester(model, tokenizer, [h]).d_in(h) for h in HOOKS}

    times: dict[str, list[float]] = {
        "forward": [],
        "ours_1": [],
        "ours_3": [],
        "saelens_1": [],
        "saelens_3_separate": [],
        "saelens_3_multi": [],
    }
    rows = {}
    payload = {
        "model_dir": str(WEIGHTS),
        "dataset_dir": str(dataset),
        "d_ins": d_ins,
        "context_size": args.context_size,
        "n_tokens": args.n_tokens,
        "lm_batch_size": args.lm_batch_size,
        "batch_size": args.batch_size,
        "threads": args.threads,
        # SAELens sizes its mixing buffer in units of context_size rows: match our 65,536 rows
        "n_batches_in_buffer": StoreConfig.model_fields["buffer_rows"].default // args.context_size,
        "exclude": [t for t in (tokenizer.bos_token_id, tokenizer.pad_token_id) if t is not None],
    }
    peer_diff = None
    for _ in range(args.repeats):  # alternate the sides so drift hits all of them alike
        times["forward"].append(_forward(model, batches, stop))
        t, rows["ours_1"] = _ours(model, tokenizer, HOOKS[:1], dataset, args)
        times["ours_1"].append(t)
        t, rows["ours_3"] = _ours(model, tokenizer, HOOKS, dataset, args)
        times["ours_3"].append(t)
        if not args.no_peers:
            for key, hooks, mode in (
                ("saelens_1", HOOKS[:1], "single"),
                ("saelens_3_separate", HOOKS, "separate"),
                ("saelens_3_multi", HOOKS, "multi"),
            ):
                got = run_peer("saelens_harvest.py", {**payload, "hooks": hooks, "mode": mode, "rows": rows["ours_1"]})
                times[key].append(got["seconds"])
                peer_diff = got["max_logit_diff_vs_hf"]
    med = {k: statistics.median(v) for k, v in times.items() if v}
    tps = {k: args.n_tokens / v for k, v in med.items()}
    result = {
        "device": "cpu",
        "threads": args.threads,
        "n_tokens": args.n_tokens,
        "hooks": HOOKS,
        "context_size": args.context_size,
        "lm_batch_size": args.lm_batch_size,
        "batch_size": args.batch_size,
        "forward_tokens_per_s": tps["forward"],
        "harvest_tokens_per_s": tps["ours_3"],
        "harvest_over_forward": tps["ours_3"] / tps["forward"],
        "harvest_1hook_tokens_per_s": tps["ours_1"],
        "harvest_1hook_over_forward": tps["ours_1"] / tps["forward"],
        # how our side ran the model: the fused forward, or the bridge and why
        "harvest_path": "fused" if probe.uses_fused() else f"bridge ({probe.fused_reason or 'hooks on the model'})",
    }
    if not args.no_peers:
        result.update(
            {
                "saelens_tokens_per_s": tps["saelens_1"],
                "speedup_vs_saelens": tps["ours_1"] / tps["saelens_1"],
                "saelens_3hooks_separate_tokens_per_s": tps["saelens_3_separate"],
                "speedup_vs_saelens_3hooks": tps["ours_3"] / tps["saelens_3_separate"],
                "saelens_3hooks_multihook_tokens_per_s": tps["saelens_3_multi"],
                "speedup_vs_saelens_3hooks_multihook": tps["ours_3"] / tps["saelens_3_multi"],
                "saelens_max_logit_diff_vs_hf": peer_diff,
            }
        )
    if not args.no_memory:
        small, large = _memory(1_000_000, args), _memory(2_000_000, args)
        result.update(
            {
                "peak_anon_mb": max(small["peak_anon_mb"], large["peak_anon_mb"]),
                "peak_anon_mb_by_cache_mb": {
                    f"{small['cache_mb']:.0f}": small["peak_anon_mb"],
                    f"{large['cache_mb']:.0f}": large["peak_anon_mb"],
                },
            }
        )
    return result
