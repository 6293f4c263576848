"""Trainer checkpoints: safetensors plus JSON, replaced atomically, checked on load.

``RUN_DIR/checkpoint/`` holds ``state.safetensors`` (SAE weights and buffers, Adam
moments, dead-latent counters, the torch RNG) and ``state.json`` (step, data position,
configs, and the tensors file's checksum). The directory is swapped in whole, so a
crash leaves the previous checkpoint or the new one, and a corrupt file is named, not
loaded.

This module stores a state and knows nothing of trainers: a state is a dict whose
``tensors`` entry maps names to tensors and whose other entries are JSON values, as
``Trainer.state_dict()`` returns it and ``Trainer.load_state_dict()`` takes it (the
trainer decides whether a stored state fits it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae.atomic import atomic_directory, file_sha256
from sae.errors import SaelabError

DIRNAME = "checkpoint"


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    """Write ``state`` as ``run_dir``'s checkpoint, replacing the previous one whole."""
    target = run_dir / DIRNAME
    tensors: dict[str, torch.Tensor] = state["tensors"]
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
        meta = {k: v for k, v in state.items() if k != "tensors"}
        meta["sha256"] = file_sha256(tmp / "state.safetensors")
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    return target


def load_checkpoint(run_dir: Path) -> dict | None:
    """``run_dir``'s checkpoint as a state (tensors on the CPU); None when there is none."""
    root = run_dir / DIRNAME
    if not root.exists() and (run_dir / f".{DIRNAME}.old").exists():
        root = run_dir / f".{DIRNAME}.old"  # a crash between the two renames of a checkpoint swap
    meta_path, tensors_path = root / "state.json", root / "state.safetensors"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SaelabError(f"{meta_path}: corrupt checkpoint metadata") from None
    if not isinstance(meta, dict):
        raise SaelabError(f"{meta_path}: corrupt checkpoint metadata")
    if not tensors_path.exists() or file_sha256(tensors_path) != meta.pop("sha256", None):
        raise SaelabError(
            f"{tensors_path}: checkpoint is corrupt (checksum mismatch); "
            "move the checkpoint directory away to start over"
        )
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError) as e:
        raise SaelabError(f"{tensors_path}: unreadable checkpoint ({e})") from None
    return {**meta, "tensors": tensors}
