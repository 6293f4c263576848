"""``saelab eval supervised``: its own parser, and one clear line for bad input."""

from __future__ import annotations

import pytest

from saelab.cli import main


@pytest.mark.parametrize(
    "argv, message, code",
    [
        (["--cross-section", "no such heads", "--sae", "."], "unknown cross-section(s) ['no such heads']", 1),
        (["--set", "prompts.n_eval=-1"], "key 'prompts.n_eval'", 2),
        (["--set", "eval.attributes=[IO,Gender]"], "unknown attribute(s) ['Gender']", 2),
        (["--model", "pythia-70m"], "no IOI circuit roles for model 'pythia-70m'", 1),
        (["--sae", "/no/such/sae"], "/no/such/sae: no such SAE directory", 1),
    ],
)
def test_bad_input_is_one_line(argv, message, code, capsys, tmp_path):
    assert main(["eval", "supervised", "--out", str(tmp_path), *argv]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("saelab: error:")


def test_an_empty_sae_directory_is_named(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["eval", "supervised", "--out", str(tmp_path / "o"), "--sae", str(tmp_path / "empty")]) == 1
    assert "holds no saved SAE" in capsys.readouterr().err


def test_help_and_list(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "supervised", "--help"])
    assert e.value.code == 0
    assert "usage: saelab eval supervised" in capsys.readouterr().out
    assert main(["eval", "supervised", "--list"]) == 0
    out = capsys.readouterr().out
    assert "name_mover z@END: heads 2.0, 2.1, 2.2, 2.6" in out
    assert main(["eval", "supervised", "--list", "--model", "gpt2"]) == 0
    assert "induction+duplicate z@S2" in capsys.readouterr().out
