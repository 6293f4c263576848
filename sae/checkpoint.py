"""Trainer checkpoints: safetensors plus JSON, replaced atomically, checked on load.

``RUN_DIR/checkpoint/`` holds ``state.safetensors`` (SAE weights and buffers, Adam
moments, dead-latent counters, the torch RNG) and ``state.json`` (step, data position,
configs, and the tensors file's checksum). The directory is swapped in whole, so a
crash leaves the previous checkpoint or the new one, and a corrupt file is named, not
loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae.atomic import atomic_directory, file_sha256
from sae.errors import SaelabError

if TYPE_CHECKING:
    from sae.trainer import Trainer

DIRNAME = "checkpoint"
#: trainer settings a run may change when it resumes (they do not change what is computed)
RESUMABLE = ("checkpoint_every", "log_every", "wandb_project", "device", "collective_timeout_s")


def _identity(trainer: Trainer) -> dict:
    return {
        "trainer": trainer.cfg.model_dump(mode="json", exclude=set(RESUMABLE)),
        "saes": {
            m.name: {
                "config": m.sae.cfg.model_dump(mode="json"),
                "input_key": m.input_key,
                "grad_key": m.grad_key,
                "lr": m.lr,
            }
            for m in trainer.members
        },
    }


def save_checkpoint(run_dir: Path, trainer: Trainer) -> Path:
    """Called by every rank (each contributes its RNG state); rank 0 writes."""
    rng = trainer.dist.all_gather(torch.get_rng_state()[None])
    windows = {m.name: trainer.dist.all_gather(m.window_fires[None]) for m in trainer.members}  # per-rank counts
    cuda_rng = None
    if str(trainer.cfg.device).startswith("cuda"):
        cuda_rng = trainer.dist.all_gather(torch.cuda.get_rng_state(trainer.cfg.device)[None])
    target = run_dir / DIRNAME
    if not trainer.writer:
        return target
    tensors: dict[str, torch.Tensor] = {}
    for r in range(trainer.dist.world_size):
        tensors[f"rng/torch/{r}"] = rng[r]
        if cuda_rng is not None:
            tensors[f"rng/cuda/{r}"] = cuda_rng[r]
    groups = {}
    for m in trainer.members:
        for k, v in m.sae.state_dict().items():
            tensors[f"{m.name}/sae/{k}"] = v
        opt = m.optimizer.state_dict()
        for idx, state in opt["state"].items():
            for k, v in state.items():
                tensors[f"{m.name}/opt/{idx}/{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        groups[m.name] = opt["param_groups"]
        tensors[f"{m.name}/since_fired"] = m.since_fired
        for r in range(trainer.dist.world_size):
            tensors[f"{m.name}/window_fires/{r}"] = windows[m.name][r]
    with atomic_directory(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
        meta = {
            "step": trainer.step,
            "rows": trainer.rows,
            "world_size": trainer.dist.world_size,
            "identity": _identity(trainer),
            "scales": {m.name: m.scale for m in trainer.members},
            "window_rows": {m.name: m.window_rows for m in trainer.members},
            "param_groups": groups,
            "sha256": file_sha256(tmp / "state.safetensors"),
        }
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    return target


def load_checkpoint(run_dir: Path, trainer: Trainer) -> bool:
    """Restore ``trainer`` from ``run_dir``'s checkpoint; False when there is none."""
    root = run_dir / DIRNAME
    if not root.exists() and (run_dir / f".{DIRNAME}.old").exists():
        root = run_dir / f".{DIRNAME}.old"  # a crash between the two renames of a checkpoint swap
    meta_path, tensors_path = root / "state.json", root / "state.safetensors"
    if not meta_path.exists():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SaelabError(f"{meta_path}: corrupt checkpoint metadata") from None
    if not tensors_path.exists() or file_sha256(tensors_path) != meta.get("sha256"):
        raise SaelabError(
            f"{tensors_path}: checkpoint is corrupt (checksum mismatch); "
            "move the checkpoint directory away to start over"
        )
    if meta.get("world_size", 1) != trainer.dist.world_size:
        raise SaelabError(
            f"{run_dir} was checkpointed with {meta.get('world_size', 1)} processes; "
            f"resume it with the same number (not {trainer.dist.world_size})"
        )
    if meta["identity"] != _identity(trainer):
        raise SaelabError(
            f"{run_dir} holds a checkpoint of a different run (other SAEs or settings); use another --out or remove it"
        )
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError) as e:
        raise SaelabError(f"{tensors_path}: unreadable checkpoint ({e})") from None
    for m in trainer.members:
        prefix = f"{m.name}/sae/"
        m.sae.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        state: dict[int, dict] = {}
        prefix = f"{m.name}/opt/"
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, name = k[len(prefix) :].split("/")
                state.setdefault(int(idx), {})[name] = v
        m.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"][m.name]})
        m.since_fired = tensors[f"{m.name}/since_fired"].to(trainer.cfg.device)
        m.window_fires = tensors[f"{m.name}/window_fires/{trainer.dist.rank}"].to(trainer.cfg.device)
        m.window_rows = meta["window_rows"][m.name]
        m.scale = meta["scales"][m.name]
    rank = trainer.dist.rank
    torch.set_rng_state(tensors[f"rng/torch/{rank}"])
    if f"rng/cuda/{rank}" in tensors and str(trainer.cfg.device).startswith("cuda"):
        torch.cuda.set_rng_state(tensors[f"rng/cuda/{rank}"], trainer.cfg.device)
    trainer.step, trainer.rows = meta["step"], meta["rows"]
    trainer.truncate_metrics(trainer.step)
    return True
