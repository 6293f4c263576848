"""The ``saelab`` command: one entry point whose subcommands live with their packages.

Each entry of ``COMMANDS`` names a module exposing ``register(subparsers)``; those
modules import only argparse at top level, so ``saelab --help`` stays instant and heavy
imports (torch, transformers) happen inside the command that needs them.

Errors a user can fix (``SaelabError``) print one line on stderr and exit non-zero;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from sae.allocator import keep_freed_memory
from sae.errors import ArgumentParser, SaelabError

COMMANDS: tuple[str, ...] = (
    "organism.commands",
    "sae.cli_cache",
    "sae.cli_train",
    "sae.cli_sae",
    "circuits.cli",
    "circuits.cli_graph",
    "evals.cli",
    "app.cli",
    "app.cli_export",
    "bench.commands",
    "saelab.demo",
    "saelab.config_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="saelab",
        description="Sparse-autoencoder lab: train SAEs, explore features, find circuits, evaluate.",
    )
    from saelab import __version__

    parser.add_argument("--version", action="version", version=f"saelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    keep_freed_memory()  # for this process and every worker or peer it starts
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except SaelabError as e:
        print(f"saelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("saelab: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
