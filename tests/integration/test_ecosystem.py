"""Small promises to users: help that names every form, messages that name real commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from saelab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def test_eval_help_names_the_supervised_form(capsys):
    with pytest.raises(SystemExit) as done:
        main(["eval", "--help"])
    assert done.value.code == 0
    assert "saelab eval supervised" in capsys.readouterr().out


def test_circuits_page_names_a_command_that_exists(tmp_path):
    page = (ROOT / "app/pages/4_Circuits.py").read_text()
    empty = re.search(r'^EMPTY = "(.*)"$', page, re.M).group(1)
    commands = re.findall(r"`(saelab [^`]+)`", empty)
    assert commands
    for command in commands:
        argv = command.replace("RUN_DIR", str(tmp_path)).split()[1:]
        args = build_parser().parse_args(argv)  # argparse exits 2 on a command that does not exist
        assert args.func.__module__ == "circuits.cli"
        assert args.out and Path(args.out).parent == tmp_path


def test_circuit_takes_device():
    args = build_parser().parse_args(["circuit", "ioi", "--device", "cpu"])
    assert args.device == "cpu"
    assert build_parser().parse_args(["circuit", "ioi"]).device == "cpu"
