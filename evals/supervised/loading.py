"""Saved SAEs → dictionary families, matched at one L0.

Any SAE directory saelab or SAELens wrote can be evaluated: its hook (``cfg.json``'s
``saelab.hook``, or SAELens's ``hook_name`` and ``hook_head_index``) must be one of the
locations' per-head hooks. An SAE trained here on task rows names its single location
in ``saelab.supervised``; any other SAE serves every location at its hook (a key SAE at
both IO and S1) and counts as full-distribution.

A family is one (architecture, kind) pair. When several SAEs of a family sit at one
location (a ReLU L1 grid, or an L0 sweep passed in), the one whose mean L0 on the
evaluation prompts is nearest the target is kept: that is how every family is matched
at the same L0, and the L0 reached is reported per family.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from evals.supervised.dictionaries import Family, SAEDictionary
from evals.supervised.locations import Location
from sae.errors import SaelabError
from sae.run_dir import find_saes
from sae.saving import load_sae, saved_hook, saved_model

KIND_LABELS = {"task": "task", "full": "full distribution", "random_decoder": "random decoder, task"}


@dataclass
class Candidate:
    path: Path
    sae: object
    family: str  # architecture, or "random_decoder"
    kind: str  # task | full | random_decoder
    variant: str
    locations: list[Location]

    @property
    def key(self) -> str:
        return f"{self.family}_task" if self.kind == "random_decoder" else f"{self.family}_{self.kind}"


def discover(paths: Iterable[str | Path]) -> list[Path]:
    """SAE directories at or under each path (``sae.run_dir.find_saes``)."""
    found = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise SaelabError(f"{p}: no such SAE directory")
        found += [entry.path for entry in find_saes(p)]
    return list(dict.fromkeys(found))


def load_candidates(
    paths: Iterable[str | Path], locations: list[Location], model_name: str, device: str = "cpu"
) -> tuple[list[Candidate], list[dict]]:
    """Every SAE found, with the locations it serves; the ones that serve none, with why."""
    by_key = {loc.key: loc for loc in locations}
    candidates, skipped = [], []
    for path in discover(paths):
        sae, cfg = load_sae(path, device=device)
        ours = cfg.get("saelab") or {}
        sup = ours.get("supervised") or {}
        trained_for = saved_model(cfg)
        if trained_for not in (None, model_name):
            skipped.append({"path": str(path), "reason": f"trained on model {trained_for!r}, not {model_name!r}"})
            continue
        hook = saved_hook(cfg)
        if sup.get("location"):
            served = [by_key[sup["location"]]] if sup["location"] in by_key else []
        else:
            served = [loc for loc in locations if loc.hook == hook]
        if not served:
            skipped.append({"path": str(path), "reason": f"hook {hook} is at none of this evaluation's locations"})
            continue
        family = sup.get("family") or ours.get("architecture") or cfg["architecture"]
        kind = sup.get("kind", "full")
        variant = str(ours.get("name") or path.name).split("|")[0].split("/")[0]
        candidates.append(Candidate(path, sae, family, kind, variant, served))
    return candidates, skipped


@torch.no_grad()
def match_l0(candidates: list[Candidate], eval_acts: dict[Location, torch.Tensor], target: float) -> list[Family]:
    """One family per (architecture, kind); per location the SAE with L0 nearest ``target``."""
    chosen: dict[str, dict[Location, tuple[float, Candidate]]] = {}
    for c in candidates:
        for loc in c.locations:
            acts = eval_acts[loc].to(c.sae.W_enc.device, c.sae.W_enc.dtype)
            l0 = float((c.sae.encode(acts) != 0).float().sum(-1).mean())
            best = chosen.setdefault(c.key, {}).get(loc)
            if best is None or abs(l0 - target) < abs(best[0] - target):
                chosen[c.key][loc] = (l0, c)
    families = []
    for key, per_loc in sorted(chosen.items()):
        first = next(iter(per_loc.values()))[1]
        l0s = [v[0] for v in per_loc.values()]
        families.append(
            Family(
                key=key,
                label=f"{first.family} ({KIND_LABELS.get(first.kind, first.kind)})",
                kind=first.kind,
                architecture="topk" if first.family == "random_decoder" else first.family,
                dictionaries={loc: SAEDictionary(c.sae) for loc, (_, c) in per_loc.items()},
                info={
                    "l0_target": target,
                    "l0_eval_mean": sum(l0s) / len(l0s),
                    "d_sae": int(first.sae.cfg.d_sae),
                    "variants": {loc.key: c.variant for loc, (_, c) in sorted(per_loc.items())},
                    "l0_eval": {loc.key: round(v, 3) for loc, (v, _) in sorted(per_loc.items())},
                    "paths": {loc.key: str(c.path) for loc, (_, c) in sorted(per_loc.items())},
                },
            )
        )
    return families
