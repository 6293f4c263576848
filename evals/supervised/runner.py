"""One supervised-dictionary evaluation, end to end: prompts → activations → dictionaries
and SAEs → the four evaluations → ``supervised.json`` (and the report)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from evals.supervised.activations import harvest
from evals.supervised.config import EvalConfig, SupervisedConfig
from evals.supervised.dictionaries import Family, supervised_families
from evals.supervised.evaluate import Evaluator
from evals.supervised.loading import discover, load_candidates, match_l0
from evals.supervised.locations import PRIMARY, cross_sections, unique_locations
from evals.supervised.prompts import AttributeVocab, build_prompts
from evals.supervised.summary import acceptance, random_decoder_finding, table_rows
from sae.atomic import write_json
from sae.errors import SaelabError
from sae.progress import progress_bar

SCHEMA_VERSION = 1
RESULTS = "supervised.json"
GPT2_NAMES = ("gpt2", "gpt2-small", "openai-community/gpt2")


def circuit_name(model: str) -> str:
    """Which IOI ground truth names the heads: a provider's own frozen circuits (the
    organism's, organism-b's) or GPT-2 small's."""
    from circuits import ground_truth

    if ground_truth.circuits_file(model) is not None:
        return model
    if model in GPT2_NAMES:
        return "gpt2"
    raise SaelabError(f"no IOI circuit roles for model {model!r}; use 'organism', 'organism-b' or 'gpt2'")


def finite(obj):
    """The document with NaN and infinities as null, so any JSON reader accepts it."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _claim(out: Path, identity: dict) -> None:
    """Refuse to reuse trained SAEs in ``out`` that were fitted to other prompts or settings."""
    path = out / "saes" / "identity.json"
    if path.is_file():
        try:
            held = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # not JSON or not UTF-8
            raise SaelabError(f"{path}: unreadable; use another --out or remove it") from None
        if held != identity:
            raise SaelabError(f"{out / 'saes'} holds SAEs trained with other settings; use another --out or remove it")
    else:
        write_json(path, identity)


def train_saes(cfg: SupervisedConfig, out: Path, fit_acts, locations, model, tokenizer, progress: bool) -> list[Path]:
    from evals.supervised.full_saes import train_full_saes
    from evals.supervised.task_saes import train_task_saes

    s = cfg.saes
    _claim(
        out,
        {
            "model": cfg.model,
            "prompts": cfg.prompts.model_dump(mode="json"),
            "saes": s.model_dump(mode="json"),
            "locations": [loc.key for loc in locations],
        },
    )
    paths: list[Path] = []
    if s.task or s.random_decoder:
        paths += train_task_saes(fit_acts, s, out / "saes" / "task", cfg.model, progress=progress)
    if s.full_distribution:
        paths += train_full_saes(locations, s, out / "saes" / "full", model, tokenizer, cfg.model, progress=progress)
    if not paths:
        raise SaelabError("no SAEs to evaluate: pass --sae RUN_DIR or enable task / full-distribution training")
    return paths


@dataclass
class Prepared:
    """Everything the evaluations read: cross-sections, prompts and their activations."""

    circuit: str
    sections: list
    locations: list
    prompts: object
    acts: dict  # prompt set ("fit", "eval", "heldout", "cf:<attr>") → {location: [n, d]}


def prepare(cfg: SupervisedConfig, model, tokenizer, progress: bool = True) -> Prepared:
    circuit = circuit_name(cfg.model)
    sections = cross_sections(circuit, cfg.eval.cross_sections)
    if not sections:
        raise SaelabError(f"the {circuit} IOI circuit has no heads in any cross-section")
    locations = unique_locations(sections)
    prompts = build_prompts(tokenizer, cfg.prompts, cfg.eval.attributes)
    sets = {"fit": prompts.fit, "eval": prompts.eval, **{f"cf:{a}": s for a, s in prompts.counterfactuals.items()}}
    if prompts.heldout is not None:
        sets["heldout"] = prompts.heldout
    acts = {
        name: harvest(model, tokenizer, s.batch, locations, chunk=cfg.eval.batch_size)
        for name, s in progress_bar(sets.items(), desc="activations", disable=not progress, leave=False)
    }
    return Prepared(circuit, sections, locations, prompts, acts)


def evaluate(
    prep: Prepared, model, families: list[Family], cfg: EvalConfig, progress: bool = True
) -> tuple[Evaluator, dict, dict, list]:
    """Baselines per cross-section and every family's four evaluations on every cross-section it covers."""
    evaluator = Evaluator(model, prep.prompts, prep.acts, cfg)
    baselines = {xs.name: evaluator.baseline(xs) for xs in prep.sections}
    results: dict[str, dict] = {}
    not_covered = []
    jobs = [(fam, xs) for fam in families for xs in prep.sections]
    for fam, xs in progress_bar(jobs, desc="evaluations", disable=not progress, leave=False):
        if not fam.covers(xs.locations):
            not_covered.append({"dictionary": fam.key, "cross_section": xs.name})
            continue
        entry = results.setdefault(fam.key, {"sufficiency": {}, "necessity": {}, "control": {}, "interpretability": {}})
        entry["sufficiency"][xs.name], entry["necessity"][xs.name] = evaluator.sufficiency_necessity(fam, xs)
        entry["control"][xs.name] = evaluator.control(fam, xs)
        entry["interpretability"][xs.name] = evaluator.interpretability(fam, xs)
    return evaluator, baselines, results, not_covered


def run(
    cfg: SupervisedConfig,
    out_dir: str | Path,
    sae_paths: list[str] | None = None,
    progress: bool = True,
    model=None,
    tokenizer=None,
    report: bool = True,
    prepared: Prepared | None = None,
) -> dict:
    """Evaluate; writes ``out_dir/supervised.json`` (and ``report.html``) and returns the results.

    ``prepared`` (from ``prepare`` with the same config and model) skips the harvesting."""
    started = time.time()
    out = Path(out_dir)
    cross_sections(circuit_name(cfg.model), cfg.eval.cross_sections)  # names checked before any work
    sae_paths = discover(sae_paths) if sae_paths else None  # so is every SAE path
    if model is None:
        from sae.model import load_model

        model, tokenizer = load_model(cfg.model, device=cfg.device)
    torch.manual_seed(cfg.prompts.seed)
    prep = prepared if prepared is not None else prepare(cfg, model, tokenizer, progress)
    prompts, acts, locations, sections = prep.prompts, prep.acts, prep.locations, prep.sections
    harvested = time.time()

    families = supervised_families(acts["fit"], prompts.fit.specs, AttributeVocab(prompts.split.names))
    paths = list(sae_paths) if sae_paths else train_saes(cfg, out, acts["fit"], locations, model, tokenizer, progress)
    trained = time.time()
    candidates, skipped = load_candidates(paths, locations, cfg.model, device=cfg.device)
    families += match_l0(candidates, acts["eval"], cfg.saes.l0)
    evaluator, baselines, results, not_covered = evaluate(prep, model, families, cfg.eval, progress)

    dictionaries = {fam.key: fam.describe() for fam in families}
    doc = {
        "kind": "supervised",
        "schema_version": SCHEMA_VERSION,
        "model": cfg.model,
        "circuit": prep.circuit,
        "hook": sorted({loc.hook for loc in locations}),
        "sae": [
            {
                "key": f.key,
                "label": f.label,
                "kind": f.kind,
                "architecture": f.architecture,
                "paths": sorted(set(f.info.get("paths", {}).values())),
            }
            for f in families
            if not f.supervised
        ],
        "config": cfg.model_dump(mode="json"),
        "split": {
            **prompts.split.describe(),
            "n_fit": len(prompts.fit),
            "n_eval": len(prompts.eval),
            "n_heldout_template": len(prompts.heldout) if prompts.heldout else 0,
        },
        "locations": [loc.describe() for loc in locations],
        "cross_sections": [xs.describe() for xs in sections],
        "primary_cross_section": PRIMARY if PRIMARY in baselines else sections[0].name,
        "baselines": baselines,
        "dictionaries": dictionaries,
        "results": results,
        "skipped_saes": skipped,
        "not_covered": not_covered,
        "forward_passes": evaluator.forward_passes,
        "seconds": {
            "activations": round(harvested - started, 1),
            "saes": round(trained - harvested, 1),
            "evaluations": round(time.time() - trained, 1),
            "total": round(time.time() - started, 1),
        },
    }
    doc["table"] = table_rows(doc)
    doc["acceptance"] = acceptance(doc)
    doc["random_decoder_finding"] = random_decoder_finding(doc)
    doc = finite(doc)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / RESULTS, doc)
    if report:
        from evals.report import build_report

        build_report(out)
    return doc
