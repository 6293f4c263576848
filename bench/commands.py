"""``saelab bench NAME [--json]``, ``saelab bench all`` and ``saelab bench report`` (docs/results.md)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def register(sub: argparse._SubParsersAction) -> None:
    from bench import BENCHMARKS

    parser = sub.add_parser("bench", help="run benchmarks (ratios measured side by side in one run)")
    names = parser.add_subparsers(dest="bench_name", metavar="NAME")
    names.required = True
    everything = names.add_parser("all", help="run every benchmark, print one table, write bench/results/")
    everything.add_argument("--device", default="cpu", help="cpu or cuda")
    everything.set_defaults(func=_run_all)
    report = names.add_parser("report", help="print docs/results.md, the result tables, from bench/results/*.json")
    report.add_argument("--html", metavar="PAGE", help="also draw the figures (throughput, memory, scaling) into PAGE")
    report.add_argument(
        "--readme", action="store_true", help="also rewrite README.md's generated performance tables from the JSON"
    )
    report.set_defaults(func=_report)
    for name, module in BENCHMARKS.items():
        p = names.add_parser(name, help=(importlib.import_module(module).__doc__ or "").strip().splitlines()[0])
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--no-save", action="store_true", help="print only: leave bench/results/ as it is (a check run)")
        p.add_argument("--device", default="cpu", help="cpu or cuda")
        add = getattr(importlib.import_module(module), "add_arguments", None)
        if add:
            add(p)
        p.set_defaults(func=_run_one, module=module)


def _conditions(args: argparse.Namespace) -> dict:
    """What a reader needs to judge a result: the arguments it ran with and the machine."""
    import datetime
    import os
    import platform

    import torch

    from sae.allocator import settings

    skip = {"func", "module", "json", "no_save", "bench_name"}
    return {
        "args": {k: v for k, v in vars(args).items() if k not in skip},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "malloc": settings(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
    }


def _save(name: str, result, args: argparse.Namespace) -> Path:
    """``bench/results/NAME.json`` (``NAME_cuda.json`` for GPU runs), with the run's conditions.

    A benchmark module with ``merge_saved(previous, document)`` decides what a partial run
    keeps of the previous file (``saelab bench peers --rows``)."""
    from bench import BENCHMARKS
    from sae.atomic import write_json

    suffix = "" if args.device == "cpu" else f"_{args.device}"
    path = RESULTS_DIR / f"{name}{suffix}.json"
    document = {"kind": "bench", "schema_version": 1, "name": name, "result": result, **_conditions(args)}
    merge = getattr(importlib.import_module(BENCHMARKS[name]), "merge_saved", None) if name in BENCHMARKS else None
    if merge is not None and path.exists():
        document = merge(json.loads(path.read_text()), document)
    write_json(path, document)
    return path


def _run_one(args: argparse.Namespace) -> int:
    result = importlib.import_module(args.module).run(args)
    if not args.no_save:
        _save(args.bench_name, result, args)
    print(json.dumps(result, indent=2) if args.json else _table({args.bench_name: result}))
    return 0


def _report(args: argparse.Namespace) -> int:
    import sys

    from bench.results_doc import main

    if args.html:
        from bench.figures import write_page

        print(f"figures: {write_page(RESULTS_DIR, Path(args.html))}", file=sys.stderr)
    if args.readme:
        from bench.readme_tables import write_readme

        print(f"performance tables: {write_readme()}", file=sys.stderr)
    return main()


def _run_all(args: argparse.Namespace) -> int:
    from bench import BENCHMARKS

    results = {}
    for name, module in BENCHMARKS.items():
        parser = argparse.ArgumentParser()
        add = getattr(importlib.import_module(module), "add_arguments", None)
        if add:
            add(parser)
        ns = parser.parse_args([])
        ns.device, ns.json, ns.bench_name = args.device, False, name
        results[name] = importlib.import_module(module).run(ns)
        _save(name, results[name], ns)
    print(_table(results))
    return 0


def _rows(result) -> list[dict]:
    return result if isinstance(result, list) else [result]


def _table(results: dict) -> str:
    lines = []
    for name, result in results.items():
        for row in _rows(result):
            cells = [
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row.items()
                if not isinstance(v, (dict, list))
            ]
            lines.append(f"{name:10s} " + "  ".join(cells))
    return "\n".join(lines)
