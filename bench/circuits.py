"""circuits: every circuit-discovery method on the organism, both tasks, both ground truths.

All methods run in one invocation on the same prompts (``--n-prompts`` each), so their
wall-clock times compare side by side; the discrete-SAE finder runs with the paper's
fixed hyperparameters over ``--seeds`` seeds (mean ± sd). ACDC's time is one run at the
τ chosen on a validation split, its own caching included. The attention SAEs are
trained once and their training time is counted in attn-sae's seconds for every task.
Rows: ``{task, method, ground_truth, roc_auc, roc_auc_sd, seconds, fraction_of_acdc_time,
...}``; verdicts (where a baseline beats discrete-sae) go to stderr. ``--out-dir`` keeps
every ``circuit`` results document and the HTML report built from them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ALL_METHODS = ("discrete-sae", "mean-diff", "patching", "eap", "attn-sae", "acdc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", default="ioi,greater-than")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--n-prompts", type=int, default=100, help="prompts for every method (default 100)")
    parser.add_argument("--seeds", type=int, default=5, help="discrete-sae seeds (default 5)")
    parser.add_argument("--taus", default="0.001,0.003,0.01,0.03,0.1,0.3", help="ACDC τ grid")
    parser.add_argument("--acdc-metric", default="kl", choices=["kl", "task"])
    parser.add_argument("--validation-prompts", type=int, default=40)
    parser.add_argument("--attn-saes", help="reuse (or train into) this directory of per-layer hook_z SAEs")
    parser.add_argument("--attn-sae-tokens", type=int, default=500_000)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out-dir", help="also write every circuit results document here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> list[dict]:
    import torch

    from circuits import ground_truth
    from circuits.compare import summary_rows, verdicts
    from circuits.methods import MethodConfig, run_method
    from circuits.results import result_json, with_repeats
    from sae.atomic import write_json
    from sae.errors import ConfigError
    from sae.model import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise ConfigError(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(ALL_METHODS)})")
    if args.attn_saes is None:  # one set of attention SAEs for every task, removed at the end
        with tempfile.TemporaryDirectory(prefix="saelab_bench_attn_") as tmp:
            args.attn_saes = tmp
            try:
                return run(args)
            finally:
                args.attn_saes = None
    model, tokenizer = load_model("organism")
    base = MethodConfig(
        n_prompts=args.n_prompts,
        taus=tuple(float(t) for t in args.taus.split(",")),
        acdc_metric=args.acdc_metric,
        validation_prompts=args.validation_prompts,
        attn_sae_dir=args.attn_saes,
        attn_sae_tokens=args.attn_sae_tokens,
        progress=not args.quiet,
    )
    docs = []
    for task in tasks:
        truths = ground_truth.resolve("organism", task, None, model.cfg.n_layers, model.cfg.n_heads)
        for method in methods:
            seeds = range(args.seeds) if method == "discrete-sae" else range(1)
            found = []
            for seed in seeds:
                cfg = base.model_copy(update={"seed": seed})
                res = run_method(model, tokenizer, task, method, cfg)
                found.append(
                    result_json(
                        res, "organism", model.cfg.n_layers, model.cfg.n_heads, truths, cfg.model_dump(mode="json")
                    )
                )
            doc = with_repeats(found[0], found[1:]) if len(found) > 1 else found[0]
            docs.append(doc)
            if args.out_dir:
                write_json(Path(args.out_dir) / f"circuit_{task}_{method}.json", doc)
    for line in verdicts(docs):
        print(line, file=sys.stderr)
    if args.out_dir:
        from evals.report import build_report

        print(
            f"report: {build_report(args.out_dir, title='saelab: circuit discovery on the organism')}", file=sys.stderr
        )
    keep = (
        "task",
        "method",
        "ground_truth",
        "roc_auc",
        "roc_auc_sd",
        "seeds",
        "edge_roc_auc",
        "node_roc_auc_with_mlps",
        "edge_method_roc_auc",
        "pair_roc_auc",
        "f1",
        "tpr_tnr_harmonic_mean",
        "seconds",
        "fraction_of_acdc_time",
        "forward_passes",
        "n_prompts",
    )
    return [{k: r[k] for k in keep} for r in summary_rows(docs)]
