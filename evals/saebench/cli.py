"""``saelab eval saebench RUN_DIR... --evals core,sparse_probing,... [--out DIR] [--suite SUITE] [--set K=V]``.

The suite (``evals.suite``) with only SAEBench's evaluations selected: the same files as
``saelab eval --suite configs/saebench.yaml`` (results.json, report.html, per-eval SAEBench
JSON under OUT/saebench/) plus ``summary.json`` (each SAE's headline per eval, beside its
controls). ``--evals`` overrides the suite's ``saebench.evals``; without ``--suite`` the
held-out pass is configs/saebench.yaml's (``BASE``).
"""

from __future__ import annotations

import argparse

from sae.errors import ArgumentParser, ConfigError

#: the held-out pass of configs/saebench.yaml, used when no --suite is given
BASE = {
    "data": {"n_tokens": 32768, "seed": 20002, "lm_batch_size": 64},
    "mean_ablation": {"n_tokens": 16384, "seed": 20003},
    "attention": {"enabled": False},
}


def build_parser() -> argparse.ArgumentParser:
    from evals.saebench import EVALS

    parser = ArgumentParser(
        prog="saelab eval saebench",
        description="SAEBench's evaluations on the organism's world, each beside its controls (a random-decoder "
        "SAE of the same width and L0, rank-L0 PCA, the raw activations where the eval probes). Writes "
        "SAEBench-format JSON per SAE and eval, summary.json, results.json and report.html.",
        usage="saelab eval saebench RUN_DIR ... [--evals LIST] [--out OUT] [--suite SUITE] [--set KEY=VALUE] "
        "[--no-controls] [--quiet]",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or single SAE directories")
    parser.add_argument(
        "--evals",
        default=",".join(EVALS),
        help=f"comma-separated evaluations (default all: {','.join(EVALS)})",
    )
    parser.add_argument("--out", default="runs/saebench", help="output directory (default runs/saebench)")
    parser.add_argument("--suite", help="a suite config for the held-out pass and the evals' settings")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a suite key")
    parser.add_argument("--no-controls", action="store_true", help="skip the controls (summary: the SAEs only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def parse_evals(text: str) -> list[str]:
    """The names of ``--evals``, each a registered evaluation (else one line naming it)."""
    from evals.saebench import EVALS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--evals names no evaluation")
    unknown = [n for n in names if n not in EVALS]
    if unknown:
        raise ConfigError(f"unknown SAEBench eval {unknown[0]!r}; known: {', '.join(EVALS)}")
    return names


def summary_lines(summary: dict) -> list[str]:
    lines = []
    for s in summary["saes"]:
        for name, row in s["evals"].items():
            values = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "metric"
            )
            lines.append(f"{s['id']}  {name} [{row.get('metric')}]: {values}")
    return lines


def main(argv: list[str] | None = None) -> int:
    import json
    from pathlib import Path

    from evals.suite import run_suite
    from evals.suite_config import SuiteConfig
    from sae.config import load_config

    args = build_parser().parse_args(argv)
    names = parse_evals(args.evals)
    over = {"saebench": {"evals": names, **({"controls": False} if args.no_controls else {})}}
    cfg = load_config(SuiteConfig, args.suite, args.set, under=None if args.suite else BASE, over=over)
    results = run_suite(cfg, args.runs, args.out, progress=not args.quiet)
    out = Path(args.out).resolve()
    if (out / "summary.json").is_file():  # absent when no SAEBench eval applied (RAVEL alone on the hub path)
        for line in summary_lines(json.loads((out / "summary.json").read_text())):
            print(line)
    print(f"summary: {out / 'summary.json'}\nreport:  {out / 'report.html'} ({results['seconds']} s)")
    return 0
