"""``saelab organism train | eval | circuits``."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("organism", help="train, evaluate and dissect the embedded model organism")
    verbs = parser.add_subparsers(dest="organism_command", metavar="VERB")
    verbs.required = True

    train = verbs.add_parser("train", help="train the organism from its generated corpus (deterministic)")
    train.add_argument("--config", help="YAML config (default: configs/organism.yaml values built in)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    train.add_argument("--out", help="output directory (default: the shipped organism/weights)")
    train.add_argument("--force", action="store_true", help="replace existing weights in --out")
    train.set_defaults(func=_train)

    ev = verbs.add_parser("eval", help="score the organism on held-out IOI and greater-than prompts")
    ev.add_argument("--model", default="organism", help="'organism', 'organism-b', a model directory or a hub name")
    ev.add_argument("--n-prompts", type=int, default=1100, help="held-out IOI prompts (default 1100)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(func=_eval)

    circ = verbs.add_parser("circuits", help="find the IOI and greater-than circuits by path patching")
    circ.add_argument("--model", default="organism", help="'organism', 'organism-b' or a model directory")
    circ.add_argument("--out", help="write the circuits JSON here (atomically)")
    circ.add_argument(
        "--freeze",
        action="store_true",
        help="write them to the provider's frozen circuits file (organism/circuits.json, "
        "organism/circuits_b.json), the ground truth every circuit method is scored against",
    )
    circ.add_argument("--json", action="store_true", help="print the circuits JSON")
    circ.set_defaults(func=_circuits)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from organism.provider import WEIGHTS
    from organism.train import OrganismConfig, train
    from sae.config import load_config
    from sae.errors import SaelabError

    cfg = load_config(OrganismConfig, args.config, args.set)
    out = Path(args.out) if args.out else WEIGHTS
    if (out / "model.safetensors").exists() and not args.force:
        raise SaelabError(f"{out} already holds trained weights; pass --force to replace them")
    meta = train(cfg, out)
    print(f"organism written to {out} ({meta['train_tokens']:,} tokens, final loss {meta['final_loss']:.3f})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json as _json
    from pathlib import Path

    from organism.evaluate import evaluate
    from sae.model import load_model

    if args.n_prompts < 20:
        from sae.errors import SaelabError

        raise SaelabError("--n-prompts must be at least 20")
    model, tokenizer = load_model(args.model)
    result = {
        **evaluate(lambda t: model(t), tokenizer, n_prompts=args.n_prompts),
        "n_layers": model.cfg.n_layers,
        "n_heads_total": model.cfg.n_layers * model.cfg.n_heads,
        "train_tokens": None,
    }
    meta = Path(model.saelab_source.location) / "training.json"
    if meta.is_file():
        result["train_tokens"] = _json.loads(meta.read_text())["train_tokens"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"IOI accuracy {result['ioi_accuracy']:.3f}, logit diff {result['ioi_logit_diff']:.2f}; "
            f"held-out template accuracy {result['heldout_template']['accuracy']:.3f}; "
            f"greater-than prob diff {result['greater_than_prob_diff']:.3f}"
        )
    return 0


def _circuits(args: argparse.Namespace) -> int:
    from organism.find_circuits import find_circuits
    from sae import providers
    from sae.atomic import write_json
    from sae.errors import SaelabError
    from sae.model import load_model

    outs = [args.out] if args.out else []
    if args.freeze:
        provider = providers.find(args.model)
        if provider is None or "circuits" not in provider.files:
            raise SaelabError(f"--freeze: {args.model!r} is not a model provider with a circuits file; use --out")
        outs.append(str(provider.files["circuits"]))
    model, tokenizer = load_model(args.model)
    result = find_circuits(model, tokenizer)
    for out in outs:
        write_json(out, result)
        print(f"circuits written to {out}", file=sys.stderr)
    if args.json or not outs:
        print(json.dumps(result, indent=2))
    return 0
