"""``saelab circuit TASK --model M --method METHOD [--sae-arch NAME] [--json]``.

Finds a task's circuit with one method, scores it against every ground truth that
applies to the model (the organism: path patching, then the faithfulness search; GPT-2
small's shape: the literature circuits), prints it, and writes the ``circuit`` results
document with ``--out``. ``--seeds N`` repeats the run over seeds 0..N−1 (mean ± sd);
``--sweep NAME`` runs one of the discrete-SAE sweeps the paper reports.
"""

from __future__ import annotations

import argparse

TASKS = ("ioi", "greater-than")
METHOD_NAMES = ("discrete-sae", "acdc", "patching", "eap", "attn-sae", "mean-diff", "feature-circuit")
SWEEP_NAMES = ("n-train", "n-prompts", "n-codes", "family", "position")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("circuit", help="find a task's circuit with one method and score it against ground truth")
    p.add_argument("task", choices=TASKS)
    p.add_argument("--model", default="organism", help="'organism', 'organism-b', a model directory or a hub name")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, mps")
    p.add_argument("--method", default="discrete-sae", choices=METHOD_NAMES)
    p.add_argument("--sae-arch", help="discrete-sae: a registry family in place of the paper's ReLU SAE")
    p.add_argument(
        "--ground-truth",
        help="only this ground truth: path_patching or faithfulness (an organism), "
        "literature (GPT-2); default: every one that applies, the first on top",
    )
    p.add_argument(
        "--ground-truth-model",
        metavar="NAME",
        help="whose ground-truth files to score against: organism, organism-b, gpt2, ... (default: from the model)",
    )
    p.add_argument("--n-prompts", type=int, help="prompts (default: 250 for discrete-sae, as the paper; 100 otherwise)")
    p.add_argument("--n-train", type=int, default=10, help="discrete-sae: SAE training prompts (default 10)")
    p.add_argument("--n-codes", type=int, default=200, help="discrete-sae: codebook size (default 200)")
    p.add_argument("--k", type=int, help="discrete-sae: k of k-sparse families (default 8)")
    p.add_argument(
        "--scale-inputs",
        action="store_true",
        help="discrete-sae: scale head vectors to mean norm sqrt(d) before the paper's SAE",
    )
    p.add_argument(
        "--no-center-heads",
        dest="center_heads",
        action="store_false",
        help="discrete-sae / mean-diff: do not centre head vectors over d_model (default: centred, as the paper)",
    )
    p.add_argument(
        "--position",
        choices=["mean", "last"],
        default="mean",
        help="discrete-sae / mean-diff: head outputs averaged over positions (default) or the last",
    )
    p.add_argument(
        "--acdc-metric",
        choices=["kl", "task"],
        default="kl",
        help="acdc: threshold the KL from the clean output (default, as Conmy et al.) or the task metric",
    )
    p.add_argument("--taus", help="acdc: comma-separated τ grid (fractions of the clean-vs-corrupted difference)")
    p.add_argument("--validation-prompts", type=int, default=40, help="acdc: prompts that choose τ (default 40)")
    p.add_argument("--attn-saes", help="attn-sae: directory of per-layer hook_z SAEs (trained there if missing)")
    p.add_argument("--attn-sae-tokens", type=int, default=500_000, help="attn-sae: training tokens (default 500k)")
    p.add_argument(
        "--saes",
        metavar="RUN_DIR",
        help="feature-circuit: run directory of SAEs at every layer's hook_attn_out, hook_mlp_out and "
        "hook_resid_post (saelab train configs/feature_circuit.yaml)",
    )
    p.add_argument(
        "--ig-steps", type=int, default=10, help="feature-circuit: IG steps (default 10; 1: attribution patching)"
    )
    p.add_argument(
        "--node-threshold", type=float, default=0.1, help="feature-circuit: node |effect| threshold (default 0.1)"
    )
    p.add_argument(
        "--edge-threshold", type=float, default=0.01, help="feature-circuit: edge |effect| threshold (default 0.01)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="repeat over seeds seed..seed+N-1 and report mean ± sd")
    p.add_argument("--sweep", choices=SWEEP_NAMES, help="discrete-sae: run one of the paper's sweeps over --seeds")
    p.add_argument("--out", help="also write the results JSON here")
    p.add_argument("--json", action="store_true", help="print the results JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def method_config(args: argparse.Namespace):
    from pydantic import ValidationError

    from circuits.methods import MethodConfig
    from sae.config import describe_validation_error
    from sae.errors import ConfigError

    n_prompts = args.n_prompts or (250 if args.method == "discrete-sae" else 100)
    values = {
        "n_prompts": n_prompts,
        "seed": args.seed,
        "n_train": args.n_train,
        "n_codes": args.n_codes,
        "family": args.sae_arch,
        "k": args.k,
        "scale_inputs": args.scale_inputs,
        "center_heads": args.center_heads,
        "position": args.position,
        "acdc_metric": args.acdc_metric,
        "validation_prompts": args.validation_prompts,
        "attn_sae_dir": args.attn_saes,
        "attn_sae_tokens": args.attn_sae_tokens,
        "sae_dir": args.saes,
        "ig_steps": args.ig_steps,
        "node_threshold": args.node_threshold,
        "edge_threshold": args.edge_threshold,
        "progress": not args.quiet,
    }
    if args.taus:
        try:
            values["taus"] = tuple(float(t) for t in args.taus.split(","))
        except ValueError:
            raise ConfigError(f"--taus {args.taus!r}: expected comma-separated numbers") from None
    try:
        return MethodConfig(**values)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, "circuit options")) from None


def check_args(args: argparse.Namespace, cfg) -> None:
    from sae.architectures import trainable_family
    from sae.errors import ConfigError

    if args.sae_arch:
        trainable_family(args.sae_arch, "--sae-arch: ")
    if args.sae_arch and args.method != "discrete-sae":
        raise ConfigError("--sae-arch applies to --method discrete-sae only")
    saes = getattr(args, "saes", None)  # callers that predate feature circuits build Namespaces without it
    if saes and args.method != "feature-circuit":
        raise ConfigError("--saes applies to --method feature-circuit only (attn-sae reads --attn-saes)")
    if saes:
        from pathlib import Path

        if not Path(saes).is_dir():
            raise ConfigError(f"--saes {saes}: no such run directory")
    if args.method == "feature-circuit" and not saes:
        raise ConfigError(
            "--method feature-circuit needs --saes RUN_DIR "
            "(train one: saelab train configs/feature_circuit.yaml --out RUN_DIR)"
        )
    if args.sweep and args.method != "discrete-sae":
        raise ConfigError("--sweep applies to --method discrete-sae only")
    if args.method == "discrete-sae" and cfg.n_train > 2 * cfg.n_prompts and not args.sweep:
        raise ConfigError(
            f"--n-train {cfg.n_train} is more than the {2 * cfg.n_prompts} positive and negative "
            f"prompts of --n-prompts {cfg.n_prompts}"
        )
    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    check_device(args.device)
    if args.ground_truth_model is not None:
        from circuits.ground_truth import truth_models

        known = truth_models()
        if args.ground_truth_model not in known:
            raise ConfigError(f"--ground-truth-model {args.ground_truth_model!r}: unknown (known: {', '.join(known)})")


def check_device(device: str) -> None:
    """``--device`` names a device this torch has: one line otherwise, before the model loads."""
    import torch

    from sae.errors import ConfigError

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: this torch sees no CUDA device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: unsupported device type {dev.type!r}")


def truths_for(args: argparse.Namespace, model) -> list:
    from circuits import ground_truth
    from sae.errors import SaelabError

    truth_model = args.ground_truth_model or ground_truth.truth_model_for(
        args.model, model.cfg.n_layers, model.cfg.n_heads
    )
    try:
        return ground_truth.resolve(truth_model, args.task, args.ground_truth, model.cfg.n_layers, model.cfg.n_heads)
    except (ValueError, FileNotFoundError) as e:
        raise SaelabError(f"ground truth: {e}") from None


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from circuits.methods import run_method
    from circuits.results import result_json, with_repeats
    from sae.atomic import write_json
    from sae.model import load_model

    cfg = method_config(args)
    check_args(args, cfg)
    model, tokenizer = load_model(args.model, device=args.device)
    truths = truths_for(args, model)
    if not truths:
        print(
            f"saelab: note: no ground truth applies to {args.model}; scores are reported unscored "
            "(use --ground-truth-model)",
            file=sys.stderr,
        )
    if args.sweep:
        from circuits.sweeps import run_sweep

        out = run_sweep(
            model, tokenizer, args.task, args.sweep, cfg, truths, args.model, n_seeds=args.seeds, progress=cfg.progress
        )
    else:
        docs = []
        for seed in range(args.seed, args.seed + args.seeds):
            run_cfg = cfg.model_copy(update={"seed": seed})
            res = run_method(model, tokenizer, args.task, args.method, run_cfg)
            docs.append(
                result_json(
                    res, args.model, model.cfg.n_layers, model.cfg.n_heads, truths, run_cfg.model_dump(mode="json")
                )
            )
        out = with_repeats(docs[0], docs[1:]) if len(docs) > 1 else docs[0]
    if args.out:
        write_json(args.out, out)
        if "faithfulness" in out:
            from pathlib import Path

            from circuits.figures import faithfulness_curves
            from sae.atomic import write_text

            figure = Path(args.out).with_suffix(".faithfulness.html")
            write_text(figure, faithfulness_curves(out).to_html(include_plotlyjs="cdn"))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(summary(out))
    return 0


def summary(doc: dict) -> str:
    """A few human lines for one results document."""
    if "sweep" in doc:
        sw = doc["sweep"]
        lines = [
            f"{doc['task']} / discrete-sae sweep over {sw['parameter']} ({len(sw['seeds'])} seeds), "
            f"node ROC AUC against {sw['ground_truth']}:"
        ]
        for row in sw["rows"]:
            auc = f"{row['roc_auc_mean']:.3f} ± {row['roc_auc_sd']:.3f}" if row.get("roc_auc_mean") is not None else "–"
            lines.append(f"  {row['value']!s:>14}: {auc}   {row['seconds_mean']:.1f} s")
        return "\n".join(lines)
    head = f"{doc['task']} / {doc['method']} on {doc['model']}: "
    if doc.get("roc_auc") is not None:
        rep = doc.get("repeats")
        auc = (
            f"{rep['roc_auc_mean']:.3f} ± {rep['roc_auc_sd']:.3f} over {len(rep['seeds'])} seeds"
            if rep
            else f"{doc['roc_auc']:.3f}"
        )
        head += f"node ROC AUC {auc} against {doc['ground_truth']}, F1 {doc['f1']:.3f} (top-|GT|), "
    head += f"{doc['seconds']:.2f} s"
    others = [
        f"{name} {s['roc_auc']:.3f}" for name, s in doc["by_ground_truth"].items() if name != doc.get("ground_truth")
    ]
    lines = [head]
    if "faithfulness" in doc:
        lines.append(
            f"  circuit at node threshold {doc['details']['node_threshold']}: {doc['n_nodes']} latents + "
            f"{doc['n_error_nodes']} error nodes, {doc['n_edges']} edges; faithfulness {doc['faithfulness']:.3f}, "
            f"completeness {doc['completeness']:.3f}"
        )
    if others:
        lines.append("  also against: " + ", ".join(others))
    lines.append(
        "  top heads (* in ground truth): "
        + ", ".join(f"{h['head']}{'*' if h['in_ground_truth'] else ''}" for h in doc["heads"][:12])
    )
    return "\n".join(lines)
