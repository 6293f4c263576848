"""SAEBench's feature absorption (Chanin et al. 2024) with the world's word categories as the hierarchy.

SAEBench asks whether a "starts with S" latent fails to fire on some S-words because a
token-specific latent absorbed its direction. The organism's tokenizer is word-level, so
first letters mean nothing to it; the world has another hierarchy that is known exactly:
each word belongs to one category ("is a city" over Paris, London, ...; "is a food" over
apples, bread, ...; ``concepts.world_categories``). The procedure is SAEBench's
(``feature_absorption_calculator.py``), with a category in place of a letter:

1. ground-truth probe: a one-vs-rest logistic probe per category on the raw activations at
   the word (``"... Say it again: WORD"``), fitted on the train prompts; categories whose
   probe F1 on the test prompts is below ``min_probe_f1`` are not scored;
2. split (main) latents: an L1 probe on the SAE's codes ranks latents by signed weight; for
   k = 1..max_k_value an L2 probe (class-balanced, as SAEBench's sklearn one) on the top k
   gives F1 on the test prompts; k grows while
   F1 beats the best so far by more than ``f1_jump_threshold``: the main latents are the
   last such set;
3. on each test prompt of the category that the probe calls positive (the true positives),
   with p̂ the unit probe direction, cos_i = cos(p̂, W_dec,i), proj_i = f_i·cos_i and
   P = x·p̂: main = Σ_main proj_i; S = the sum of the ≤ max_absorbing_latents largest
   proj_i > 0 among non-main latents with cos_i ≥ fraction_cos_threshold.
   Absorption fraction: 0 if main ≥ P or S/P < projection_threshold; else 1 if main ≤ 0;
   else min(S, P − main)/(min(S, P − main) + main), clipped to [0, 1]. Full absorption: no
   main latent fires (f < 1e-8), the top-projecting latent has cos ≥
   full_absorption_cos_threshold, P ≥ 0, and that latent carries ≥ projection_threshold of P;
4. per category: mean_absorption_fraction = Σ fraction / true positives, full_absorption_rate
   = full absorptions / true positives; the metrics average over scored categories.

Per absorbing latent (the details' ``absorbing_latents``): how often it is among a
prompt's counted absorbers, its share of the category's absorbed projection (the fraction
of absorption it carries), its cosine with the probe, and its ablation effect: the drop of
the probe's score when it is ablated from the reconstruction (f_i·W_dec,i·w, exact for a
linear probe), averaged over the prompts where it absorbs.

Deviations from SAEBench: categories (5 to 13 words) replace letters (hundreds of words),
so ``min_categories`` (3) replaces ``min_feats_for_eval`` (20 letters); prompts of every
word are split by context (train prompts fit the probes, test prompts are measured) where
SAEBench splits the vocabulary, because a category has too few words to hold some out; the
ground-truth probe is sklearn's L2 logistic regression (C = 1) per category, not SAEBench's
26-way BCE probe trained by Adam; the L1 ranking probe is fitted by proximal gradient on
the whole train split, not by minibatch Adam.

On the hub path (``eval_type_id: absorption_first_letter``) the hierarchy is SAEBench's own:
a word's first letter over the model's alphabetic vocabulary tokens, split 80/20 by word,
each in an ICL spelling prompt read at the word (``hub_concepts.first_letter_set``); the
measurement is the same code, with ``saebench.hub.absorption_min_letters`` (SAEBench 20) in
place of ``min_categories`` and details keyed ``first_letter``.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

import torch

from evals.saebench import concepts, hub_concepts
from evals.saebench.output import document
from evals.saebench.probes import Probe, f1, fit_l1_ranking, fit_logistic

EVAL_TYPE_ID = "absorption_category"
FIRST_LETTER_TYPE_ID = "absorption_first_letter"  # the hub path: SAEBench's own task
EPS = 1e-8
DEFINITIONS = {
    "mean_absorption_fraction_score": "mean over scored categories of (sum of absorption fractions over the "
    "category's probe true positives) / true positives (SAEBench's fraction, by D. Till)",
    "mean_full_absorption_score": "mean over scored categories of full absorptions / probe true positives",
    "mean_num_split_features": "mean over scored categories of the number of main (split) latents beyond the "
    "first (SAEBench: len(split_feats) - 1)",
    "std_dev_absorption_fraction_score": "standard deviation over categories of the fraction score",
    "std_dev_full_absorption_score": "standard deviation over categories of the full-absorption rate",
    "std_dev_num_split_features": "standard deviation over categories of the number of split latents",
    "hierarchy": "word categories of the organism's world (city, job, food, color, animal, day, month, number) "
    "in place of first letters; each word read at '... Say it again: WORD'",
}


#: the suite metric (``saes[i].metrics``, read by the claims table) → the document's (category, metric)
SUITE_METRICS = {
    "absorption_fraction": ("mean", "mean_absorption_fraction_score"),
    "full_absorption_rate": ("mean", "mean_full_absorption_score"),
}


@dataclass
class CategoryResult:
    category: str
    probe_f1: float
    split_latents: list[int]
    split_f1: list[float]
    fractions: list[float] = field(default_factory=list)
    full: list[bool] = field(default_factory=list)
    latents: dict[int, dict] = field(default_factory=dict)

    def detail(self) -> dict:
        n = len(self.fractions)
        absorbed = sum(v["projection"] for v in self.latents.values()) or 1.0
        return {
            "category": self.category,
            "mean_absorption_fraction": sum(self.fractions) / n if n else 0.0,
            "full_absorption_rate": sum(self.full) / n if n else 0.0,
            "num_full_absorption": int(sum(self.full)),
            "num_probe_true_positives": n,
            "num_split_features": len(self.split_latents) - 1,
            "split_features": self.split_latents,
            "probe_f1": self.probe_f1,
            "k_sparse_f1": self.split_f1,
            "absorbing_latents": sorted(
                (
                    {
                        "latent": i,
                        "prompts": v["prompts"],
                        "fraction_of_absorption": v["projection"] / absorbed,
                        "probe_cos": v["cos"],
                        "mean_ablation_effect": v["ablation"] / v["prompts"],
                    }
                    for i, v in self.latents.items()
                ),
                key=lambda r: -r["fraction_of_absorption"],
            ),
        }


def split_latents(codes_tr, y_tr, codes_te, y_te, settings, C: float = 1.0) -> tuple[list[int], list[float]]:
    """SAEBench's k-sparse probing: the main latents of one category and the F1 of each k tried."""
    w = fit_l1_ranking(codes_tr, y_tr, settings.k_sparse_probe_l1_decay)
    order = torch.argsort(w, descending=True, stable=True).tolist()
    best, chosen, f1s = -1.0, order[:1], []
    for k in range(1, min(settings.max_k_value, len(order)) + 1):
        idx = order[:k]
        probe = fit_logistic(codes_tr[:, idx], y_tr, C, balanced=True)
        score = f1(probe.predict(codes_te[:, idx]), y_te)
        f1s.append(score)
        if k == 1:
            best = score
        elif score - best > settings.f1_jump_threshold:
            best, chosen = score, idx
        else:
            break
    return chosen, f1s


def measure(result: CategoryResult, x, codes, W_dec, probe: Probe, settings) -> None:
    """Absorption on the true-positive prompts ``x`` (raw) / ``codes`` of one category (step 3)."""
    direction = probe.w / probe.w.norm()
    W = W_dec.double()
    cos = torch.nn.functional.cosine_similarity(direction[None], W, dim=-1)
    along = W @ probe.w  # each latent's decoder row on the probe (its ablation effect per unit activation)
    main = torch.zeros(W.shape[0], dtype=torch.bool)
    main[result.split_latents] = True
    for xi, fi in zip(x.double(), codes.double(), strict=True):
        proj = fi * cos
        P = float(xi @ direction)
        main_proj = float(proj[main].sum())
        candidates = (~main) & (cos >= settings.fraction_cos_threshold) & (proj > 0)
        cand_idx = torch.nonzero(candidates).flatten()
        top = cand_idx[torch.argsort(proj[cand_idx], descending=True, stable=True)][: settings.max_absorbing_latents]
        S = float(proj[top].sum())
        share = S / P if P != 0 else 0.0
        if main_proj >= P or share < settings.projection_threshold:
            fraction = 0.0
        elif main_proj <= 0:
            fraction = 1.0
        else:
            absorbed = min(S, P - main_proj)
            fraction = min(max(absorbed / (absorbed + main_proj), 0.0), 1.0)
        first = int(torch.argmax(proj))
        full = (
            bool((fi[main] < EPS).all())
            and float(cos[first]) >= settings.full_absorption_cos_threshold
            and P >= 0
            and P != 0
            and float(proj[first]) / P >= settings.projection_threshold
        )
        result.fractions.append(fraction)
        result.full.append(full)
        if fraction > 0:
            for i in top.tolist():
                rec = result.latents.setdefault(
                    i, {"prompts": 0, "projection": 0.0, "cos": float(cos[i]), "ablation": 0.0}
                )
                rec["prompts"] += 1
                rec["projection"] += float(proj[i])
                rec["ablation"] += float(fi[i] * along[i])


def absorption_scores(
    x_tr, x_te, codes_tr, codes_te, labels_tr: list[str], labels_te: list[str], W_dec, categories, settings
) -> list[CategoryResult]:
    """Every category's result (steps 1-3); categories whose probe F1 is too low are left out."""
    out = []
    for c in categories:
        y_tr = torch.tensor([lab == c for lab in labels_tr]).long()
        y_te = torch.tensor([lab == c for lab in labels_te]).long()
        if y_tr.sum() == 0 or y_te.sum() == 0:
            continue
        probe = fit_logistic(x_tr, y_tr, balanced=True)
        pred = probe.predict(x_te)
        probe_f1 = f1(pred, y_te)
        if probe_f1 < settings.min_probe_f1:
            continue
        split, f1s = split_latents(codes_tr, y_tr, codes_te, y_te, settings)
        result = CategoryResult(c, probe_f1, split, f1s)
        tp = (pred == 1) & (y_te == 1)
        measure(result, x_te[tp], codes_te[tp], W_dec, probe, settings)
        out.append(result)
    return out


def summary(results: list[CategoryResult]) -> dict[str, float]:
    details = [r.detail() for r in results]
    frac = [d["mean_absorption_fraction"] for d in details]
    full = [d["full_absorption_rate"] for d in details]
    split = [float(d["num_split_features"]) for d in details]

    def sd(v):
        return statistics.stdev(v) if len(v) > 1 else 0.0

    return {
        "mean_absorption_fraction_score": statistics.mean(frac),
        "mean_full_absorption_score": statistics.mean(full),
        "mean_num_split_features": statistics.mean(split),
        "std_dev_absorption_fraction_score": sd(frac),
        "std_dev_full_absorption_score": sd(full),
        "std_dev_num_split_features": sd(split),
    }


def skipped(config: dict, info: dict, why: str, details: list | None = None, type_id: str = EVAL_TYPE_ID) -> dict:
    """The document of an SAE the eval cannot score (SAEBench aborts): null metrics, the reason unstructured."""
    metrics = {"mean": dict.fromkeys(k for k in DEFINITIONS if k != "hierarchy")}
    return document(type_id, config, metrics, details or [], info, {"skipped": why})


def _split_by_context(data, test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Per word, a ``test_fraction`` share of its prompts to test (at least one each side)."""
    by_word: dict[str, list[int]] = {}
    for i, it in enumerate(data.items):
        by_word.setdefault(it.group, []).append(i)
    rng = random.Random(f"{seed}:absorption")
    train, test = [], []
    for word in sorted(by_word):
        rows = by_word[word][:]
        rng.shuffle(rows)
        n_test = min(max(1, round(test_fraction * len(rows))), len(rows) - 1)
        test += rows[:n_test]
        train += rows[n_test:]
    return sorted(train), sorted(test)


def _organism(group, specs, settings) -> dict:
    data = concepts.build(
        "category", group.tokenizer, group.entries[0].info["model"], settings.contexts, 0.5, None, settings.seed
    )
    data.test_groups = set()
    train, test = _split_by_context(data, settings.test_fraction, settings.seed)
    config = {
        "hierarchy": "organism word categories",
        "categories": data.classes,
        **settings.model_dump(exclude={"seed"}),
    }
    acts = concepts.read_last(group.model, specs, data.items)
    return {
        "type_id": EVAL_TYPE_ID,
        "data": data,
        "train": train,
        "test": test,
        "acts": acts,
        "config": config,
        "min_categories": settings.min_categories,
        "unit": "categories",
        "detail": CategoryResult.detail,
    }


def _first_letter(group, specs, settings) -> dict:
    """SAEBench's own task on the hub path: first letters of the vocabulary (``hub_concepts.first_letter_set``)."""
    hub = group.suite.saebench.hub
    data, train, test, acts, left_out = hub_concepts.first_letter_set(
        group, specs, settings.seed, hub.absorption_max_words
    )
    config = {
        "prompt_template": hub_concepts.ABSORPTION_TEMPLATE,
        "prompt_token_pos": -6,
        "max_icl_examples": hub_concepts.ICL_EXAMPLES,
        "train_fraction": hub_concepts.ABSORPTION_TRAIN_FRACTION,
        "words": len(data.items),
        "words_not_one_token_in_context": len(left_out),
        "min_feats_for_eval": hub.absorption_min_letters,
        **settings.model_dump(exclude={"seed", "contexts", "test_fraction", "min_categories"}),
    }

    def detail(result: CategoryResult) -> dict:  # SAEBench's detail names the letter ``first_letter``
        row = result.detail()
        return {"first_letter": row.pop("category"), **row}

    return {
        "detail": detail,
        "type_id": FIRST_LETTER_TYPE_ID,
        "data": data,
        "train": train,
        "test": test,
        "acts": acts,
        "config": config,
        "min_categories": hub.absorption_min_letters,
        "unit": "letters",
    }


def run(group, settings) -> list[tuple[dict, dict]]:
    """Per SAE, the absorption document (the probes on raw activations are fitted once per hook)."""
    entries = group.entries
    model_name = entries[0].info["model"]
    specs = list({e.spec.name: e.spec for e in entries}.values())
    task = (_first_letter if hub_concepts.on_hub(group) else _organism)(group, specs, settings)
    data, train, test, acts, type_id = task["data"], task["train"], task["test"], task["acts"], task["type_id"]
    labels = [it.label for it in data.items]
    out = []
    config = {"model_name": model_name, "random_seed": settings.seed, **task["config"]}
    for e in entries:
        if e.out_spec is not None:  # a transcoder's decoder lives in another space than the probe
            why = "a transcoder: its decoder writes another hook than it reads"
            out.append((e.info, skipped(config, e.info, why, type_id=type_id)))
            continue
        x = acts[e.spec.name]
        with torch.no_grad():
            codes = e.sae.encode(x.to(next(e.sae.parameters()).device)).float().cpu()
        results = absorption_scores(
            x[train],
            x[test],
            codes[train],
            codes[test],
            [labels[i] for i in train],
            [labels[i] for i in test],
            e.sae.W_dec.detach().float().cpu(),
            data.classes,
            settings,
        )
        if len(results) < task["min_categories"]:
            why = (
                f"only {len(results)} {task['unit']} have a ground-truth probe with F1 >= {settings.min_probe_f1} "
                f"at {e.spec.name} (min {task['min_categories']})"
            )
            out.append((e.info, skipped(config, e.info, why, [task["detail"](r) for r in results], type_id)))
            continue
        doc = document(type_id, config, {"mean": summary(results)}, [task["detail"](r) for r in results], e.info)
        out.append((e.info, doc))
    return out
