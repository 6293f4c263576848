"""``saelab train CONFIG [--out RUN_DIR] [--set key=value ...]``."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Train the SAEs of CONFIG side by side on one activation stream, save each (cfg.json + "
    "sae_weights.safetensors, SAELens layout) and score them on held-out tokens. Running the same command "
    "again resumes from the last checkpoint. With --nproc N the job runs data-parallel on N processes "
    "(torchrun; gloo on CPU, NCCL on GPU); 'torchrun --nproc_per_node N -m sae.train CONFIG' is the same."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML run config (see configs/)")
    parser.add_argument("--out", help="run directory (default runs/<config name>)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key, e.g. trainer.lr=1e-3 or saes.0.sae.k=32 (list items by index)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--nproc", type=int, default=1, help="data-parallel processes on this machine (default 1)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="train one or several SAEs on a shared activation stream", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def format_summary(summary: dict) -> str:
    rows = summary.get("saes", {})
    if not rows:
        return ""
    width = max(len(n) for n in rows)
    lines = [f"{'SAE':{width}s}  {'FVU':>7s}  {'L0':>6s}  {'dead':>6s}  {'PCA FVU':>7s}"]
    for name, r in rows.items():
        flag = "" if r.get("l0_in_band", True) else "  (L0 outside the target band)"
        lines.append(
            f"{name:{width}s}  {r['fvu']:7.4f}  {r['l0']:6.2f}  {r['dead_fraction']:6.1%}  {r['pca_fvu']:7.4f}{flag}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sae.config import load_config
    from sae.distributed import forward_argv, from_environment, in_torchrun, launch, shutdown
    from sae.train_run import RunConfig, train

    cfg = load_config(RunConfig, args.config, args.set)  # checked before any process starts or model loads
    if args.nproc > 1 and not in_torchrun():
        return launch("sae.train", forward_argv(args, ["config"], ["out", "set", "quiet"]), args.nproc)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    collective = from_environment(cfg.trainer.device, cfg.trainer.collective_timeout_s)
    try:
        summary = train(cfg, out, progress=not args.quiet, collective=collective)
    finally:
        shutdown()
    if collective.rank == 0:
        print(format_summary(summary))
        seconds = summary.get("seconds", {})
        print(f"run directory: {out} ({seconds.get('total', '?')} s)")
    return 0
