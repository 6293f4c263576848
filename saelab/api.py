"""The public Python API: thin, typed wrappers over the lab's own entry points.

``from saelab import load_model, load_sae, SAE, HookedSAETransformer, train, evaluate``
gives the names a SAELens user knows. Each function here does what the matching command
does (``saelab train``, ``saelab eval``), with the same config validation and the same
one-line errors (``sae.errors.SaelabError``); nothing is computed differently.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evals.suite_config import SuiteConfig
    from sae.spliceable import SAE
    from sae.train_run import RunConfig

PathLike = str | os.PathLike


def _overrides(overrides: Sequence[str] | dict | None) -> tuple[list[str] | None, dict | None]:
    """``--set`` style ``["a.b=1"]`` or a nested mapping layered over the config."""
    if overrides is None or isinstance(overrides, dict):
        return None, overrides
    return list(overrides), None


def load_sae(path_or_release: PathLike, sae_id: str | None = None, device: str = "cpu") -> SAE:
    """An SAE (with the hook it reads) from a directory, or whatever else ``sae.saving.load_sae``
    resolves (published releases by ``(release, sae_id)``, ``hf://`` paths)."""
    from sae.spliceable import SAE

    return SAE.load(path_or_release, sae_id, device=device)


def train(
    config: PathLike | dict | RunConfig,
    out: PathLike | None = None,
    overrides: Sequence[str] | dict | None = None,
    progress: bool = True,
) -> dict:
    """Train the SAEs of a run config (a YAML path, a mapping or a ``RunConfig``) into ``out``
    (default ``runs/<config name>``), as ``saelab train`` does; returns the run summary.

    ``overrides``: ``["trainer.lr=1e-3", "saes.0.sae.k=32"]`` (``--set``) or a nested mapping.
    Running it again on the same ``out`` resumes from the last checkpoint.
    """
    from sae.config import build_config, load_config
    from sae.train_run import RunConfig
    from sae.train_run import train as train_run

    sets, over = _overrides(overrides)
    if isinstance(config, RunConfig):
        cfg = config if not (sets or over) else load_config(RunConfig, None, sets, under=config.model_dump(), over=over)
        name = "run"
    elif isinstance(config, dict):
        cfg = load_config(RunConfig, None, sets, under=config, over=over) if (sets or over) else None
        cfg = cfg or build_config(RunConfig, config, "config")
        name = "run"
    else:
        cfg = load_config(RunConfig, config, sets, over=over)
        name = Path(config).stem
    return train_run(cfg, Path(out) if out is not None else Path("runs") / name, progress=progress)


def evaluate(
    saes: PathLike | SAE | Sequence[PathLike | SAE],
    suite: PathLike | dict | SuiteConfig | None = None,
    out: PathLike = "runs/eval",
    overrides: Sequence[str] | dict | None = None,
    progress: bool = True,
) -> dict:
    """Run the evaluation suite (``saelab eval``) on run directories, SAE directories or
    in-memory ``SAE`` objects; writes ``out/results.json`` and ``out/report.html`` and returns
    the results.

    ``suite``: a suite YAML (``configs/eval_suite.yaml``), a mapping or a ``SuiteConfig``;
    None: the suite's defaults. An ``SAE`` object is saved to a temporary directory first
    (SAELens layout, with its hook and model), since the suite reads SAEs from disk.
    """
    from evals.suite import run_suite
    from evals.suite_config import SuiteConfig
    from sae.config import build_config, load_config
    from sae.spliceable import SAE

    sets, over = _overrides(overrides)
    if isinstance(suite, SuiteConfig):
        cfg = suite if not (sets or over) else load_config(SuiteConfig, None, sets, under=suite.model_dump(), over=over)
    elif isinstance(suite, dict) or suite is None:
        data = dict(suite or {})
        cfg = load_config(SuiteConfig, None, sets, under=data, over=over) if (sets or over) else None
        cfg = cfg or build_config(SuiteConfig, data, "suite")
    else:
        cfg = load_config(SuiteConfig, suite, sets, over=over)
    items: list[Any] = [saes] if isinstance(saes, str | os.PathLike | SAE) else list(saes)
    with tempfile.TemporaryDirectory(prefix="saelab-evaluate-") as tmp:
        dirs = []
        for i, item in enumerate(items):
            if isinstance(item, SAE):
                dirs.append(item.save_model(Path(tmp) / f"sae_{i}"))
            else:
                dirs.append(Path(item))
        return run_suite(cfg, dirs, out, progress=progress)
