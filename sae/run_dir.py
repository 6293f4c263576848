"""The saved SAEs of a run directory: one finder for the explorer, the evals and the CLI.

A run directory is whatever ``saelab train`` wrote (one SAE in the directory itself, or one
per folder), or any folder holding saved SAEs at any depth. Trainer checkpoints, dashboards
and hidden folders are never SAEs of the run. Nothing found may lead outside the directory:
an SAE whose folder or files are symlinks out of it is refused, so the explorer (which
serves files to a browser) and the evals read the same, contained, set of files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sae.errors import SaelabError
from sae.saving import CFG, EXTRA, WEIGHTS, read_cfg, saved_hook, saved_model

RUN_CONFIG = "run_config.json"
#: folders below a run directory that never hold a saved SAE of the run
NOT_SAES = ("checkpoint", "dashboard")
#: what readers take from a saved SAE; none of it may lead outside the run directory
READS = (
    CFG,
    WEIGHTS,
    EXTRA,
    "dashboard",
    "dashboard/features.parquet",
    "dashboard/contexts.parquet",
    "dashboard/meta.json",
)


@dataclass(frozen=True)
class SAEEntry:
    """One saved SAE of a run: where it is, the run it belongs to, and what its ``cfg.json`` says."""

    path: Path
    run_dir: Path  # the directory holding the run's run_config.json (or the directory searched)
    name: str  # ``saelab.name`` of cfg.json, else the path below the run directory
    hook: str | None
    model: str | None  # None when cfg.json names no model
    architecture: str  # the training family (ours) or SAELens's architecture
    d_sae: int

    @property
    def dashboard(self) -> Path:
        return self.path / "dashboard"

    @property
    def id(self) -> str:
        """``run/folder`` (or ``run`` for a one-SAE run): unique across the runs of one evaluation."""
        if self.path == self.run_dir:
            return self.run_dir.name
        return f"{self.run_dir.name}/{self.path.relative_to(self.run_dir).as_posix()}"


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (symlinks followed) lies in the resolved directory ``root``; a path that
    does not exist reads nothing and counts as inside."""
    if not path.exists() and not path.is_symlink():
        return True
    return path.resolve().is_relative_to(root)


def sae_dirs(path: str | Path) -> list[Path]:
    """Folders holding a ``cfg.json`` at ``path``: the directory itself when it holds one, else
    every folder below it (trainer checkpoints, dashboards and hidden folders skipped)."""
    root = Path(path)
    if (root / CFG).is_file():
        return [root]
    return sorted(
        c.parent
        for c in root.rglob(CFG)
        if not any(p.startswith(".") or p in NOT_SAES for p in c.relative_to(root).parts[:-1])
    )


def _run_of(root: Path) -> Path:
    """A one-SAE folder given inside a multi-SAE run belongs to that run (its seeds, its name)."""
    parent = root.parent
    if (root / CFG).is_file() and (parent / RUN_CONFIG).is_file() and not (root / RUN_CONFIG).is_file():
        return parent
    return root


def find_saes(run_dir: str | Path, *, strict: bool = True) -> list[SAEEntry]:
    """Every SAE saved in ``run_dir`` (the directory itself or any folder below it).

    An SAE that links outside ``run_dir`` or whose ``cfg.json`` is unreadable is a problem:
    ``strict`` raises the first one (a command should refuse its input); otherwise it is
    skipped (the explorer shows the rest) and raised only when no SAE is left.
    """
    root = Path(run_dir)
    if not root.exists():
        raise SaelabError(f"{root}: no such run directory")
    if not root.is_dir():
        raise SaelabError(f"{root}: not a directory")
    real, run = root.resolve(), _run_of(root)
    found, problems = [], []
    for path in sae_dirs(root):
        try:
            found.append(_entry(path, root, run, real))
        except SaelabError as e:
            if strict:
                raise
            problems.append(str(e))
    if not found:
        raise SaelabError(problems[0] if problems else f"{root}: holds no saved SAE (no {CFG} at or below it)")
    return found


def _entry(path: Path, root: Path, run: Path, real: Path) -> SAEEntry:
    if not all(inside(path / f, real) for f in (".", *READS)):
        raise SaelabError(f"{path}: links outside the run directory {root}")
    cfg = read_cfg(path)
    ours = cfg.get("saelab") or {}
    rel = path.relative_to(root)
    return SAEEntry(
        path=path,
        run_dir=run,
        name=ours.get("name") or (rel.as_posix() if rel != Path(".") else root.name),
        hook=saved_hook(cfg),
        model=saved_model(cfg),
        architecture=ours.get("architecture") or cfg["architecture"],
        d_sae=int(cfg.get("d_sae", 0)),
    )
