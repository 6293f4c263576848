"""SAEBench's targeted probe perturbation (``eval_type_id: tpp``) on the organism's word categories.

For each class i of a dataset (default: a word's category, ``evals.saebench.concepts``) a
one-vs-rest logistic probe is fitted on the raw activations (train split, negatives
sampled evenly from the other classes, as in sparse probing). Latent effects for class i
are e = max(μ_pos − μ_neg, 0) · (W_dec w_i) (SAEBench: mean codes of the class minus the
rest, clamped at 0 for TPP, times each decoder row's dot product with the probe weight);
the top-n latents among non-zero effects are zero-ablated on every test row, keeping the
SAE's error term (x' = decode(f_ablated) + x − decode(f)), and every probe j is re-scored
on its own test set. Per class i and n:
intended = A_i − A_i^{abl i}, unintended = mean_{j≠i}(A_j − A_j^{abl i}),
total = intended − unintended; the metrics average over classes (SAEBench
``tpp_threshold_{n}_total_metric``, ``_intended_diff_only``, ``_unintended_diff_only``).

Deviations from SAEBench: the organism's word categories replace bias_in_bios professions
and amazon review categories; one position is read (the word) instead of mean pooling;
probes are sklearn-objective L2 logistic regressions (SAEBench: minibatch GPU probes with
an L1 penalty); the split is by word; n defaults to 2, 5, 10, 20 (SAEBench also 50, 100,
500, beyond a small SAE's useful range).

On the hub path the datasets are SAEBench's (``saebench.hub.tpp_datasets``: bias_in_bios
class set 1 and the amazon reviews' categories), mean-pooled texts (``hub_concepts``), the
metrics averaged over datasets as SAEBench does; the scoring is the same code. The probes
stay the lab's converged L2 ones (SAEBench: minibatch-16 L1 probes with early stopping).
"""

from __future__ import annotations

import random

import torch

from evals.saebench import concepts, hub_concepts
from evals.saebench.concepts import Pooled
from evals.saebench.output import document
from evals.saebench.probes import accuracy, fit_logistic
from evals.saebench.sparse_probing import balanced

EVAL_TYPE_ID = "tpp"
DEFINITIONS = {
    "tpp_threshold_{n}_total_metric": "mean over classes i of intended - unintended accuracy drops when the top-n "
    "latents by effect for class i are zero-ablated (error term kept)",
    "tpp_threshold_{n}_intended_diff_only": "mean over classes i of A_i(clean) - A_i(ablated for i)",
    "tpp_threshold_{n}_unintended_diff_only": "mean over classes i of mean_{j != i} A_j(clean) - A_j(ablated for i)",
    "effect": "max(mean code of class i - mean code of the rest, 0) * (W_dec w_i), train split (SAEBench TPP)",
}


def top_n(effects: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n largest effects among the non-zero ones (fewer when fewer are non-zero)."""
    nonzero = torch.nonzero(effects != 0).flatten()
    k = min(n, nonzero.numel())
    return nonzero[torch.topk(effects[nonzero], k).indices] if k else nonzero


def tpp_scores(x, labels: list[str], train: list[int], test: list[int], classes, encode, decode, n_values, seed: int):
    """(overall metrics, per-class metrics, clean accuracies) for an SAE given by ``encode``/``decode``.

    ``x``: one raw row per item, or a ``concepts.Pooled`` (per-position rows mean-pooled per item, the hub
    path). Ablation keeps the error term; for an affine decoder decode(f_abl) + x − decode(f) =
    x − Σ_chosen f_i W_dec,i, so the pooled ablated rows are x̄ − Σ_chosen f̄_i W_dec,i exactly."""
    data = x if isinstance(x, Pooled) else Pooled.single(x)
    x = data.pool().double()
    sets, probes, clean = {}, {}, {}
    for c in classes:
        rng = random.Random(f"{seed}:tpp:{c}")
        tr, ytr = balanced(labels, train, c, rng)
        te, yte = balanced(labels, test, c, rng)
        sets[c] = (tr, torch.tensor(ytr), te, torch.tensor(yte))
        probes[c] = fit_logistic(x[tr], torch.tensor(ytr), balanced=True)
        clean[c] = accuracy(probes[c], x[te], torch.tensor(yte))
    with torch.no_grad():
        codes = data.pool_map(lambda rows: encode(rows).double())
    W = decoder_rows(decode, codes.shape[1])
    per_class = {}
    for i in classes:
        tr, ytr, _te, _yte = sets[i]
        f = codes[tr]
        diff = (f[ytr == 1].mean(0) - f[ytr == 0].mean(0)).clamp_min(0)
        effects = diff * (W @ probes[i].w)
        row = {}
        for n in n_values:
            chosen = top_n(effects, n)
            x_abl = x - codes[:, chosen] @ W[chosen]
            drops = {}
            for j in classes:
                _tr, _y, te, yte = sets[j]
                drops[j] = clean[j] - accuracy(probes[j], x_abl[te], yte)
            intended = drops[i]
            unintended = sum(drops[j] for j in classes if j != i) / max(len(classes) - 1, 1)
            row[f"tpp_threshold_{n}_total_metric"] = intended - unintended
            row[f"tpp_threshold_{n}_intended_diff_only"] = intended
            row[f"tpp_threshold_{n}_unintended_diff_only"] = unintended
        per_class[i] = row
    keys = next(iter(per_class.values())).keys()
    overall = {k: sum(r[k] for r in per_class.values()) / len(per_class) for k in keys}
    return overall, per_class, clean


def decoder_rows(decode, d_sae: int) -> torch.Tensor:
    """W_dec rows from ``decode`` (decode(e_i) − decode(0)): works for any affine decoder."""
    with torch.no_grad():
        eye = torch.eye(d_sae)
        return (decode(eye) - decode(torch.zeros(1, d_sae))).double()


def _datasets(group, settings, specs) -> list[tuple[str, concepts.ConceptData, dict[str, Pooled]]]:
    """(dataset name, concepts, per-hook rows): the world's word categories, or SAEBench's datasets on the hub."""
    if hub_concepts.on_hub(group):
        names = group.suite.saebench.hub.tpp_datasets
        return [(n, *hub_concepts.probing_set(group, specs, n, settings.seed)) for n in names]
    data = concepts.build(
        "category",
        group.tokenizer,
        group.entries[0].info["model"],
        settings.contexts,
        settings.test_fraction,
        settings.max_classes,
        settings.seed,
    )
    acts = concepts.read_last(group.model, specs, data.items)
    return [("organism/category", data, {h: Pooled.single(a) for h, a in acts.items()})]


def run(group, settings) -> list[tuple[dict, dict]]:
    entries = [e for e in group.entries if e.out_spec is None]  # a transcoder's error term lives at another hook
    if not entries:
        return []
    model_name = entries[0].info["model"]
    specs = list({e.spec.name: e.spec for e in entries}.values())
    details: dict[str, list[dict]] = {e.name: [] for e in entries}
    names = []
    for name, data, acts in _datasets(group, settings, specs):
        names.append(name)
        labels = [it.label for it in data.items]
        train, test = data.rows(False), data.rows(True)
        for e in entries:
            encode, decode = codec(e.sae)
            overall, per_class, clean = tpp_scores(
                acts[e.spec.name], labels, train, test, data.classes, encode, decode, settings.n_values, settings.seed
            )
            classes = [{"class": c, "llm_clean_accuracy": clean[c], **per_class[c]} for c in data.classes]
            details[e.name].append({"dataset_name": name, **overall, "classes": classes})  # SAEBench: per dataset
    hub = hub_concepts.on_hub(group)
    config = {
        "model_name": model_name,
        "random_seed": settings.seed,
        "dataset_names": names,
        "n_values": settings.n_values,
    }
    if hub:
        config.update(hub_concepts.hub_sizes(group))
    else:
        config.update(
            contexts_per_item=settings.contexts, test_fraction=settings.test_fraction, max_classes=settings.max_classes
        )
    out = []
    for e in entries:
        rows = details[e.name]
        keys = [k for k in rows[0] if k.startswith("tpp_")]
        overall = {k: sum(r[k] for r in rows) / len(rows) for k in keys}  # mean over datasets (SAEBench)
        out.append((e.info, document(EVAL_TYPE_ID, config, {"tpp_metrics": overall}, rows, e.info)))
    return out


def codec(sae):
    """(encode, decode) on CPU tensors for a module on any device."""
    device = next(sae.parameters()).device

    def encode(x):
        return sae.encode(x.to(device)).cpu()

    def decode(f):
        return sae.decode(f.to(device)).cpu()

    return encode, decode
