"""Autointerp (``eval_type_id: autointerp``): explain latents from their contexts, then score the
explanations, two ways, reported side by side under their own names.

- **delphi** (Paulo et al. 2024; eai-delphi 0.1.3): the explainer sees quantile-sampled
  activating windows; the explanation is scored by **detection** (plain windows: which
  activate?) and **fuzzing** (marked windows: is every marked token right?) on held-out
  activating windows (label 1) and random non-activating ones (label 0). Score: balanced
  accuracy (TPR + TNR) / 2, pooled over every latent's examples as delphi's
  ``get_agg_metrics`` does (``delphi.detection_balanced_accuracy``,
  ``delphi.fuzzing_balanced_accuracy``), and its mean over latents beside it.
- **SAEBench** (sae-bench 0.6.0): the explainer sees the top and importance-weighted
  windows; the judge picks which of 14 shuffled windows (2 top, 2 importance-weighted,
  10 random) activate; the latent's score is the fraction classified correctly, and
  ``autointerp.autointerp_score`` is its mean over latents (``autointerp_std_dev``: sample
  standard deviation).

The explainer and scorer are pluggable (``evals.saebench.autointerp_judges``): an LLM at any
OpenAI-compatible endpoint (every prompt and reply cached on disk), or the offline
``statistical-baseline`` (``evals.saebench.autointerp_baseline``), whose name is written in
the config, in every detail row and in the report. A request that fails or a reply that
cannot be parsed prints one line naming the SAE, the latent and the problem; the run goes
on and the latent's details record the failure (its predictions are left out, as delphi
leaves out unparsed ones; a failed SAEBench scoring leaves the latent unscored, as
SAEBench drops it).

Contexts come from held-out text (the suite's text source and seed; on the hub path SAEBench's
monology/pile-uncopyrighted, ``saebench.hub.autointerp_dataset``, unless data.source is set) through
``evals.saebench.autointerp_contexts``; deviations from delphi and SAEBench are listed there.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

from evals.saebench import autointerp_contexts as contexts
from evals.saebench.autointerp_judges import (
    JudgeError,
    LLMExplainer,
    LLMScorer,
    RuleScorer,
    StatisticalExplainer,
    delphi_marks,
)
from evals.saebench.autointerp_llm import ChatClient
from evals.saebench.autointerp_scoring import classifier_metrics, mean_std, pooled, saebench_score
from evals.saebench.output import document

EVAL_TYPE_ID = "autointerp"
DEFINITIONS = {
    "autointerp_score": "SAEBench: mean over latents of the fraction of 14 shuffled windows (2 top, 2 importance-"
    "weighted, 10 random) the judge classifies correctly as activating or not, given the explanation",
    "detection_balanced_accuracy": "delphi detection: (TPR + TNR)/2 of the judge's activates/does-not calls on plain "
    "held-out activating (quantile-sampled) and random non-activating windows, pooled over latents",
    "fuzzing_balanced_accuracy": "delphi fuzzing: (TPR + TNR)/2 of the judge's 'every marked token fits' calls on "
    "truly marked activating windows and randomly marked non-activating ones, pooled over latents",
    "statistical-baseline": "offline judge: explanation = tokens and world categories with the highest log-odds at "
    "activating positions; scorer = rule (those tokens present / the marked ones)",
}


# settings the document states under SAEBench's names, or that belong to this machine (key, cache)
NOT_IN_CONFIG = {"explainer", "scorer", "llm_url", "api_key_env", "cache_dir", "n_tokens", "context_size"}


def default_cache_dir() -> Path:
    return Path("~/.cache/saelab/autointerp").expanduser()


def judges(cfg):
    """(explainer, scorer) for the settings; one cached client serves both when both are the LLM."""
    client = None
    if "llm" in (cfg.explainer, cfg.scorer):
        client = ChatClient(
            cfg.llm_url,
            cfg.llm_model,
            cfg.cache_dir or default_cache_dir(),
            api_key_env=tuple(cfg.api_key_env),
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
        )
    explainer = LLMExplainer(client) if cfg.explainer == "llm" else StatisticalExplainer(cfg)
    scorer = LLMScorer(client) if cfg.scorer == "llm" else RuleScorer()
    return explainer, scorer


def _batches(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _classify(call, items: list, per_prompt: int, fail) -> list[bool | None]:
    """Predictions batch by batch; a failed batch's are None (and reported)."""
    preds: list[bool | None] = []
    for batch in _batches(items, per_prompt):
        try:
            got = call(batch)
        except JudgeError as err:
            fail(err)
            got = [None] * len(batch)
        preds += got
    return preds


def fuzz_marks(w: contexts.Window, n_incorrect: int, rng: random.Random) -> list[bool]:
    """delphi's false-positive marks: ``n_incorrect`` random tokens below 0.3·max (here: all of them, a
    non-activating window being zero throughout). delphi forces one mark at ``len − len//4`` (a comment in
    its own code calls that wrong); here all positions are random."""
    below = [i for i, a in enumerate(w.acts) if a <= 0.3 * w.max_act]
    chosen = set(rng.sample(below, min(n_incorrect, len(below))))
    return [i in chosen for i in range(len(w.acts))]


def score_delphi(ctx: contexts.LatentContexts, explainer, scorer, cfg, rng: random.Random, fail) -> dict | None:
    if not ctx.delphi_test:  # too few activating windows to hold any out: recorded, not scored
        fail("delphi", JudgeError("no held-out activating window to score"))
        return None
    try:
        explanation = explainer.explain_delphi(ctx.delphi_train, ctx.max_activation, ctx.non_activating_train)
    except JudgeError as err:
        fail("delphi explanation", err)
        return None
    samples = [(w, True) for w in ctx.delphi_test] + [(w, False) for w in ctx.non_activating_test]
    detection = samples[:]
    rng.shuffle(detection)
    labels = [y for _w, y in detection]
    preds = _classify(
        lambda b: scorer.detect(explanation, [w for w, _y in b]),
        detection,
        cfg.examples_per_prompt,
        lambda err: fail("delphi detection", err),
    )
    n_incorrect = math.ceil(sum(sum(a > 0 for a in w.acts) for w in ctx.delphi_test) / len(ctx.delphi_test))
    fuzzing = [(w, delphi_marks(w, strict=False), True) for w in ctx.delphi_test]
    fuzzing += [(w, fuzz_marks(w, n_incorrect, rng), False) for w in ctx.non_activating_test]
    rng.shuffle(fuzzing)
    fuzz_labels = [y for _w, _m, y in fuzzing]
    fuzz_preds = _classify(
        lambda b: scorer.fuzz(explanation, [(w, m) for w, m, _y in b]),
        fuzzing,
        cfg.examples_per_prompt,
        lambda err: fail("delphi fuzzing", err),
    )
    return {
        "explanation": explanation,
        "detection": classifier_metrics(labels, preds),
        "fuzzing": classifier_metrics(fuzz_labels, fuzz_preds),
        "n_incorrect": n_incorrect,
    }


def score_saebench(ctx: contexts.LatentContexts, explainer, scorer, cfg, rng: random.Random, fail) -> dict | None:
    threshold = cfg.act_threshold_frac * ctx.top_max
    try:
        explanation = explainer.explain_saebench(ctx.saebench_generation, threshold, ctx.non_activating_train)
    except JudgeError as err:
        fail("saebench explanation", err)
        return None
    n_correct = min(cfg.n_top_ex_for_scoring + cfg.n_iw_sampled_ex_for_scoring, len(ctx.saebench_scoring))
    try:
        picked = scorer.select(explanation, ctx.saebench_scoring, n_correct, rng)
    except JudgeError as err:
        fail("saebench scoring", err)
        return {"explanation": explanation, "score": None}
    return {
        "explanation": explanation,
        "score": saebench_score(picked, ctx.saebench_active),
        "predictions": sorted(set(picked)),
        "correct_seqs": [i for i, a in enumerate(ctx.saebench_active, start=1) if a],
        "random_windows_firing": ctx.saebench_random_firing,
    }


def score_latent(ctx: contexts.LatentContexts, explainer, scorer, cfg, seed: int, report) -> dict:
    """One latent's details: both protocols' explanations and scores, and any failures."""
    failures: list[str] = []

    def fail(stage: str, err: Exception) -> None:
        failures.append(f"{stage}: {err}")
        report(ctx.latent, f"{stage}: {err}")

    rng = random.Random(f"{seed}:autointerp:score:{ctx.latent}")
    return {
        "latent": ctx.latent,
        "explainer": explainer.name,
        "scorer": scorer.name,
        "max_activation": ctx.max_activation,
        "n_activating_windows": ctx.n_activating_windows,
        "delphi": score_delphi(ctx, explainer, scorer, cfg, rng, fail),
        "saebench": score_saebench(ctx, explainer, scorer, cfg, rng, fail),
        "failures": failures,
    }


def summarise(details: list[dict], skipped: int) -> dict[str, dict]:
    """The document's metric categories from the per-latent details."""
    sb = [d["saebench"]["score"] for d in details if d["saebench"] and d["saebench"]["score"] is not None]
    score, std = mean_std(sb)
    out = {"autointerp": {"autointerp_score": score, "autointerp_std_dev": std}}
    delphi = {}
    for kind in ("detection", "fuzzing"):
        rows = [d["delphi"][kind] for d in details if d["delphi"]]
        scored = [r for r in rows if r["tp"] + r["fn"] + r["tn"] + r["fp"] > 0]
        delphi[f"{kind}_balanced_accuracy"] = pooled(scored)["balanced_accuracy"] if scored else math.nan
        mean, dev = mean_std([r["balanced_accuracy"] for r in scored])
        delphi[f"{kind}_balanced_accuracy_latent_mean"] = mean
        delphi[f"{kind}_balanced_accuracy_std_dev"] = dev
    out["delphi"] = delphi
    out["counts"] = {
        "n_latents_scored": len(details),
        "n_latents_saebench_scored": len(sb),
        "n_latents_too_few_examples": skipped,
        "n_failures": sum(len(d["failures"]) for d in details),
    }
    return out


def reporter(sae_name: str):
    def report(latent: int, problem: str) -> None:
        print(f"autointerp: SAE {sae_name} latent {latent}: {problem}", file=sys.stderr, flush=True)

    return report


def run(group, settings) -> list[tuple[dict, dict]]:
    from evals.saebench.hub_concepts import hub_text
    from evals.suite_config import eval_source
    from sae.progress import progress_bar
    from sae.store import StoreConfig, token_batches

    cfg = settings
    entries = group.entries
    model_name = entries[0].info["model"]
    picks = {
        e.name: contexts.candidate_latents(e.sae.W_dec.shape[0], e.info.get("densities"), 3 * cfg.n_latents, cfg.seed)
        for e in entries
    }
    source = eval_source(group.suite, model_name)
    if "source" not in group.suite.data.model_fields_set:
        source = hub_text(group.suite, model_name, "autointerp") or source  # SAEBench's pile on the hub path
    scfg = StoreConfig(
        model=model_name,
        hooks=sorted({e.spec.name for e in entries}),
        source=source,
        context_size=cfg.context_size,
        n_tokens=cfg.n_tokens,
        lm_batch_size=group.suite.data.lm_batch_size,
        seed=group.suite.data.seed,
    )
    total = math.ceil(scfg.n_sequences / scfg.lm_batch_size)
    with progress_bar(total=total, desc="autointerp contexts", unit="batch", disable=not group.progress) as bar:
        harvested = contexts.harvest(
            group.model,
            group.tokenizer,
            {e.name: (e.sae, e.spec) for e in entries},
            token_batches(scfg, group.tokenizer),
            picks,
            bar,
        )
    explainer, scorer = judges(cfg)
    config = {
        "model_name": model_name,
        "judge": f"explainer {explainer.name}, scorer {scorer.name}",
        "explainer": explainer.name,
        "scorer": scorer.name,
        "llm_url": cfg.llm_url if "llm" in (cfg.explainer, cfg.scorer) else None,
        "dataset_name": source.path
        if source.kind in ("hub", "local")
        else f"organism held-out text (seed {scfg.seed})",
        "total_tokens": cfg.n_tokens,
        "llm_context_size": cfg.context_size,
        "random_seed": cfg.seed,
        "no_overlap": True,
        **cfg.model_dump(mode="json", exclude=NOT_IN_CONFIG),
    }
    out = []
    for e in entries:
        report = reporter(e.info.get("id", e.name))
        details, skipped = [], 0
        with progress_bar(total=cfg.n_latents, desc=f"autointerp {e.name}", disable=not group.progress) as bar:
            for column in range(len(picks[e.name])):
                if len(details) == cfg.n_latents:
                    break
                ctx = contexts.latent_contexts(harvested, e.name, column, cfg, cfg.seed)
                if ctx is None:
                    skipped += 1
                    continue
                details.append(score_latent(ctx, explainer, scorer, cfg, cfg.seed, report))
                bar.update(1)
        metrics = summarise(details, skipped)
        unstructured = {"judge": config["judge"], "definitions": DEFINITIONS}
        out.append((e.info, document(EVAL_TYPE_ID, config, metrics, details, e.info, unstructured)))
    return out
