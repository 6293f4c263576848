"""``saelab circuit TASK --model M --method METHOD [--sae-arch NAME] --json``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("circuit", help="find a task's circuit with one method and score it against ground truth")
    parser.add_argument("task", choices=["ioi", "greater-than"])
    parser.add_argument("--model", default="organism", help="'organism', a model directory or a hub name")
    parser.add_argument("--method", default="discrete-sae",
                        choices=["discrete-sae", "acdc", "patching", "eap", "attn-sae"])
    parser.add_argument("--sae-arch", help="discrete-sae: a registry family in place of the paper's ReLU SAE")
    parser.add_argument("--ground-truth", help="ground truth: path_patching or faithfulness (organism), "
                                               "literature (GPT-2); default: all available, the first reported on top")
    parser.add_argument("--ground-truth-model", help="whose ground-truth files to use (default: organism for "
                                                     "the organism, gpt2 otherwise)")
    parser.add_argument("--n-prompts", type=int, help="prompts (default: 250 for discrete-sae, 100 otherwise)")
    parser.add_argument("--n-train", type=int, default=10, help="discrete-sae: SAE training prompts (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attn-saes", help="attn-sae: directory of per-layer hook_z SAEs (trained if missing)")
    parser.add_argument("--out", help="also write the result JSON here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def result_json(res, model_name: str, truths: list) -> dict:
    from circuits.methods import evaluate

    scored = [evaluate(res, t) for t in truths]
    top = scored[0]
    truth_heads = truths[0].heads
    heads = sorted(res.head_scores.items(), key=lambda kv: -kv[1])
    return {
        "kind": "circuit", "schema_version": 1,
        "task": res.task, "model": model_name, "method": res.method, "ground_truth": top["ground_truth"],
        "roc_auc": top["roc_auc"], "precision": top["precision"], "recall": top["recall"], "f1": top["f1"],
        "tpr_tnr_harmonic_mean": top["tpr_tnr_harmonic_mean"],
        "seconds": res.seconds, "n_prompts": res.n_prompts, "forward_passes": res.forward_passes,
        "heads": [{"head": str(n), "layer": n.layer, "index": n.head, "score": s, "in_ground_truth": n in truth_heads}
                  for n, s in heads],
        "mlps": {str(n): s for n, s in res.node_scores.items() if n.kind == "mlp"},
        "by_ground_truth": {s["ground_truth"]: {k: v for k, v in s.items() if k != "roc_curve"} for s in scored},
        "roc_curves": {s["ground_truth"]: s["roc_curve"] for s in scored},
        "details": {k: v for k, v in res.details.items() if k != "signed_scores"},
    }


def run(args: argparse.Namespace) -> int:
    import json

    from circuits import ground_truth
    from circuits.methods import run_method
    from sae.atomic import write_json
    from sae.errors import SaelabError
    from sae.model import load_model

    model, tokenizer = load_model(args.model)
    gt_model = args.ground_truth_model or ("organism" if args.model == "organism" else "gpt2")
    names = [args.ground_truth] if args.ground_truth else ground_truth.available(gt_model)
    try:
        truths = [ground_truth.load(gt_model, args.task, n) for n in names]
    except (ValueError, FileNotFoundError) as e:
        raise SaelabError(f"ground truth: {e}") from None
    n_prompts = args.n_prompts or (250 if args.method in ("discrete-sae", "attn-sae") else 100)
    if n_prompts < 2:
        raise SaelabError("--n-prompts must be at least 2")
    res = run_method(model, tokenizer, args.task, args.method, n_prompts=n_prompts, seed=args.seed,
                     family=args.sae_arch, n_train=args.n_train, sae_dir=args.attn_saes)
    out = result_json(res, args.model, truths)
    if args.out:
        write_json(args.out, out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.task} / {args.method}: ROC AUC {out['roc_auc']:.3f} against {out['ground_truth']}, "
              f"F1 {out['f1']:.3f}, {out['seconds']:.2f} s")
        print("top heads: " + ", ".join(f"{h['head']}{'*' if h['in_ground_truth'] else ''}" for h in out["heads"][:12]))
    return 0
