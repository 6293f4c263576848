"""What the explorer reads of a run directory besides its SAEs (``sae.run_dir``): results files.

Every reader here stays inside the run directory (symlinks out are skipped), since the
explorer serves what it reads to a browser. The explorer finds SAEs with ``strict=False``:
an SAE that links out or has a broken ``cfg.json`` is left out, so one bad folder hides
nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from sae.errors import SaelabError
from sae.run_dir import SAEEntry, find_saes, inside
from sae.saving import CFG

#: the model of an SAE whose cfg.json names none (SAEs saved by hand): the embedded organism
FALLBACK_MODEL = "organism"


def model_name(entry: SAEEntry) -> str:
    """The model to load for ``entry``."""
    return entry.model or FALLBACK_MODEL


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
        doc = read_json_doc(path)
        if doc is not None:
            yield path, doc


def read_json_doc(path: Path) -> dict | None:
    """A JSON object from ``path``; None when unreadable, not an object, or over 200 MB (not a results file)."""
    try:
        if path.stat().st_size > 200_000_000:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


RESULT_KINDS = ("sweep", "eval", "circuit", "supervised")


def is_graph(doc: dict) -> bool:
    """An attribution graph in circuit-tracer's JSON (``saelab graph --out``): it has no ``kind``."""
    return isinstance(doc.get("metadata"), dict) and isinstance(doc.get("nodes"), list) and "links" in doc


def check_run_dir(run_dir: str | Path) -> None:
    """Refuse a directory with nothing for the explorer: no saved SAE and no results file."""
    try:
        find_saes(run_dir, strict=False)
        return
    except SaelabError as e:
        if not Path(run_dir).is_dir():
            raise
        reason = str(e)
    if not any(doc.get("kind") in RESULT_KINDS or is_graph(doc) for _, doc in _result_documents(run_dir)):
        detail = "" if "no saved SAE" in reason else f"; {reason}"
        raise SaelabError(
            f"{run_dir}: not a run directory (no saved SAE and no results JSON of kind "
            f"{', '.join(RESULT_KINDS)}, no attribution graph){detail}"
        )
