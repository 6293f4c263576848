"""circuits: every circuit-discovery method on both organisms, both tasks, both ground truths.

All methods run in one invocation on the same prompts (``--n-prompts`` each), so their
wall-clock times compare side by side; the discrete-SAE finder runs with the paper's
fixed hyperparameters over ``--seeds`` seeds (mean ± sd). ACDC's time is one run at the
τ chosen on a validation split, its own caching included. The attention SAEs are
trained once per model (``--attn-saes DIR/<model>``) and their training time is counted
in attn-sae's seconds for every task. ``--models`` lists the organisms (default: the
organism and, when its weights are present, organism-b: the held-out second organism of
docs/validation.md). Rows: ``{model, task, method, ground_truth, roc_auc, roc_auc_sd,
seconds, fraction_of_acdc_time, ...}``; verdicts (where a baseline beats discrete-sae)
go to stderr. ``--out-dir`` keeps every ``circuit`` results document
(``circuit_<model>_<task>_<method>.json``) and the HTML report built from them;
``--resume`` reuses a document already there when it was made with the same settings
(so a long run split across processes, or cut short, is finished rather than redone);
such rows say ``reused: true``, and their seconds are those of the run that made them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ALL_METHODS = ("discrete-sae", "mean-diff", "patching", "eap", "attn-sae", "acdc")
#: run only when named in --methods: feature-circuit needs SAE runs (--feature-saes DIR/<model>)
OPT_IN_METHODS = ("feature-circuit",)
#: the organisms the benchmark knows, first the one every variant is chosen on
ORGANISMS = ("organism", "organism-b")


def default_models() -> list[str]:
    """The organism, and organism-b when its weights are present (they ship with the lab;
    a checkout without them still benchmarks the first)."""
    from sae import providers

    out = []
    for name in ORGANISMS:
        provider = providers.find(name)
        if provider is not None and (provider.model_dir / "config.json").is_file():
            out.append(name)
    return out or [ORGANISMS[0]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        help="comma-separated model providers with frozen circuits "
        "(default: organism, and organism-b when its weights exist)",
    )
    parser.add_argument("--tasks", default="ioi,greater-than")
    parser.add_argument("--methods", default=",".join(ALL_METHODS))
    parser.add_argument("--n-prompts", type=int, default=100, help="prompts for every method (default 100)")
    parser.add_argument("--seeds", type=int, default=5, help="discrete-sae seeds (default 5)")
    parser.add_argument("--taus", default="0.001,0.003,0.01,0.03,0.1,0.3", help="ACDC τ grid")
    parser.add_argument("--acdc-metric", default="kl", choices=["kl", "task"])
    parser.add_argument("--validation-prompts", type=int, default=40)
    parser.add_argument("--attn-saes", help="reuse (or train into) this directory of per-layer hook_z SAEs")
    parser.add_argument("--attn-sae-tokens", type=int, default=500_000)
    parser.add_argument(
        "--feature-saes",
        help="feature-circuit (opt-in): DIR/<model> is a run of configs/feature_circuit.yaml for each model",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out-dir", help="also write every circuit results document here")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --out-dir: reuse each results document already there that was made with the same settings",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> list[dict]:
    import torch

    from circuits import ground_truth
    from circuits.compare import summary_rows, verdicts
    from sae.errors import ConfigError

    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m] if args.models else default_models()
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(ALL_METHODS) - set(OPT_IN_METHODS))
    if unknown:
        known = ", ".join(ALL_METHODS + OPT_IN_METHODS)
        raise ConfigError(f"--methods: unknown {', '.join(unknown)} (known: {known})")
    if "feature-circuit" in methods and not args.feature_saes:
        raise ConfigError("--methods feature-circuit needs --feature-saes DIR (DIR/<model>: its SAE run)")
    foreign = [m for m in models if ground_truth.circuits_file(m) is None]
    if foreign or not models or len(set(models)) < len(models):
        raise ConfigError(
            f"--models {args.models!r}: give distinct model providers that ship frozen circuits "
            f"(e.g. {', '.join(ORGANISMS)})"
        )
    if args.resume and not args.out_dir:
        raise ConfigError("--resume needs --out-dir (the directory whose results documents it reuses)")
    if args.attn_saes is None:  # one set of attention SAEs per model for every task, removed at the end
        with tempfile.TemporaryDirectory(prefix="saelab_bench_attn_") as tmp:
            args.attn_saes = tmp
            try:
                return run(args)
            finally:
                args.attn_saes = None
    docs = []
    for name in models:
        docs += _run_model(args, name, tasks, methods)
    for line in verdicts(docs):
        print(line, file=sys.stderr)
    if args.out_dir:
        from evals.report import build_report

        title = f"saelab: circuit discovery on {' and '.join(models)}"
        print(f"report: {build_report(args.out_dir, title=title)}", file=sys.stderr)
    keep = (
        "model",
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
    reused = {(d["model"], d["task"], d["method"]) for d in docs if d.get("reused")}
    own = {(d["model"], d["task"], d["method"]): feature_circuit_figures(d) for d in docs}
    return [
        {
            **{k: r[k] for k in keep},
            **own.get((r["model"], r["task"], r["method"]), {}),
            "reused": (r["model"], r["task"], r["method"]) in reused,
        }
        for r in summary_rows(docs)
    ]


#: a feature circuit's own figures at the paper's thresholds (circuits/feature_circuits.py)
FEATURE_CIRCUIT_FIGURES = ("faithfulness", "completeness", "n_nodes", "n_error_nodes", "n_edges")


def feature_circuit_figures(doc: dict) -> dict:
    """What a head-level AUC does not say about a feature circuit: its faithfulness and
    completeness at the thresholds, its size, and how many latents the faithfulness curve
    needs to reach 0.8 (None: not within every latent). Empty for the other methods."""
    if doc.get("method") != "feature-circuit":
        return {}
    out = {k: doc.get(k) for k in FEATURE_CIRCUIT_FIGURES}
    out["n_features_for_faithfulness_0.8"] = (doc.get("details") or {}).get("n_features_for_faithfulness_0.8")
    return out


def _run_model(args: argparse.Namespace, name: str, tasks: list[str], methods: list[str]) -> list[dict]:
    """Every method on every task of one organism, scored against its own ground truths."""
    from circuits import ground_truth
    from circuits.methods import MethodConfig, run_method
    from circuits.results import result_json, with_repeats
    from sae.atomic import write_json
    from sae.errors import SaelabError
    from sae.model import load_model

    model, tokenizer = load_model(name)
    base = MethodConfig(
        n_prompts=args.n_prompts,
        taus=tuple(float(t) for t in args.taus.split(",")),
        acdc_metric=args.acdc_metric,
        validation_prompts=args.validation_prompts,
        # the layer SAEs of one model are no use to another (other depth, other weights)
        attn_sae_dir=str(Path(args.attn_saes) / name),
        attn_sae_tokens=args.attn_sae_tokens,
        sae_dir=str(Path(args.feature_saes) / name) if getattr(args, "feature_saes", None) else None,
        progress=not args.quiet,
    )
    docs = []
    for task in tasks:
        try:
            truths = ground_truth.resolve(name, task, None, model.cfg.n_layers, model.cfg.n_heads)
        except ValueError as e:
            raise SaelabError(f"ground truth: {e}") from None
        for method in methods:
            seeds = range(args.seeds) if method == "discrete-sae" else range(1)
            target = Path(args.out_dir) / f"circuit_{name}_{task}_{method}.json" if args.out_dir else None
            done = _reusable(target, base.model_copy(update={"seed": 0}), len(seeds)) if args.resume else None
            if done is not None:
                docs.append({**done, "reused": True})
                continue
            found = []
            for seed in seeds:
                cfg = base.model_copy(update={"seed": seed})
                res = run_method(model, tokenizer, task, method, cfg)
                found.append(
                    result_json(res, name, model.cfg.n_layers, model.cfg.n_heads, truths, cfg.model_dump(mode="json"))
                )
            doc = with_repeats(found[0], found[1:]) if len(found) > 1 else found[0]
            docs.append(doc)
            if target is not None:
                write_json(target, doc)
    return docs


#: MethodConfig fields that do not change a result
_NOT_SETTINGS = ("progress", "attn_sae_dir", "sae_dir")


def _reusable(target: Path, cfg, n_seeds: int) -> dict | None:
    """The results document at ``target`` when it was made with ``cfg`` (its first seed's
    settings) over ``n_seeds`` seeds; otherwise None, and it is run again. Unreadable or
    foreign files are run again too, never trusted. Progress bars and where the attention
    SAEs are kept do not change a result, so they may differ."""
    import json

    def settings(config: dict) -> dict:
        # a document written before a MethodConfig field existed was made with its default
        config = {**type(cfg)().model_dump(mode="json"), **config}
        return {k: v for k, v in config.items() if k not in _NOT_SETTINGS}

    try:
        doc = json.loads(target.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("kind") != "circuit":
        return None
    if not isinstance(doc.get("config"), dict) or settings(doc["config"]) != settings(cfg.model_dump(mode="json")):
        return None
    seeds = doc.get("repeats", {}).get("seeds", [doc["config"].get("seed")])
    return doc if len(seeds) == n_seeds else None
