"""``saelab eval supervised``: supervised-dictionary evaluations of SAEs on IOI.

    saelab eval supervised --model organism [--sae RUN_DIR...] [--out DIR] [--json]

With no ``--sae`` it trains what it compares: task SAEs at every location, full-
distribution SAEs on the model's corpus at the same hooks, and the random-decoder control
(saved under ``OUT/saes``, reused when the same command runs again). Writes
``OUT/supervised.json`` and ``OUT/report.html``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sae.errors import ArgumentParser

QUICK = {
    "prompts": {"n_fit": 2000, "n_eval": 300, "n_heldout_template": 100},
    "saes": {
        "task_epochs": 40,
        "full_tokens": 200_000,
        "architectures": ["relu", "topk", "mutual_choice", "vsae", "gsae"],
    },
    "eval": {"cross_sections": ["name_mover z@END"]},
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="saelab eval supervised",
        description="Score SAEs against supervised dictionaries of the IOI attributes (Makelov, Lange & Nanda "
        "2024): sufficiency, necessity, control and interpretability at the circuit's heads.",
    )
    p.add_argument("--model", default=None, help="'organism' (default), 'organism-b' or 'gpt2'")
    p.add_argument(
        "--sae",
        nargs="+",
        action="extend",
        metavar="RUN_DIR",
        help="SAE directories (or directories holding them) to evaluate; default: train them",
    )
    p.add_argument("--out", default="runs/supervised", help="results directory (default runs/supervised)")
    p.add_argument("--config", help="YAML with SupervisedConfig fields (prompts, saes, eval)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. prompts.n_eval=200"
    )
    p.add_argument(
        "--cross-section",
        action="append",
        metavar="NAME",
        help="evaluate only these cross-sections (repeatable; see --list)",
    )
    p.add_argument(
        "--architectures",
        help="comma-separated SAE families to train (default: every trainable family of the registry)",
    )
    p.add_argument("--l0", type=int, help="matched L0 of the trained SAEs (default 4)")
    p.add_argument("--no-full", action="store_true", help="do not train full-distribution SAEs")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small run: fewer prompts, 3 families, the name movers' output only (minutes on a CPU)",
    )
    p.add_argument("--device", help="device of the model and SAEs (default cpu)")
    p.add_argument("--list", action="store_true", help="list the model's cross-sections and exit")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _config(args: argparse.Namespace):
    from evals.supervised.config import SupervisedConfig
    from sae.config import load_config

    flags: dict = {}
    if args.model:
        flags["model"] = args.model
    if args.device:
        flags["device"] = args.device
    if args.cross_section:
        flags.setdefault("eval", {})["cross_sections"] = args.cross_section
    if args.architectures:
        flags.setdefault("saes", {})["architectures"] = [a.strip() for a in args.architectures.split(",") if a.strip()]
    if args.l0 is not None:
        flags.setdefault("saes", {})["l0"] = args.l0
    if args.no_full:
        flags.setdefault("saes", {})["full_distribution"] = False
    return load_config(SupervisedConfig, args.config, args.set, under=QUICK if args.quick else None, over=flags)


def _print_summary(doc: dict, out: str) -> None:
    from evals.supervised.report import COLUMNS

    print(
        f"supervised-dictionary evaluation of {doc['model']}: {len(doc['results'])} dictionaries, "
        f"{len(doc['cross_sections'])} cross-sections, {doc['seconds']['total']:.0f} s"
    )
    for xs in doc["cross_sections"]:
        base = doc["baselines"][xs["name"]]
        print(
            f"\n{xs['name']} (heads {', '.join(xs['heads'])}); clean LD {base['clean_logit_diff']:.2f}, "
            f"mean ablation keeps {base['mean_ablation_ratio']:.2f}"
        )
        cols = [
            c
            for c in COLUMNS
            if c
            not in (
                "heldout_necessity",
                "sufficiency_gap_recovered",
                "fvu",
                "control_on_changed",
                "causal_sufficiency",
                "causal_sufficiency_reconstruction",
            )
        ]
        print("  " + " ".join(f"{c[:12]:>12}" if c != "label" else f"{c:<40}" for c in cols))
        for row in (r for r in doc["table"] if r["cross_section"] == xs["name"]):
            cells = []
            for c in cols:
                v = row.get(c)
                if isinstance(v, bool):
                    v = "yes" if v else "no"
                cells.append(
                    f"{v:<40}"
                    if c == "label"
                    else f"{'–':>12}"
                    if v is None
                    else f"{v:>12}"
                    if isinstance(v, str)
                    else f"{v:>12.3f}"
                )
            print("  " + " ".join(cells))
    acc = doc["acceptance"]
    print(
        f"\nacceptance at {acc['cross_section']}: sufficiency {acc['supervised_mean_sufficiency']}, "
        f"control {acc['supervised_mean_control']}: {'met' if acc['met'] else 'NOT met'}"
    )
    finding = doc.get("random_decoder_finding")
    if finding:
        print(
            f"random decoder about as bad as full-distribution SAEs: {finding['about_as_bad_as_full']} "
            f"(random − full: {finding['random_minus_full']})"
        )
    print(f"\nresults: {os.path.join(out, 'supervised.json')}; report: {os.path.join(out, 'report.html')}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = _config(args)
    if args.list:
        from evals.supervised.locations import cross_sections
        from evals.supervised.runner import circuit_name

        for xs in cross_sections(circuit_name(cfg.model)):
            print(f"{xs.name}: heads {', '.join(f'{layer}.{head}' for layer, head in xs.heads)}")
        return 0
    from evals.supervised.runner import run

    doc = run(cfg, args.out, sae_paths=args.sae, progress=not args.quiet and not args.json)
    if args.json:
        keep = (
            "kind",
            "schema_version",
            "model",
            "primary_cross_section",
            "acceptance",
            "random_decoder_finding",
            "table",
            "skipped_saes",
            "seconds",
        )
        summary = {k: doc[k] for k in keep}
        summary["results_file"] = os.path.join(args.out, "supervised.json")
        summary["report"] = os.path.join(args.out, "report.html")
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        _print_summary(doc, args.out)
    return 0
