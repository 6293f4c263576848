"""Running the registered SAEBench evaluations on one language model's SAEs.

The suite (``evals.suite``) loads the model and the SAEs once per model; before its
held-out pass it asks every selected evaluation for per-SAE observers (``observers``,
called with each batch's rows, codes and reconstructions: the core evaluation reads the
lab's pass instead of making its own), and after it hands each evaluation an ``EvalGroup``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evals.saebench import EVALS
from evals.saebench.output import file_name, write
from sae.atomic import write_json


@dataclass
class EvalGroup:
    """One model's SAEs under evaluation, with what the suite's pass measured."""

    model: object
    tokenizer: object
    entries: list  # evals.core.evaluate.EvalTarget, info filled by the suite's pass
    suite: object  # evals.suite_config.SuiteConfig
    observed: dict[str, dict[str, object]] = field(default_factory=dict)  # eval → SAE name → observer
    progress: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # eval → wall seconds (summed over models)


def _module(name: str):
    return importlib.import_module(EVALS[name].partition(":")[0])


def _function(name: str) -> Callable:
    module, _, fn = EVALS[name].partition(":")
    return getattr(importlib.import_module(module), fn)


def observers(names: list[str], entries: list) -> dict[str, dict[str, object]]:
    """eval → SAE name → observer, for the selected evaluations that watch the suite's pass."""
    out = {}
    for name in names:
        make = getattr(_module(name), "observers", None)
        if make is not None:
            out[name] = make(entries)
    return out


def combined(observed: dict[str, dict[str, object]]) -> Callable | None:
    """One ``(sae name, x, selection, x_hat, sequence)`` callback feeding every observer (None: none)."""
    if not observed:
        return None

    def call(name, x, selection, x_hat, sequence) -> None:
        for per_sae in observed.values():
            if name in per_sae:
                per_sae[name].update(x, selection, x_hat, sequence)

    return call


def run_evals(group: EvalGroup) -> dict[str, list[tuple[dict, dict]]]:
    """Run every selected evaluation on ``group`` (RAVEL not on the hub path: one line says so): name → [(SAE
    info, SAEBench document)], each one's wall
    seconds added to ``group.seconds``; then the controls (``evals.saebench.controls``, seconds under
    ``controls``), whose headlines go to each SAE's ``info["saebench_controls"]``."""
    import sys

    from evals.saebench.controls import run_controls
    from evals.saebench.hub_concepts import NO_RAVEL, on_hub

    cfg = group.suite.saebench
    names = list(cfg.evals)
    if "ravel" in names and on_hub(group):
        print(NO_RAVEL.format(model=group.entries[0].info["model"]), file=sys.stderr, flush=True)
        names.remove("ravel")
    docs = {}
    for name in names:
        start = time.perf_counter()
        docs[name] = _function(name)(group, getattr(cfg, name, None))
        group.seconds[name] = group.seconds.get(name, 0.0) + time.perf_counter() - start

    def evaluate(name: str, entries: list) -> list[tuple[dict, dict]]:
        sub = EvalGroup(group.model, group.tokenizer, entries, group.suite, {}, group.progress)
        return _function(name)(sub, getattr(cfg, name, None))

    if names:
        start = time.perf_counter()
        run_controls(group, names, docs, cfg.controls_seed, evaluate, controls=cfg.controls)
        group.seconds["controls"] = group.seconds.get("controls", 0.0) + time.perf_counter() - start
    return docs


def summary(collected: dict[str, list[tuple[dict, dict]]]) -> dict:
    """``summary.json``: per SAE and eval, the headline metric for the SAE and each control."""
    from evals.saebench.controls import __doc__ as about

    saes, seen = [], set()
    for docs in collected.values():
        for info, _doc in docs:
            if info["id"] in seen:
                continue
            seen.add(info["id"])
            ctrl = info.get("saebench_controls") or {}
            saes.append(
                {
                    "id": info["id"],
                    "architecture": info.get("architecture"),
                    "hook": info.get("hook"),
                    "l0": (info.get("metrics") or {}).get("l0"),
                    **{k: v for k, v in ctrl.items() if k != "headlines"},
                    "evals": ctrl.get("headlines", {}),
                }
            )
    return {
        "kind": "saebench_summary",
        "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "evals": list(collected),
        "controls": " ".join(about.split()),
        "saes": saes,
    }


def suite_metrics(collected: dict[str, list[tuple[dict, dict]]]) -> None:
    """Copy each evaluation's ``SUITE_METRICS`` (suite name → (category, metric) of its document) into the
    SAE's suite ``metrics``, so the claims table can compare them (absorption: ``absorption_fraction``).
    A skipped SAE's null stays absent."""
    for name, docs in collected.items():
        wanted = getattr(_module(name), "SUITE_METRICS", {})
        for info, doc in docs:
            for key, (category, metric) in wanted.items():
                value = (doc["eval_result_metrics"].get(category) or {}).get(metric)
                if value is not None:
                    info.setdefault("metrics", {})[key] = value


def write_all(out: Path, collected: dict[str, list[tuple[dict, dict]]]) -> dict[str, dict]:
    """Write every evaluation's files (all models' SAEs together) and ``summary.json``; name → the lab results
    file."""
    from evals.saebench.controls import DOCUMENTS

    written = {name: write(out, name, docs, _module(name).DEFINITIONS) for name, docs in collected.items()}
    for name, docs in collected.items():
        for info, _doc in docs:
            for c_info, c_doc in (info.get(DOCUMENTS) or {}).get(name, []):
                write_json(Path(out) / "saebench" / c_doc["eval_type_id"] / "controls" / file_name(c_info), c_doc)
    for docs in collected.values():
        for info, _doc in docs:
            info.pop(DOCUMENTS, None)  # written; not part of results.json
    write_json(Path(out) / "summary.json", summary(collected))
    return written
