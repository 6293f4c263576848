"""The saelab command line: subcommands listed, errors as one line with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from saelab.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("organism", "demo", "bench"):
        assert command in out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "saelab", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "organism" in result.stdout


def _one_line_error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("saelab: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_missing_model_directory_is_one_line(capsys, tmp_path):
    err = _one_line_error(capsys, ["organism", "eval", "--model", str(tmp_path / "nope")], 1)
    assert "no such model directory" in err


def test_bad_config_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    assert "malformed YAML" in _one_line_error(capsys, ["organism", "train", "--config", str(bad), "--out", str(tmp_path / "o")], 2)
    bad.write_text("stepz: 10\n")
    assert "key 'stepz': unknown key" in _one_line_error(capsys, ["organism", "train", "--config", str(bad), "--out", str(tmp_path / "o")], 2)
    bad.write_text("steps: many\n")
    assert "key 'steps'" in _one_line_error(capsys, ["organism", "train", "--config", str(bad), "--out", str(tmp_path / "o")], 2)
    err = _one_line_error(capsys, ["organism", "train", "--set", "corpus.weights={poetry: 1}", "--out", str(tmp_path / "o")], 2)
    assert "unknown sentence families" in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_to_overwrite_weights(capsys, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    err = _one_line_error(capsys, ["organism", "train", "--out", str(tmp_path)], 1)
    assert "--force" in err
    assert (tmp_path / "model.safetensors").read_bytes() == b"x"
