"""``saelab graph PROMPT --transcoders RUN_DIR --out graph.json [--json]``.

Builds the attribution graph of one prompt over per-layer transcoders (circuit-tracer's
method, ``circuits.attribution_graph``), prunes it by influence, prints the replacement
and completeness scores and the node counts, and writes the graph JSON that
circuit-tracer's frontend and Neuronpedia read. Attention patterns and LayerNorm scales
are frozen at the prompt's values, so query/key effects are not in the graph.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("graph", help="attribution graph of one prompt over per-layer transcoders (circuit-tracer)")
    p.add_argument("prompt", help="the prompt (BOS is prepended); the graph explains its next-token logits")
    p.add_argument(
        "--transcoders",
        metavar="RUN_DIR",
        required=True,
        help="run directory with a transcoder at every MLP, blocks.L.mlp.hook_in -> blocks.L.hook_mlp_out "
        "(saelab train configs/transcoders.yaml)",
    )
    p.add_argument("--model", default="organism", help="'organism' (default), 'organism-b' or a GPT-2-style model")
    p.add_argument("--device", default="cpu", help="where the model runs: cpu (default), cuda, cuda:1, mps")
    p.add_argument("--out", help="write the graph JSON here (circuit-tracer / Neuronpedia format)")
    p.add_argument("--slug", help="the graph's slug in the JSON (default: from --out)")
    p.add_argument(
        "--node-threshold", type=float, default=0.8, help="keep nodes carrying this share of influence (default 0.8)"
    )
    p.add_argument(
        "--edge-threshold", type=float, default=0.98, help="keep edges carrying this share of influence (default 0.98)"
    )
    p.add_argument("--max-logits", type=int, default=10, help="at most this many target logits (default 10)")
    p.add_argument(
        "--logit-prob", type=float, default=0.95, help="target logits until this cumulative probability (default 0.95)"
    )
    p.add_argument("--batch-size", type=int, default=256, help="sources per batch of the Jacobian (default 256)")
    p.add_argument("--json", action="store_true", help="print the scores and node counts as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sae.errors import ConfigError

    for name in ("node_threshold", "edge_threshold", "logit_prob"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
    if args.max_logits < 1 or args.batch_size < 1:
        raise ConfigError("--max-logits and --batch-size must be at least 1")
    run_dir = Path(args.transcoders)
    if not run_dir.exists():
        raise ConfigError(f"{run_dir}: no such run directory")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from circuits.attribution_graph import build_graph, graph_summary, load_transcoders, prompt_tokens
    from circuits.cli import check_device
    from circuits.graph_json import graph_json
    from sae.atomic import write_json
    from sae.model import load_model, model_device

    check_args(args)
    check_device(args.device)
    model, tokenizer = load_model(args.model, device=args.device)
    prompt_tokens(model, args.prompt)  # before the transcoders load: a too-long prompt is one line
    transcoders, names = load_transcoders(args.transcoders, model.cfg.n_layers, model_device(model))
    graph = build_graph(
        model,
        transcoders,
        args.prompt,
        max_n_logits=args.max_logits,
        desired_logit_prob=args.logit_prob,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    pruned = graph.prune(args.node_threshold, args.edge_threshold)
    summary = graph_summary(graph, pruned, args.node_threshold, args.edge_threshold, tokenizer)
    summary["transcoders"] = str(args.transcoders)
    if args.out:
        slug = args.slug or Path(args.out).stem
        doc = graph_json(graph, pruned, tokenizer, slug, f"saelab:{args.model}", names, args.node_threshold, summary)
        write_json(args.out, doc)
        summary["out"] = str(args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"attribution graph of {summary['n_tokens']} tokens: replacement score "
            f"{summary['replacement_score']:.3f}, completeness score {summary['completeness_score']:.3f}; "
            f"{summary['n_nodes_pruned']} of {summary['n_nodes']} nodes kept at node threshold "
            f"{args.node_threshold} ({summary['kept_fraction']:.1%}), {summary['n_edges_pruned']} edges"
            + (f"; wrote {args.out}" if args.out else "")
        )
        print("  (attention patterns and LayerNorm scales frozen: query/key effects are not attributed)")
    return 0
