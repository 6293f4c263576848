"""``saelab config --schema [KIND] | --explain FILE [--kind KIND] [--set k=v] | --reference``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="config kinds: JSON schema, a file explained field by field, the reference",
        description="Print the JSON schema of a config kind (train, cache, suite, supervised, circuit, dashboard, "
        "organism; no KIND: list them), a config file resolved (defaults filled, --set applied) with each "
        "field's documentation beside it, or the whole reference (docs/configs.md).",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--schema", nargs="?", const="", metavar="KIND", help="JSON schema of KIND (no KIND: list kinds)")
    what.add_argument("--explain", metavar="FILE", help="FILE resolved, each field with its documentation")
    what.add_argument("--reference", action="store_true", help="the config reference in Markdown (docs/configs.md)")
    p.add_argument("--kind", help="--explain: the config kind of FILE (default: detected from its keys)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="--explain: override a key (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from saelab.config_kinds import KINDS, detect, kind

    if args.schema is not None:
        if not args.schema:
            for k in KINDS.values():
                print(f"{k.name:<11} {k.cls:<17} {k.command}")
            return 0
        print(json.dumps(kind(args.schema).config_class().model_json_schema(), indent=1, ensure_ascii=False))
        return 0
    if args.reference:
        from saelab.config_docs import reference

        print(reference(), end="")
        return 0
    from sae.config import build_config, load_data, read_yaml
    from saelab.config_docs import explain

    found = kind(args.kind) if args.kind else detect(args.explain, read_yaml(args.explain))
    config = build_config(found.config_class(), load_data(args.explain, args.set), args.explain)
    print(explain(found.name, config, args.explain), end="")
    return 0
