"""Finding the SAEs and results files of a run directory, with one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sae.errors import SaelabError
from sae.saving import CFG, EXTRA, WEIGHTS, read_cfg, sae_dirs, saved_hook, saved_model


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


#: what the explorer reads of a saved SAE; none of it may lead outside the run directory
_READS = (
    CFG,
    WEIGHTS,
    EXTRA,
    "dashboard",
    "dashboard/features.parquet",
    "dashboard/contexts.parquet",
    "dashboard/meta.json",
)


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks followed) lies in the resolved directory ``root``; a path that
    does not exist reads nothing and counts as inside."""
    if not path.exists() and not path.is_symlink():
        return True
    return path.resolve().is_relative_to(root)


def find_saes(run_dir: str | Path) -> list[SAEEntry]:
    """Every SAE saved in ``run_dir`` (the directory itself or any folder below it); an SAE
    whose files are symlinks out of ``run_dir`` is skipped, so the explorer reads only inside."""
    root = Path(run_dir)
    if not root.exists():
        raise SaelabError(f"{root}: no such run directory")
    if not root.is_dir():
        raise SaelabError(f"{root}: not a directory")
    found, problems = [], []
    real = root.resolve()
    for path in sae_dirs(root):
        if not all(inside(path / f, real) for f in (".", *_READS)):
            problems.append(f"{path}: links outside the run directory; skipped")
            continue
        try:
            cfg = read_cfg(path)
        except SaelabError as e:
            problems.append(str(e))
            continue
        ours = cfg.get("saelab") or {}
        rel = path.relative_to(root)
        name = ours.get("name") or (str(rel) if str(rel) != "." else root.name)
        found.append(
            SAEEntry(
                path=path,
                name=name,
                hook=saved_hook(cfg),
                model=saved_model(cfg) or "organism",
                architecture=ours.get("architecture") or cfg["architecture"],
                d_sae=int(cfg.get("d_sae", 0)),
            )
        )
    if not found:
        raise SaelabError(
            problems[0]
            if problems
            else f"{root}: no saved SAE in this run directory (no {CFG} with an 'architecture' key)"
        )
    return found


def find_results(run_dir: str | Path, kind: str) -> list[tuple[Path, dict]]:
    """``(path, document)`` of every JSON file under ``run_dir`` whose ``kind`` is ``kind``."""
    return [(path, doc) for path, doc in _result_documents(run_dir) if doc.get("kind") == kind]


def _result_documents(run_dir: str | Path) -> Iterator[tuple[Path, dict]]:
    """Every JSON object under ``run_dir`` (cfg.json, hidden folders, links out and huge files
    skipped), read lazily in path order."""
    real = Path(run_dir).resolve()
    for path in sorted(Path(run_dir).rglob("*.json")):
        if path.name == CFG or any(p.startswith(".") for p in path.parts) or not inside(path, real):
            continue
        try:
            if path.stat().st_size > 200_000_000:
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict):
            yield path, doc


RESULT_KINDS = ("sweep", "eval", "circuit", "supervised")


def check_run_dir(run_dir: str | Path) -> None:
    """Refuse a directory with nothing for the explorer: no saved SAE and no results file."""
    try:
        find_saes(run_dir)
        return
    except SaelabError as e:
        if not Path(run_dir).is_dir():
            raise
        reason = str(e)
    if not any(doc.get("kind") in RESULT_KINDS for _, doc in _result_documents(run_dir)):
        detail = "" if "no saved SAE" in reason else f"; {reason}"
        raise SaelabError(
            f"{run_dir}: not a run directory (no saved SAE and no results JSON of kind "
            f"{', '.join(RESULT_KINDS)}){detail}"
        )
