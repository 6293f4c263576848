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
    assert "malformed YAML" in _one_line_error(
        capsys, ["organism", "train", "--config", str(bad), "--out", str(tmp_path / "o")], 2
    )
    bad.write_text("stepz: 10\n")
    assert "key 'stepz': unknown key" in _one_line_error(
        capsys, ["organism", "train", "--config", str(bad), "--out", str(tmp_path / "o")], 2
    )
    bad.write_text("steps: many\n")
    assert "key 'steps'" in _one_line_error(
        capsys, ["organism", "train", "--config", str(bad), "--out", str(tmp_path / "o")], 2
    )
    err = _one_line_error(
        capsys, ["organism", "train", "--set", "corpus.weights={poetry: 1}", "--out", str(tmp_path / "o")], 2
    )
    assert "unknown sentence families" in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_to_overwrite_weights(capsys, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    err = _one_line_error(capsys, ["organism", "train", "--out", str(tmp_path)], 1)
    assert "--force" in err
    assert (tmp_path / "model.safetensors").read_bytes() == b"x"


def test_cache_command_writes_a_cache(capsys, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("hooks: [blocks.0.hook_resid_post, blocks.1.attn.hook_z]\nn_tokens: 3000\ncontext_size: 32\n")
    assert main(["cache", str(cfg), "--out", str(tmp_path / "cache"), "--quiet"]) == 0
    assert "rows" in capsys.readouterr().out
    assert (tmp_path / "cache" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("yaml_text", "message", "code"),
    [
        ("hooks: [blocks.0.hook_resid_pots]\nn_tokens: 100\n", "nearest: blocks.0.hook_resid_post", 1),
        ("hooks: [blocks.0.hook_resid_post]\nn_tokens: -5\n", "key 'n_tokens'", 2),
        ("hooks: [blocks.0.hook_resid_post]\ncontext_size: 999\n", "longer than the model's context", 1),
        ("hooks: []\n", "key 'hooks'", 2),
        ("hooks: [blocks.0.hook_resid_post]\nsource: {kind: local, path: /nonexistent}\n", "no such file", 1),
    ],
)
def test_cache_command_bad_configs(capsys, tmp_path, yaml_text, message, code):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    err = _one_line_error(capsys, ["cache", str(cfg), "--out", str(tmp_path / "cache"), "--quiet"], code)
    assert message in err
    assert not (tmp_path / "cache" / "manifest.json").exists()
