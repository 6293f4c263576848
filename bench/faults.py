"""Real ``kill -9`` of saelab jobs, and the comparisons that say a resumed job lost nothing.

Shared by the kill tests (``tests/test_train_kill.py``, ``tests/test_cache_kill.py``) and
the soak benchmark (``bench/soak.py``). Jobs run as ``python -m saelab ...`` child
processes, one thread each, so a kill is exactly what a pre-empted machine does to them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sae.atomic import file_sha256


def start(args: list[str], **kw) -> subprocess.Popen:
    """``python -m saelab ARGS --quiet`` (stdout discarded, stderr kept for failures)."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, "-m", "saelab", *args, "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> None:
    """Wait for ``proc``; a failure raises with the tail of its stderr."""
    _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"saelab exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")


def kill9(proc: subprocess.Popen) -> bool:
    """SIGKILL ``proc`` if it still runs; whether it did."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    return True


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300, poll: float = 0.05) -> bool:
    """Poll until ``ready()`` while ``proc`` runs; False if it ended (or time ran out) first."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            return True
        time.sleep(poll)
    return False


def read_json(path: Path) -> dict | None:
    """The document, or None when absent. A torn file raises: readers must never see one."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return json.loads(text)


def checkpoint_step(run_dir: Path) -> int | None:
    state = read_json(Path(run_dir) / "checkpoint" / "state.json")
    return None if state is None else state["step"]


def manifest_shards(cache_dir: Path) -> int:
    manifest = read_json(Path(cache_dir) / "manifest.json")
    return 0 if manifest is None else len(manifest["shards"])


def training_differences(reference: Path, resumed: Path) -> list[str]:
    """Where a resumed run differs from an uninterrupted one: every safetensors file (final
    SAE weights, extra state, the last checkpoint) compared tensor by tensor, exactly, and the
    final step. Empty when identical."""
    import torch
    from safetensors.torch import load_file

    out = []
    files = sorted(p.relative_to(reference) for p in Path(reference).rglob("*.safetensors"))
    if not any(f.name == "sae_weights.safetensors" for f in files):
        return [f"{reference}: no saved SAE to compare"]
    for rel in files:
        if not (resumed / rel).is_file():
            out.append(f"{rel}: missing")
            continue
        a, b = load_file(str(reference / rel)), load_file(str(resumed / rel))
        if sorted(a) != sorted(b):
            out.append(f"{rel}: tensors {sorted(set(a) ^ set(b))} differ in presence")
        out += [
            f"{rel}: {k} differs"
            for k in sorted(set(a) & set(b))
            if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or not torch.equal(a[k], b[k])
        ]
    if checkpoint_step(reference) != checkpoint_step(resumed):
        out.append(f"final step {checkpoint_step(resumed)}, expected {checkpoint_step(reference)}")
    return out


def cache_differences(reference: Path, resumed: Path) -> list[str]:
    """Where a resumed cache differs: the manifests (rows, shards with their row counts and
    checksums, norm statistics) and the shard files on disk against the checksums."""
    a, b = read_json(Path(reference) / "manifest.json"), read_json(Path(resumed) / "manifest.json")
    if b is None or not b.get("complete"):
        return ["resumed cache is not complete"]
    out = []
    if a["rows"] != b["rows"]:
        out.append(f"rows {b['rows']}, expected {a['rows']}")

    def shards(m):
        return [(s["index"], s["rows"], {k: f["sha256"] for k, f in s["files"].items()}) for s in m["shards"]]

    if shards(a) != shards(b):
        out.append("shard rows or checksums differ")
    if a != b:
        out.append("manifests differ")
    out += [
        f"{f['path']}: bytes disagree with the manifest"
        for s in b["shards"]
        for f in s["files"].values()
        if file_sha256(Path(resumed) / f["path"]) != f["sha256"]
    ]
    return out
