"""``saelab dashboard RUN_DIR`` (build feature records) and ``saelab explore RUN_DIR...`` (the app)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="precompute per-feature dashboard records for every SAE in a run directory",
        description="Run text through the model once and write, for every SAE in RUN_DIR, "
        "<sae>/dashboard/{features,contexts}.parquet: top and interval contexts, "
        "density, histogram, logit effects, neighbours, head attribution.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--config", help="YAML DashboardConfig (see app/dashboard_config.py)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--n-tokens", type=int, help="token positions to run (default 262144)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=dashboard_main)

    e = sub.add_parser(
        "explore",
        help="browse SAE features, prompts, steering and results in Streamlit",
        description="Launch the Streamlit explorer on one or more run directories.",
    )
    e.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    e.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    e.add_argument("--port", type=int, default=8501)
    e.add_argument("--page", choices=PAGE_CHOICES, help="also print the URL that opens this page")
    e.set_defaults(func=explore_main)


PAGE_CHOICES = ("runs", "browser", "feature", "prompt", "circuits", "supervised", "graph", "search")


def dashboard_main(args: argparse.Namespace) -> int:
    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run
    from sae.config import load_config

    overrides = list(args.set or []) + ([f"n_tokens={args.n_tokens}"] if args.n_tokens else [])
    cfg = load_config(DashboardConfig, args.config, overrides)
    for path in build_run(args.run_dir, cfg, progress=not args.quiet):
        print(f"wrote {path}")
    return 0


def streamlit_command(run_dirs: list[str], host: str, port: int) -> list[str]:
    import sys
    from pathlib import Path

    home = Path(__file__).resolve().parent / "Runs.py"
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(home),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--",
        *[str(Path(d).resolve()) for d in run_dirs],
    ]


def explore_main(args: argparse.Namespace) -> int:
    import os

    from app.run_dir import check_run_dir

    for d in args.run_dirs:
        check_run_dir(d)  # before Streamlit starts, so a wrong directory is one line here, not a page
    if args.page:
        print(f"open http://{args.host}:{args.port}/{PAGE_URLS[args.page]}")
    cmd = streamlit_command(args.run_dirs, args.host, args.port)
    os.execv(cmd[0], cmd)  # Streamlit takes this process over: stopping it stops the server
    return 0


PAGE_URLS = {
    "runs": "",
    "browser": "Feature_browser",
    "feature": "Feature_dashboard",
    "prompt": "Prompt_explorer",
    "circuits": "Circuits",
    "supervised": "Supervised",
    "graph": "Graph",
    "search": "Search",
}
