"""evals: wall seconds of the SAEBench suite (configs/saebench.yaml's evals) on a run directory, per eval and total.

Issue 23's bar: the whole suite on the organism sweep (every SAE of configs/sweep_organism.yaml) in
≤ 15 minutes on 2 cores. ``--run-dir`` names the run to evaluate (the sweep's, ``runs/sweep``);
without it a sweep-like run is trained first into the output directory: the sweep's SAEs (every
family and hook of configs/sweep_organism.yaml) at ``--train-tokens`` tokens (default 100k, not the
sweep's 2M: the evals' cost depends on the SAEs' shapes, not on how long they trained; its own
held-out measurement at 16k tokens), and the result says so (``trained``). The suite is run as
``saelab eval --suite`` runs it; its own ``timings`` give the held-out pass (the core metrics'
data) and each eval's seconds, and ``total`` is the whole suite (model loading and report
included). ``--validate`` also checks every SAEBench file with sae-bench's own output classes
(the ``sae_bench`` peer, built on first use).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "configs" / "saebench.yaml"
SWEEP = ROOT / "configs" / "sweep_organism.yaml"
BAR_SECONDS = 15 * 60
#: the sweep-like run's own held-out measurement (the sweep's is 1M tokens; the suite measures again)
HELDOUT_TOKENS = 16384


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="evaluate this run (default: train a sweep-like run first)")
    parser.add_argument("--suite", default=str(SUITE), help="the suite config (default configs/saebench.yaml)")
    parser.add_argument("--out", help="where the suite writes (default: a temporary directory)")
    parser.add_argument("--train-tokens", type=int, default=100_000, help="tokens of the sweep-like run (no --run-dir)")
    parser.add_argument("--set", action="append", default=[], help="suite override a.b=value (repeatable)")
    parser.add_argument("--validate", action="store_true", help="validate the files with sae-bench's classes")
    parser.add_argument("--no-progress", action="store_true")


def train_sweep_like(out: Path, n_tokens: int, device: str, progress: bool) -> Path:
    """configs/sweep_organism.yaml's SAEs (every family and hook) trained for ``n_tokens`` into ``out``."""
    from sae.config import load_config
    from sae.train_run import RunConfig, train

    overrides = [f"data.n_tokens={n_tokens}", f"data.device={device}", f"heldout.n_tokens={HELDOUT_TOKENS}"]
    cfg = load_config(RunConfig, SWEEP, overrides)
    train(cfg, out, progress=progress)
    return out


def run(args: argparse.Namespace) -> dict:
    from evals.suite import run_suite
    from evals.suite_config import SuiteConfig
    from sae.config import load_config
    from sae.errors import ConfigError, SaelabError
    from sae.run_dir import find_saes

    cfg = load_config(SuiteConfig, args.suite, [*args.set, f"data.device={args.device}"])
    if not cfg.saebench.evals:
        raise ConfigError(f"{args.suite}: saebench.evals is empty; nothing to time")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="saelab_bench_evals_"))
    progress = not args.no_progress
    trained = None
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        start = time.perf_counter()
        run_dir = train_sweep_like(out / "sweep_like", args.train_tokens, args.device, progress)
        trained = {
            "config": str(SWEEP.relative_to(ROOT)),
            "n_tokens": args.train_tokens,
            "seconds": round(time.perf_counter() - start, 1),
        }
    try:
        saes = find_saes(run_dir)
    except SaelabError as e:  # a directory without SAEs is bad input (exit 2)
        raise ConfigError(f"--run-dir: {e}") from e
    start = time.perf_counter()
    results = run_suite(cfg, [run_dir], out / "suite", progress=progress)
    total = time.perf_counter() - start
    timings = results.get("timings", {})
    row = {
        "run_dir": str(run_dir),
        "trained": trained,
        "saes": len(saes),
        "families": sorted({s.architecture for s in saes}),
        "evals": list(cfg.saebench.evals),
        "seconds": {name: timings.get(name) for name in ("heldout_pass", *cfg.saebench.evals)},
        "total_seconds": round(total, 1),
        "bar_seconds": BAR_SECONDS,
        "within_bar": total <= BAR_SECONDS,
        "cpu_threads": os.cpu_count(),
        "out": str(out / "suite"),
    }
    if args.validate:
        row["validation"] = validate(out / "suite")
    return row


def validate(out: Path) -> dict:
    """Every SAEBench file under ``out/saebench`` checked by sae-bench's own output classes."""
    from bench.peers import run_peer

    files = sorted(str(p) for p in (out / "saebench").glob("*/*_eval_results.json"))
    report = run_peer("saebench_validate.py", {"files": files}, peer="sae_bench")
    rows = report["results"]
    return {
        "sae_bench_version": report["sae_bench_version"],
        "files": len(rows),
        "valid": sum(r["ok"] is True for r in rows),
        "skipped": sum(r["ok"] is None for r in rows),
        "invalid": [{"file": r["file"], "errors": r["errors"]} for r in rows if r["ok"] is False],
    }
