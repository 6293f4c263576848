"""``saelab eval``: the evaluation suite, and the supervised-dictionary evaluations.

Three forms share the command, so each keeps its own parser (and its own ``--help``):

    saelab eval --suite configs/eval_suite.yaml RUN_DIR... [--out DIR]    (evals.suite_cli)
    saelab eval supervised --model organism [--sae RUN_DIR...] [--out DIR] (evals.supervised.cli)
    saelab eval saebench RUN_DIR... --evals core,scr,... [--out DIR]      (evals.saebench.cli)
"""

from __future__ import annotations

import argparse
import importlib

FORMS = {"supervised": "evals.supervised.cli", "saebench": "evals.saebench.cli"}
DEFAULT = "evals.suite_cli"


def register(sub: argparse._SubParsersAction) -> None:
    # prefix_chars: no option is this parser's own, so every argument (--suite ...) reaches
    # the form's parser; REMAINDER alone does not capture a leading option.
    parser = sub.add_parser(
        "eval",
        help="evaluate SAEs: the metric suite and report, or 'eval supervised'",
        add_help=False,
        prefix_chars="\x00",
        usage="saelab eval --suite SUITE RUN_DIR... [--out DIR]\n       saelab eval supervised [options]\n"
        "       saelab eval saebench RUN_DIR... [--evals LIST] [--out DIR]",
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    module = FORMS.get(argv[0]) if argv else None
    if module is not None:
        argv = argv[1:]
    return importlib.import_module(module or DEFAULT).main(argv)
