"""The README's first code block is the public API's tour; it runs as written, on the organism."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def first_code_block() -> tuple[str, str]:
    match = re.search(r"^```(\w*)\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert match, "README.md has no code block"
    return match.group(1), match.group(2)


def test_readme_first_block_is_the_public_api_and_runs(tmp_path):
    lang, code = first_code_block()
    assert lang == "python"
    names = ("load_model", "load_sae", "SAE", "HookedSAETransformer", "train", "evaluate")
    imported = re.search(r"^from saelab import (.+)$", code, re.M)
    assert imported and set(names) <= {n.strip() for n in imported.group(1).split(",")}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "top features at the last token:" in done.stdout
    results = json.loads((tmp_path / "runs/quickstart-eval/results.json").read_text())
    assert results["saes"] and (tmp_path / "runs/quickstart/cfg.json").is_file()


def test_import_saelab_is_cheap():
    """``import saelab`` loads no torch; the API names resolve on first use."""
    code = "import sys, saelab; assert 'torch' not in sys.modules, 'torch imported'; from saelab import SAE, train"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
