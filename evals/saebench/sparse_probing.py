"""SAEBench's sparse probing (``eval_type_id: sparse_probing``) on concepts of the organism's world.

For each dataset (``evals.saebench.concepts``: a word's category, a name's gender, a name's
city, a name's job) and each of its classes, one-vs-rest: positives are the class's prompts,
negatives are sampled evenly from the other classes down to the positive count (SAEBench),
on the train and the test split separately. Inputs are the SAE's codes (``sae_*``) or the
raw activations at its hook (``llm_*``, the baseline); ``top_k`` keeps the k inputs with
the largest |mean_pos − mean_neg| on the train split (SAEBench's ``get_top_k_mean_diff_mask``)
and fits sklearn's L2 logistic regression (C = 1) on them; ``*_test_accuracy`` without k is
the probe on every input. Accuracies are averaged over a dataset's classes, then over
datasets (SAEBench).

Deviations from SAEBench: prompts are the organism's (SAEBench: bias_in_bios, amazon
reviews, github code, ag_news, europarl); one position is read (the word, or where the
fact is predicted) instead of mean pooling over a 128-token context, because a concept of
the world sits at one token; the split is by word or name (disjoint test items), not by
document; the full-width probe is the same L-BFGS logistic regression as the top-k ones
(SAEBench trains it by minibatch gradient descent); k defaults to 1, 2, 5, 10, 20.

On the hub path (``hub_concepts``; GPT-2, Pythia, any model without an organism world) the
datasets are SAEBench's own (``saebench.hub.sparse_probing_datasets``), sampled as sae-bench
does, each text mean-pooled over its non-special positions (the SAE's codes pooled the
same way), split as SAEBench splits them (its train and test splits); the scoring above
is the same code. Left as is there: the full-width probe (L-BFGS, not minibatch).
"""

from __future__ import annotations

import random

import torch

from evals.saebench import concepts, hub_concepts
from evals.saebench.output import document
from evals.saebench.probes import accuracy, fit_logistic, top_k_mean_diff
from sae.progress import progress_bar

EVAL_TYPE_ID = "sparse_probing"
DEFINITIONS = {
    "llm_test_accuracy": "test accuracy of an L2 logistic probe (C=1) on the raw activations at the SAE's hook, "
    "one-vs-rest per class, mean over classes then datasets",
    "llm_top_{k}_test_accuracy": "the same on the k activation dimensions with the largest |mean_pos - mean_neg| "
    "(train split)",
    "sae_test_accuracy": "the same probe on every SAE latent (inference codes)",
    "sae_top_{k}_test_accuracy": "the same on the k latents with the largest |mean_pos - mean_neg| (train split)",
    "datasets": "category: a word's category read at the word ('... Say it again: WORD'); gender: read after the "
    "name ('... NAME lost'); city / job: read where the model predicts the fact ('... NAME lives in', "
    "'... NAME works as a'); split by word or name",
}


def balanced(labels: list[str], rows: list[int], positive: str, rng: random.Random) -> tuple[list[int], list[int]]:
    """(rows, 0/1 labels): every row of ``positive`` and as many negatives, taken evenly from the other classes."""
    pos = [r for r in rows if labels[r] == positive]
    others: dict[str, list[int]] = {}
    for r in rows:
        if labels[r] != positive:
            others.setdefault(labels[r], []).append(r)
    pools = [others[c][:] for c in sorted(others)]
    for pool in pools:
        rng.shuffle(pool)
    neg: list[int] = []
    while len(neg) < len(pos) and any(pools):
        for pool in pools:
            if pool and len(neg) < len(pos):
                neg.append(pool.pop())
    return pos + neg, [1] * len(pos) + [0] * len(neg)


def probe_scores(x_train, y_train, x_test, y_test, k_values, C, max_iter) -> dict[str, float]:
    """``{"test_accuracy": ..., "top_{k}_test_accuracy": ...}`` for one binary task."""
    out = {"test_accuracy": accuracy(fit_logistic(x_train, y_train, C, max_iter), x_test, y_test)}
    for k in k_values:
        idx = top_k_mean_diff(x_train, y_train, min(k, x_train.shape[1]))
        probe = fit_logistic(x_train[:, idx], y_train, C, max_iter)
        out[f"top_{k}_test_accuracy"] = accuracy(probe, x_test[:, idx], y_test)
    return out


def _mean(rows: list[dict]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def dataset_scores(data, acts: torch.Tensor, settings, rng_seed: int) -> dict[str, float]:
    """Class-mean scores of one input space (raw activations or codes) on one dataset."""
    labels = [it.label for it in data.items]
    per_class = []
    for c in data.classes:
        rng = random.Random(f"{rng_seed}:{data.name}:{c}")
        tr, ytr = balanced(labels, data.rows(False), c, rng)
        te, yte = balanced(labels, data.rows(True), c, rng)
        if not te or not tr or len(set(ytr)) < 2:
            continue
        ytr_t, yte_t = torch.tensor(ytr), torch.tensor(yte)
        per_class.append(
            probe_scores(acts[tr], ytr_t, acts[te], yte_t, settings.k_values, settings.C, settings.max_iter)
        )
    return _mean(per_class)


def organism_config(model_name: str, settings) -> dict:
    return {
        "model_name": model_name,
        "random_seed": settings.seed,
        "dataset_names": [f"organism/{n}" for n in settings.datasets],
        "k_values": settings.k_values,
        "contexts_per_item": settings.contexts,
        "test_fraction": settings.test_fraction,
        "max_classes": settings.max_classes,
        "C": settings.C,
        "position": "the last token of each prompt (see DEFINITIONS['datasets'])",
        "split": "by word or name",
    }


def hub_config(group, settings, names: list[str]) -> dict:
    """SAEBench's own config fields, as its sparse-probing eval writes them."""
    hub = group.suite.saebench.hub
    return {
        "model_name": group.entries[0].info["model"],
        "random_seed": settings.seed,
        "dataset_names": list(names),
        "probe_train_set_size": hub.train_size,
        "probe_test_set_size": hub.test_size,
        "context_length": hub.context_length,
        "llm_batch_size": hub.batch_size,
        "k_values": settings.k_values,
        "C": settings.C,
        "position": "mean over each text's positions that are not BOS, EOS or padding (SAEBench)",
    }


def run(group, settings) -> list[tuple[dict, dict]]:
    """Per SAE, the SAEBench sparse-probing document (raw-activation baselines computed once per hook)."""
    entries = group.entries
    model_name = entries[0].info["model"]
    specs = list({e.spec.name: e.spec for e in entries}.values())
    hub = hub_concepts.on_hub(group)
    names = group.suite.saebench.hub.sparse_probing_datasets if hub else settings.datasets
    per_dataset: dict[str, dict] = {}
    for name in progress_bar(names, desc="sparse probing", disable=not group.progress, leave=False):
        if hub:
            data, pooled = hub_concepts.probing_set(group, specs, name, settings.seed)
        else:
            data = concepts.build(
                name,
                group.tokenizer,
                model_name,
                settings.contexts,
                settings.test_fraction,
                settings.max_classes,
                settings.seed,
            )
            pooled = {
                h: concepts.Pooled.single(a) for h, a in concepts.read_last(group.model, specs, data.items).items()
            }
        llm = {h: dataset_scores(data, p.pool(), settings, settings.seed) for h, p in pooled.items()}
        sae = {
            e.name: dataset_scores(data, concepts.pooled_codes(e.sae, pooled[e.spec.name]), settings, settings.seed)
            for e in entries
        }
        per_dataset[name] = {"data": data, "llm": llm, "sae": sae}
    out = []
    for e in entries:
        details = []
        for name, block in per_dataset.items():
            llm, sae = block["llm"][e.spec.name], block["sae"][e.name]
            details.append(
                {
                    "dataset_name": name if hub else f"organism/{name}",
                    **{f"llm_{k}": v for k, v in llm.items()},
                    **{f"sae_{k}": v for k, v in sae.items()},
                    "classes": block["data"].classes,
                    **({} if hub else {"test_items": sorted(block["data"].test_groups)}),
                }
            )
        numeric = [{k: v for k, v in d.items() if isinstance(v, float)} for d in details]
        overall = _mean(numeric)
        metrics = {
            "llm": {k: v for k, v in overall.items() if k.startswith("llm_")},
            "sae": {k: v for k, v in overall.items() if k.startswith("sae_")},
        }
        config = hub_config(group, settings, names) if hub else organism_config(model_name, settings)
        out.append((e.info, document(EVAL_TYPE_ID, config, metrics, details, e.info)))
    return out
