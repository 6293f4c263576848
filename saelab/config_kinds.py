"""Every kind of config the lab reads, by name, and which kind a YAML file is.

``saelab config`` (schema, explain) and the generated reference (``docs/configs.md``) read
this table; the classes are imported only when asked for, so ``saelab --help`` stays fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from sae.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    """One config kind: where its class lives and which command reads it."""

    name: str
    module: str
    cls: str
    command: str

    def config_class(self):
        return getattr(importlib.import_module(self.module), self.cls)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "train",
            "sae.train_run",
            "RunConfig",
            "saelab train CONFIG (configs/topk.yaml, configs/sweep_organism.yaml)",
        ),
        Kind("cache", "sae.store", "StoreConfig", "saelab cache CONFIG (configs/cache_organism.yaml)"),
        Kind("suite", "evals.suite_config", "SuiteConfig", "saelab eval --suite CONFIG (configs/eval_suite.yaml)"),
        Kind("supervised", "evals.supervised.config", "SupervisedConfig", "saelab eval supervised --config CONFIG"),
        Kind("circuit", "circuits.methods", "MethodConfig", "saelab circuit (options set by its flags)"),
        Kind("dashboard", "app.dashboard_config", "DashboardConfig", "saelab dashboard RUN_DIR --config CONFIG"),
        Kind("organism", "organism.train", "OrganismConfig", "saelab organism train --config CONFIG"),
    )
}
#: other names users reach for: a sweep is a train config, an eval suite a suite config
ALIASES = {"sweep": "train", "eval": "suite", "claims": "suite"}


def kind(name: str) -> Kind:
    found = KINDS.get(ALIASES.get(name, name))
    if found is None:
        raise ConfigError(f"unknown config kind {name!r}; known: {', '.join(KINDS)}")
    return found


def detect(path: str | Path, data: dict) -> Kind:
    """The kind whose config accepts every top-level key of ``data`` and has all its required keys;
    among several, the one that names the most of them. One line naming the file when none or
    a tie remains."""
    keys = set(data)
    fits = []
    for k in KINDS.values():
        fields = k.config_class().model_fields
        required = {n for n, f in fields.items() if f.is_required()}
        if keys <= set(fields) and required <= keys:
            fits.append((len(keys & set(fields)), k))
    fits.sort(key=lambda t: -t[0])
    if not fits or (len(fits) > 1 and fits[0][0] == fits[1][0]):
        which = "no config kind accepts its keys" if not fits else "it could be several kinds"
        raise ConfigError(f"{path}: cannot tell which config this is ({which}); pass --kind ({', '.join(KINDS)})")
    return fits[0][1]
