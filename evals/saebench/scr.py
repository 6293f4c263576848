"""SAEBench's spurious correlation removal (``eval_type_id: scr``) with gender and job on constructed prompts.

Prompts state both attributes: ``"{corpus sentence} {NAME} works as a {JOB}."`` (the name
carries the gender, the job word the profession); each prompt is mean-pooled over the
positions of its constructed sentence (the name to the full stop), as SAEBench mean-pools
a biography. For each job pair (P1, P2) of ``pairs`` (SAEBench: professor/nurse, ...):

- the **biased probe** is trained on perfectly correlated data: male names with P1
  (label 1) against female names with P2 (label 0);
- a **profession probe** (label P1, both genders) and a **gender probe** (label male, both
  jobs) are trained on balanced data of the same train names; they give the oracle
  accuracies A_skyline and choose the latents;
- latent effects for a probe w: e = |(μ_pos − μ_neg) · (W_dec w)| (mean pooled codes of the
  probe's train set; SAEBench's SCR uses the absolute effect), top-n among non-zero;
- dir1: zero-ablate the top-n latents of the gender probe at every position, keeping the
  SAE's error term (x' = decode(f_abl) + x − decode(f)), pool, and score the biased
  probe on the profession test set (A_abl); A = the biased probe there before ablation,
  A_skyline = the profession probe there. dir2 is the reverse (the profession probe's
  latents; the biased probe on the gender test set; the gender probe as skyline).
- S = (A_abl − A) / (A_skyline − A), 0 when A_skyline − A < 0.001 (SAEBench);
  ``scr_metric_threshold_n`` is dir1 when the biased probe is worse on the profession test
  set than on the gender test set, else dir2 (SAEBench's rule); pairs are averaged.

Deviations from SAEBench: the organism's constructed prompts replace bias_in_bios (the
world's facts are per name, too few names per (gender, job) to bias a probe on the facts
alone, so the prompt states the job); train and test sets are split **by name** (test names
unseen), each (name, job) prompt appearing after ``contexts`` corpus sentences; probes are
the lab's L2 logistic regressions (sklearn's objective, C = 1, fitted to convergence)
instead of SAEBench's minibatch-16 L1 GPU probes with early stopping, so the biased probe's
mix of gender and profession is the converged one; n defaults to 2, 5, 10, 20.

On the hub path (``hub_concepts.scr_set``) the texts are SAEBench's: bias_in_bios bios of
each profession pair × gender and amazon reviews of each category pair × rating
(``saebench.hub.scr_pairs``, SAEBench's four pairs each; "gender" below then stands for the
spurious column, "job" for the class), the quadrants and the biased probe's 2 × (size // 4)
pos-P1 / neg-P2 texts taken as sae-bench's ``get_spurious_corr_data`` takes them,
mean-pooled over non-special positions; the scoring is the same code, the metrics the mean
over every pair of both datasets (SAEBench).
"""

from __future__ import annotations

import random

import torch

from evals.saebench import concepts, hub_concepts
from evals.saebench.concepts import Pooled
from evals.saebench.output import document
from evals.saebench.probes import Probe, accuracy, fit_logistic
from evals.saebench.tpp import codec, decoder_rows, top_n
from sae.progress import progress_bar

EVAL_TYPE_ID = "scr"
TEMPLATE = "{c} {name} works as a {job}."
DEFINITIONS = {
    "scr_metric_threshold_{n}": "normalised SCR score (A_abl - A) / (A_skyline - A) of the direction in which the "
    "biased probe is the more spurious (dir1 when it is worse on profession than on gender), mean over job pairs",
    "scr_dir1_threshold_{n}": "gender latents ablated (top-n by |effect| on the gender probe), biased probe scored "
    "on the profession test set, skyline = the profession probe",
    "scr_dir2_threshold_{n}": "profession latents ablated, biased probe scored on the gender test set, skyline = "
    "the gender probe",
    "prompts": "'{corpus sentence} NAME works as a JOB.' mean-pooled from the name to the full stop; split by name",
}


def effects(codes: torch.Tensor, y: torch.Tensor, W: torch.Tensor, probe: Probe) -> torch.Tensor:
    """SAEBench's SCR latent effect |(μ_pos − μ_neg) · (W_dec w)| of pooled codes ``codes`` (labels ``y``)."""
    diff = codes[y == 1].double().mean(0) - codes[y == 0].double().mean(0)
    return (diff * (W @ probe.w)).abs()


def normalised(a_abl: float, a_base: float, a_skyline: float) -> float:
    """SAEBench's S_SHIFT; 0 when the skyline is not above the biased probe by 0.001."""
    denom = a_skyline - a_base
    return (a_abl - a_base) / denom if denom >= 0.001 else 0.0


def scr_scores(data: Pooled, gender, job, train, test, encode, decode, n_values, biased=None) -> dict:
    """One job pair's SCR scores. ``gender``/``job``: 0/1 per prompt (1 = male / P1); ``train``/``test``: prompt
    indices; ``biased``: the biased probe's prompts (default: the train prompts where job and gender agree).
    ``encode``/``decode``: the SAE on [rows, d] tensors.

    Ablation keeps the error term: decode(f_abl) + x − decode(f) = x − Σ_chosen f_i W_dec,i for an affine
    decoder, so the pooled ablated activation is x̄ − Σ_chosen f̄_i W_dec,i (f̄: the pooled codes), exactly,
    with no per-position copy of the codes."""
    gender, job = torch.as_tensor(gender), torch.as_tensor(job)
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    x = data.pool().double()
    biased_rows = train[job[train] == gender[train]] if biased is None else torch.as_tensor(biased)
    biased_probe = fit_logistic(x[biased_rows], job[biased_rows], balanced=True)
    prof = fit_logistic(x[train], job[train], balanced=True)
    gend = fit_logistic(x[train], gender[train], balanced=True)
    base = {"prof": accuracy(biased_probe, x[test], job[test]), "gender": accuracy(biased_probe, x[test], gender[test])}
    skyline = {"prof": accuracy(prof, x[test], job[test]), "gender": accuracy(gend, x[test], gender[test])}
    with torch.no_grad():
        pooled_codes = data.pool_map(lambda rows: encode(rows).double())
    W = decoder_rows(decode, pooled_codes.shape[1])
    chosen_by = {
        "dir1": effects(pooled_codes[train], gender[train], W, gend),
        "dir2": effects(pooled_codes[train], job[train], W, prof),
    }
    target = {"dir1": ("prof", job), "dir2": ("gender", gender)}
    out: dict[str, float] = {
        "biased_probe_profession_accuracy": base["prof"],
        "biased_probe_gender_accuracy": base["gender"],
        "profession_probe_accuracy": skyline["prof"],
        "gender_probe_accuracy": skyline["gender"],
    }
    use = "dir1" if base["prof"] < base["gender"] else "dir2"
    for n in n_values:
        for d, eff in chosen_by.items():
            chosen = top_n(eff, n)
            x_abl = x - pooled_codes[:, chosen] @ W[chosen]
            key, y = target[d]
            a_abl = accuracy(biased_probe, x_abl[test], y[test])
            out[f"scr_{d}_threshold_{n}"] = normalised(a_abl, base[key], skyline[key])
            out[f"scr_{d}_accuracy_after_ablation_{n}"] = a_abl
        out[f"scr_metric_threshold_{n}"] = out[f"scr_{use}_threshold_{n}"]
    return out


def build(tokenizer, pair: tuple[str, str], n_contexts: int, test_fraction: float, seed: int):
    """(items, gender 0/1, job 0/1, train prompt ids, test prompt ids, span starts) for one job pair."""
    from circuits.tasks.vocabulary import FEMALE_NAMES, NAMES

    enc = concepts.Encoder(tokenizer)
    for w in pair:
        if not enc.single(w):
            from sae.errors import ConfigError

            raise ConfigError(f"scr: job {w!r} is not one token of the organism's vocabulary")
    rng = random.Random(f"{seed}:scr:{pair}")
    ctx = concepts.contexts(n_contexts * 4, seed)
    by_gender = {g: sorted(n for n in NAMES if (n in FEMALE_NAMES) == (g == 0)) for g in (0, 1)}
    test_names = set()
    for names in by_gender.values():
        order = names[:]
        rng.shuffle(order)
        test_names.update(order[: max(1, round(test_fraction * len(order)))])
    items, gender, job, train, test, starts = [], [], [], [], [], []
    for name in NAMES:
        g = 0 if name in FEMALE_NAMES else 1
        for j, word in ((1, pair[0]), (0, pair[1])):
            for c in rng.sample(ctx, n_contexts):
                ids = enc(TEMPLATE.format(c=c, name=name, job=word))
                span = len(enc(TEMPLATE.format(c=c, name=name, job=word).rpartition(f" {name} works")[0]))
                (test if name in test_names else train).append(len(items))
                items.append(concepts.Item(ids, name, word))
                gender.append(g)
                job.append(j)
                starts.append(span)
    return items, gender, job, train, test, starts


def read_spans(model, specs: list, items: list, starts: list[int], batch_size: int = 64) -> dict[str, Pooled]:
    """Per hook, every prompt's rows from ``starts[i]`` to its last token (right-padded batches)."""
    width = max(len(it.tokens) for it in items)
    tokens = torch.zeros(len(items), width, dtype=torch.long)
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for i, it in enumerate(items):
        tokens[i, : len(it.tokens)] = torch.tensor(it.tokens)
        mask[i, starts[i] : len(it.tokens)] = True
    return concepts.read_masked(model, specs, tokens, mask, batch_size)


def mean_rows(rows: list[dict]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def run(group, settings) -> list[tuple[dict, dict]]:
    entries = [e for e in group.entries if e.out_spec is None]  # a transcoder writes another hook than it reads
    if not entries:
        return []
    model_name = entries[0].info["model"]
    specs = list({e.spec.name: e.spec for e in entries}.values())
    per_pair: dict[str, dict[str, dict]] = {e.name: {} for e in entries}
    hub = hub_concepts.on_hub(group)
    lookup = group.suite.saebench.hub.scr_pairs if hub else {"organism/gender_job": settings.pairs}
    runs = [(dataset, tuple(pair)) for dataset, pairs in lookup.items() for pair in pairs]
    for dataset, pair in progress_bar(runs, desc="scr", disable=not group.progress, leave=False):
        if hub:
            block = hub_concepts.scr_set(group, specs, dataset, pair, settings.seed)
            acts, gender, job, train, test, biased = (
                block[k] for k in ("acts", "gender", "job", "train", "test", "biased")
            )
        else:
            items, gender, job, train, test, starts = build(
                group.tokenizer, pair, settings.contexts, settings.test_fraction, settings.seed
            )
            acts, biased = read_spans(group.model, specs, items, starts), None
        for e in entries:
            encode, decode = codec(e.sae)
            per_pair[e.name][f"{dataset}/{'/'.join(pair)}"] = scr_scores(
                acts[e.spec.name], gender, job, train, test, encode, decode, settings.n_values, biased
            )
    config = {
        "model_name": model_name,
        "random_seed": settings.seed,
        "dataset_names": list(lookup),
        "column1_vals_lookup": {d: [list(p) for p in pairs] for d, pairs in lookup.items()},
        "n_values": settings.n_values,
    }
    if hub:
        config.update(hub_concepts.hub_sizes(group))
    else:
        config.update(
            contexts_per_item=settings.contexts,
            test_fraction=settings.test_fraction,
            template=TEMPLATE,
            split="by name",
        )
    out = []
    for e in entries:
        scored = per_pair[e.name]
        overall = mean_rows(list(scored.values()))
        metrics = {k: v for k, v in overall.items() if k.startswith("scr_") and "accuracy" not in k}
        details = [{"dataset_name": p, **r} for p, r in scored.items()]
        out.append((e.info, document(EVAL_TYPE_ID, config, {"scr_metrics": metrics}, details, e.info)))
    return out
