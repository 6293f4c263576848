"""The bad-input corpus: every case in ``tests/bad_inputs/*.yaml`` through the real CLI.

A case names the command line, the files it needs (text, a base config with one change, or
a built artefact: a saved SAE, an activation cache, a pickle, broken bytes) and a phrase its
error must contain. Each must exit non-zero with exactly one line on stderr, no traceback,
nothing written or changed in its directory, and no marker file from a payload. Most run
in-process through ``saelab.cli.main``; cases with ``subprocess: true`` run
``python -m saelab`` as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bad_files import BASES, pickle_payload, saved_sae, tree, tree_changes

HERE = Path(__file__).resolve().parents[1] / "bad_inputs"
CASES = sorted(p for p in HERE.glob("*.yaml") if not p.name.startswith("_"))
KEYS = {"why", "argv", "files", "make", "config", "stderr", "exit", "env", "subprocess"}


def set_path(data, dotted: str, value) -> None:
    """``a.0.b = value`` (numeric parts index lists)."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value


def _build(step: dict, root: Path, marker: Path, cache: Path) -> None:
    at = root / step["at"]
    kind = step["build"]
    if kind not in ("saved_sae", "cache", "run_config"):
        at.parent.mkdir(parents=True, exist_ok=True)
    if kind == "saved_sae":
        saved_sae(at)
    elif kind == "cache":
        shutil.copytree(cache, at)
    elif kind == "run_config":
        from sae.train_run import RunConfig

        at.mkdir(parents=True)
        cfg = RunConfig.model_validate(BASES[step["base"]])
        (at / "run_config.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    elif kind == "bytes":
        at.write_bytes(bytes.fromhex(step["hex"]))
    elif kind == "pickle":
        at.write_bytes(pickle_payload(marker))
    elif kind == "truncate":
        at.write_bytes(at.read_bytes()[: step["keep"]])
    elif kind == "flip_byte":
        data = bytearray(at.read_bytes())
        data[step["offset"]] ^= 0xFF
        at.write_bytes(bytes(data))
    elif kind == "delete":
        at.unlink()
    elif kind == "json_edit":
        doc = json.loads(at.read_text())
        for key, value in step.get("set", {}).items():
            set_path(doc, key, value)
        for key in step.get("drop", []):
            doc.pop(key)
        at.write_text(json.dumps(doc))
    else:
        raise AssertionError(f"unknown builder {kind!r}")


def _prepare(case: dict, root: Path, marker: Path, cache: Path) -> list[str]:
    for name, text in (case.get("files") or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.replace("{marker}", str(marker)))
    for step in case.get("make") or []:
        _build(step, root, marker, cache)
    if "config" in case:
        spec = case["config"]
        data = json.loads(json.dumps(BASES[spec["base"]]))
        for key, value in (spec.get("set") or {}).items():
            set_path(data, key, value)
        (root / spec["file"]).write_text(yaml.safe_dump(data))
    return [a.replace("{marker}", str(marker)) for a in case["argv"]]


def _run_in_process(argv: list[str], capfd) -> tuple[int, str]:
    from saelab.cli import main

    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    return code, capfd.readouterr().err


def _run_subprocess(argv: list[str], root: Path) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "saelab", *argv], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input(path, tmp_path, monkeypatch, capfd, request):
    case = yaml.safe_load(path.read_text())
    assert set(case) <= KEYS and {"why", "argv", "stderr"} <= set(case), f"{path.name}: malformed case"
    cache = (
        request.getfixturevalue("small_cache") if any(s["build"] == "cache" for s in case.get("make") or []) else None
    )
    root = tmp_path / "work"
    root.mkdir()
    marker = tmp_path / "PAYLOAD_RAN"
    argv = _prepare(case, root, marker, cache)
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for key, value in (case.get("env") or {}).items():
        monkeypatch.setenv(key, str(value))

    def no_exec(*args):
        raise AssertionError(f"{path.stem}: the command went on to exec {args[0]}")

    monkeypatch.setattr(os, "execv", no_exec)  # 'saelab explore' must refuse before starting Streamlit
    before = tree(root)
    capfd.readouterr()
    code, err = _run_subprocess(argv, root) if case.get("subprocess") else _run_in_process(argv, capfd)

    lines = err.strip().splitlines()
    assert code not in (0, None), f"{path.stem}: exit code {code}; stderr: {err}"
    if "exit" in case:
        assert code == case["exit"], f"{path.stem}: exit code {code}, expected {case['exit']}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{path.stem}: expected one line on stderr, got {len(lines)}:\n{err}"
    assert case["stderr"] in lines[0], f"{path.stem}: {lines[0]!r} lacks {case['stderr']!r}"
    assert tree_changes(before, tree(root)) == [], f"{path.stem}: files written or changed"
    assert not marker.exists(), f"{path.stem}: a payload ran"


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
