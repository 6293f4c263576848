"""Published SAEs by name: a release (``gpt2-small-res-jb``) and an id (``blocks.8.hook_resid_pre``).

The directory is SAELens' own ``pretrained_saes.yaml`` when ``sae-lens`` is installed
(read as data, without importing sae-lens), else the subset shipped with saelab
(``sae/pretrained_saes.yaml``, same schema). ``SAELAB_SAE_RELEASES=path.yaml`` replaces
both (tests, private mirrors). An unknown release or id is one line with the nearest
names (difflib).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sae.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent / "pretrained_saes.yaml"
ENV = "SAELAB_SAE_RELEASES"
#: conversions saelab reads: SAELens' own layout, and Gemma Scope's params.npz
CONVERSIONS = ("sae_lens", "gemma_2")


@dataclass(frozen=True)
class ReleaseSAE:
    """One SAE of a release: its id, its folder in the repository, and what the directory says of it."""

    id: str
    path: str
    l0: float | None = None
    neuronpedia: str | None = None
    norm_scaling_factor: float | None = None


@dataclass(frozen=True)
class Release:
    name: str
    repo_id: str
    model: str
    conversion: str = "sae_lens"
    config_overrides: dict = field(default_factory=dict)
    saes: dict[str, ReleaseSAE] = field(default_factory=dict)

    def sae(self, sae_id: str) -> ReleaseSAE:
        """The entry for ``sae_id``; an unknown id is one line with the nearest ids."""
        try:
            return self.saes[sae_id]
        except KeyError:
            pass
        near = difflib.get_close_matches(sae_id, list(self.saes), n=3, cutoff=0.4)
        listing = f"; it has {len(self.saes)}: saelab sae list --release {self.name}"
        hint = f"; nearest: {', '.join(near)}" if near else listing
        raise ConfigError(f"release {self.name!r} has no SAE {sae_id!r}{hint}")


def _saelens_yaml() -> Path | None:
    try:
        spec = importlib.util.find_spec("sae_lens")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained_saes.yaml"
    return path if path.is_file() else None


def directory_source() -> Path:
    """The YAML file releases come from (see the module docstring for the order)."""
    override = os.environ.get(ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV}={override}: no such file")
        return path
    return _saelens_yaml() or SHIPPED


@lru_cache(maxsize=4)
def _parse(path: Path, mtime: float) -> dict[str, Release]:
    from sae.config import read_yaml

    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a release directory (a mapping of release names)")
    out: dict[str, Release] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "repo_id" not in entry or not isinstance(entry.get("saes"), list):
            raise ConfigError(f"{path}: release {name!r} needs repo_id and a list of saes")
        saes = {}
        for s in entry["saes"]:
            if not isinstance(s, dict) or "id" not in s or "path" not in s:
                raise ConfigError(f"{path}: release {name!r}: every SAE needs an id and a path")
            saes[str(s["id"])] = ReleaseSAE(
                id=str(s["id"]),
                path=str(s["path"]),
                l0=s.get("l0"),
                neuronpedia=s.get("neuronpedia"),
                norm_scaling_factor=s.get("norm_scaling_factor"),
            )
        out[str(name)] = Release(
            name=str(name),
            repo_id=str(entry["repo_id"]),
            model=str(entry.get("model") or ""),
            conversion=entry.get("conversion_func") or "sae_lens",
            config_overrides=dict(entry.get("config_overrides") or {}),
            saes=saes,
        )
    return out


def releases() -> dict[str, Release]:
    path = directory_source()
    return _parse(path, path.stat().st_mtime)


def release(name: str) -> Release:
    """The release ``name``; an unknown one is one line with the nearest names."""
    known = releases()
    if name in known:
        return known[name]
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.4)
    hint = f"; nearest: {', '.join(near)}" if near else "; see saelab sae list"
    raise ConfigError(f"unknown SAE release {name!r}{hint}")


def find(name: str) -> Release | None:
    return releases().get(name)
