"""Finding the SAEs and results files of a run directory, with one-line errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sae.errors import SaelabError
from sae.saving import CFG, read_cfg, sae_dirs, saved_hook


@dataclass(frozen=True)
class SAEEntry:
    """One saved SAE: its directory, display name, hook and model."""

    path: Path
    name: str
    hook: str | None
    model: str
    architecture: str
    d_sae: int

    @property
    def dashboard(self) -> Path:
        return self.path / "dashboard"


def find_saes(run_dir: str | Path) -> list[SAEEntry]:
    """Every SAE saved in ``run_dir`` (the directory itself or any folder below it)."""
    root = Path(run_dir)
    if not root.exists():
        raise SaelabError(f"{root}: no such run directory")
    if not root.is_dir():
        raise SaelabError(f"{root}: not a directory")
    found = []
    for path in sae_dirs(root):
        try:
            cfg = read_cfg(path)
        except SaelabError:
            continue
        ours = cfg.get("saelab") or {}
        meta = cfg.get("metadata") or {}
        rel = path.relative_to(root)
        name = ours.get("name") or (str(rel) if str(rel) != "." else root.name)
        found.append(SAEEntry(path=path, name=name, hook=saved_hook(cfg),
                              model=ours.get("model") or meta.get("model_name") or "organism",
                              architecture=ours.get("architecture") or cfg["architecture"],
                              d_sae=int(cfg.get("d_sae", 0))))
    if not found:
        raise SaelabError(f"{root}: no saved SAE in this run directory (no {CFG} with an 'architecture' key)")
    return found


def find_results(run_dir: str | Path, kind: str) -> list[tuple[Path, dict]]:
    """``(path, document)`` of every JSON file under ``run_dir`` whose ``kind`` is ``kind``."""
    out = []
    for path in sorted(Path(run_dir).rglob("*.json")):
        if path.name == CFG or any(p.startswith(".") for p in path.parts):
            continue
        try:
            if path.stat().st_size > 200_000_000:
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("kind") == kind:
            out.append((path, doc))
    return out
