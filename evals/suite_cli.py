"""``saelab eval --suite SUITE [RUN_DIR...] [--out DIR] [--set key=value ...]``."""

from __future__ import annotations

import argparse

from sae.errors import ArgumentParser


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="saelab eval",
        description="Evaluate saved SAEs on held-out text: reconstruction, sparsity, spliced-in CE and KL against "
        "zero and mean ablation, attention-SAE head attribution and DFA, the synthetic ground-truth "
        "benchmark, and (claims suites) the seed papers' claims. Writes results.json and report.html.",
        usage="saelab eval --suite SUITE [RUN_DIR ...] [--out OUT] [--set KEY=VALUE] [--llm-url URL] "
        "[--llm-model NAME] [--quiet]\n"
        "       saelab eval supervised [options]",
        epilog="The other form: 'saelab eval supervised --model organism [--sae RUN_DIR ...] [--out DIR]' runs the "
        "supervised-dictionary evaluations (sufficiency, necessity, control, interpretability); "
        "see 'saelab eval supervised --help'.",
    )
    parser.add_argument(
        "runs",
        nargs="*",
        metavar="RUN_DIR",
        help="run directories ('saelab train --out') or single SAE directories (cfg.json)",
    )
    parser.add_argument("--suite", required=True, help="suite config, e.g. configs/eval_suite.yaml")
    parser.add_argument("--out", default="runs/eval", help="where results.json and report.html go (default runs/eval)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a suite key, e.g. data.n_tokens=65536 or synthetic.enabled=false",
    )
    parser.add_argument(
        "--llm-url",
        help="autointerp: base URL of an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
        "(saebench.autointerp.llm_url; the key is read from SAELAB_LLM_API_KEY or OPENAI_API_KEY)",
    )
    parser.add_argument(
        "--llm-model", help="autointerp: the model name sent to that endpoint (saebench.autointerp.llm_model)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def llm_flags(args: argparse.Namespace) -> dict | None:
    """``--llm-url`` / ``--llm-model`` as a config layer over the suite file (None: neither given)."""
    given = {k: v for k, v in (("llm_url", args.llm_url), ("llm_model", args.llm_model)) if v is not None}
    return {"saebench": {"autointerp": given}} if given else None


def summary_lines(results: dict) -> list[str]:
    rows = results.get("saes", [])
    lines = []
    if rows:
        width = max(len(r["id"]) for r in rows)
        lines.append(
            f"{'SAE':{width}s}  {'L0':>6s}  {'FVU':>6s}  {'CE rec 0':>8s}  {'CE rec μ':>8s}  {'KL':>7s}  {'dead':>6s}"
        )
        for r in rows:
            m = r["metrics"]
            ce0, cem, kl = (
                m.get(k, float("nan")) for k in ("ce_loss_recovered_zero", "ce_loss_recovered_mean", "kl_div")
            )
            lines.append(
                f"{r['id']:{width}s}  {m['l0']:6.2f}  {m['fvu']:6.4f}  {ce0:8.4f}  {cem:8.4f}  {kl:7.4f}  "
                f"{m['dead_fraction']:6.1%}"
            )
    for name, block in (results.get("synthetic") or {}).items():
        lines.append(
            f"synthetic '{name}': "
            + ", ".join(f"{f} MCC {s['mcc']:.3f} recall {s['recall']:.2f}" for f, s in block["families"].items())
        )
    for c in (results.get("claims") or {}).get("claims", []):
        lines.append(f"claim: {c['claim']}: {c['verdict'].upper()} ({c.get('why', '')})")
    return lines


def main(argv: list[str] | None = None) -> int:
    from pathlib import Path

    from evals.suite import run_suite
    from evals.suite_config import SuiteConfig
    from sae.config import load_config

    args = build_parser().parse_args(argv)
    cfg = load_config(SuiteConfig, args.suite, args.set, over=llm_flags(args))
    results = run_suite(cfg, args.runs, args.out, progress=not args.quiet)
    for line in summary_lines(results):
        print(line)
    out = Path(args.out).resolve()
    print(f"results: {out / 'results.json'}\nreport:  {out / 'report.html'} ({results['seconds']} s)")
    return 0
