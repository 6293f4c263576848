"""Controls for every SAEBench evaluation: a floor and a ceiling beside each SAE's headline number.

Per SAE (at its hook), measured on a sample of the organism's corpus (``sample_rows``: every
non-BOS position of ``SAMPLE_SENTENCES`` corpus sentences, a seed of its own), or on the hub
path of as many texts of SAEBench's core dataset (``hub_sample_rows``):

- ``random_decoder``: an SAE of the same width whose decoder rows are random unit vectors
  (seeded Gaussian, normalised), encoder its transpose, b_dec the sample's mean row, and
  TopK at the SAE's **measured** L0 on the sample (round(L0), at least 1) after a ReLU:
  a dictionary with the same size and sparsity that learned nothing;
- ``pca``: the top-r principal components of the sample as a dictionary of r = round(L0)
  latents (codes (x − μ)·V_r, signed and dense; decode f V_r + μ);
- ``raw_probe``, where the eval probes: the raw activations as a dictionary (identity
  encoder and decoder, one latent per dimension) for SCR, TPP and RAVEL; for sparse
  probing the eval's own raw-activation probe (``llm_top_1_test_accuracy``). Core and
  absorption have none.

Each control runs through the evaluation's own ``run`` (the same prompts, probes, splits
and seeds), and its headline metric is recorded beside the SAE's; its whole document (every
dataset's numbers) is written to ``OUT/saebench/<eval_type_id>/controls/``. Core's headline
(explained variance, the lab's formula 1 − E‖x−x̂‖²/(E‖x‖² − ‖E x‖²)) is computed on the
sample for the SAE and both controls alike, so the three share their data; the SAE's own
core document (held-out pass) is unchanged. The random control is not assumed to sit at
chance: its number is measured and reported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

import torch

from evals.saebench import EVALS
from evals.saebench.hub_concepts import on_hub

SAMPLE_SENTENCES = 256
SAMPLE_SEED = 30011
CONTROLS = ("random_decoder", "pca")
#: an SAE info's key for its controls' full documents until they are written (eval → [(control info, document)])
DOCUMENTS = "_control_documents"
#: eval → (category, metric) of its headline; ``{n}``: the largest of the eval's n_values up to 20
HEADLINES = {
    "core": ("reconstruction_quality", "explained_variance_saelab"),
    "sparse_probing": ("sae", "sae_top_1_test_accuracy"),
    "absorption": ("mean", "mean_absorption_fraction_score"),
    "scr": ("scr_metrics", "scr_metric_threshold_{n}"),
    "tpp": ("tpp_metrics", "tpp_threshold_{n}_total_metric"),
    "ravel": ("ravel", "disentanglement_score"),
    "autointerp": ("delphi", "detection_balanced_accuracy"),
}
RAW = {"scr", "tpp", "ravel"}  # evals where the raw activations run as a dictionary


class Dictionary(torch.nn.Module):
    """A fixed dictionary with an SAE's interface (``encode``, ``decode``, ``W_dec``)."""

    def __init__(self, W_dec: torch.Tensor, b_dec: torch.Tensor, k: int | None, relu: bool):
        super().__init__()
        self.W_dec = torch.nn.Parameter(W_dec.float(), requires_grad=False)
        self.b_dec = torch.nn.Parameter(b_dec.float(), requires_grad=False)
        self.k, self.relu = k, relu

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = (x.float() - self.b_dec) @ self.W_dec.T
        if self.relu:
            pre = pre.relu()
        if self.k is not None and self.k < pre.shape[-1]:
            top = pre.topk(self.k, dim=-1)
            pre = torch.zeros_like(pre).scatter(-1, top.indices, top.values)
        return pre

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f.float() @ self.W_dec + self.b_dec


def random_decoder(d_sae: int, mean: torch.Tensor, l0: float, seed: int) -> Dictionary:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_sae, mean.shape[0], generator=g, dtype=torch.float64)
    W = W / W.norm(dim=1, keepdim=True)
    return Dictionary(W, mean, max(1, round(l0)), relu=True)


def pca(x: torch.Tensor, rank: int) -> Dictionary:
    x = x.double()
    mean = x.mean(0)
    _u, _s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return Dictionary(vh[: max(1, min(rank, vh.shape[0]))], mean, None, relu=False)


def identity(d_in: int) -> Dictionary:
    return Dictionary(torch.eye(d_in), torch.zeros(d_in), None, relu=False)


@torch.no_grad()
def sample_rows(model, tokenizer, specs: list, n_sentences: int = SAMPLE_SENTENCES, seed: int = SAMPLE_SEED):
    """{hook name: [rows, d_in]}: every non-BOS position of ``n_sentences`` corpus sentences."""
    from evals.saebench import concepts

    items = []
    for text in concepts.contexts(n_sentences, seed, max_tokens=30):
        ids = [tokenizer.bos_token_id, *tokenizer(text)["input_ids"]]
        items.append(ids)
    device = next(model.parameters()).device
    out = {s.name: [] for s in specs}
    for lo in range(0, len(items), 64):
        chunk = items[lo : lo + 64]
        width = max(len(p) for p in chunk)
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.bool)
        for i, p in enumerate(chunk):
            tokens[i, : len(p)] = torch.tensor(p)
            mask[i, 1 : len(p)] = True
        cache = concepts.run_capturing(model, tokens.to(device), {s.tl_name for s in specs})
        for s in specs:
            out[s.name].append(s.read(cache[s.tl_name])[mask.to(device)].float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def hub_sample_rows(group, specs: list, n_texts: int = SAMPLE_SENTENCES) -> dict[str, torch.Tensor]:
    """The hub path's sample: every non-special position of the first ``n_texts`` texts of SAEBench's core
    dataset (``saebench.hub.core_dataset``), each cut to ``hub.context_length`` tokens."""
    import itertools

    from evals.saebench import concepts, hub_concepts
    from sae.text import iter_texts

    source = hub_concepts.hub_text(group.suite, group.entries[0].info["model"], "core")
    texts = list(itertools.islice(iter_texts(source), n_texts))
    tokens, mask = hub_concepts.tokenize(group.tokenizer, texts, group.suite.saebench.hub.context_length)
    pooled = concepts.read_masked(group.model, specs, tokens, mask, group.suite.saebench.hub.batch_size)
    return {k: p.rows for k, p in pooled.items()}


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """The lab's 1 − E‖x−x̂‖² / (E‖x‖² − ‖E x‖²)."""
    x, x_hat = x.double(), x_hat.double()
    total = x.pow(2).sum(1).mean() - x.mean(0).pow(2).sum()
    return float(1 - (x - x_hat).pow(2).sum(1).mean() / total)


@dataclass
class ControlSet:
    """One SAE's controls and what they were built from."""

    l0: float
    dictionaries: dict[str, torch.nn.Module]  # control name → dictionary
    core: dict[str, float]  # control name (and "sae") → explained variance on the sample


def build(entry, x: torch.Tensor, seed: int) -> ControlSet:
    """The controls of one SAE from its hook's sample rows ``x``."""
    device = next(entry.sae.parameters()).device
    with torch.no_grad():
        codes = entry.sae.encode(x.to(device)).float().cpu()
        recon = entry.sae.decode(codes.to(device)).float().cpu()
    l0 = float((codes != 0).sum(1).double().mean())
    d = {
        "random_decoder": random_decoder(codes.shape[1], x.double().mean(0), l0, seed),
        "pca": pca(x, max(1, round(l0))),
    }
    core = {"sae": explained_variance(x, recon)}
    for name, ctrl in d.items():
        with torch.no_grad():
            core[name] = explained_variance(x, ctrl.decode(ctrl.encode(x)))
    return ControlSet(l0, d, core)


def headline(name: str, settings) -> tuple[str, str] | None:
    """(category, metric) of an eval's headline (None: the eval names none)."""
    if name in HEADLINES:
        category, metric = HEADLINES[name]
    else:
        module = importlib.import_module(EVALS[name].partition(":")[0])
        if not hasattr(module, "HEADLINE"):
            return None
        category, metric = module.HEADLINE
    if "{n}" in metric:
        ns = list(getattr(settings, "n_values", [20]))
        small = [n for n in ns if n <= 20]
        metric = metric.format(n=max(small) if small else min(ns))
    return category, metric


def value(doc: dict, key: tuple[str, str] | None):
    if key is None or doc is None:
        return None
    return (doc.get("eval_result_metrics", {}).get(key[0]) or {}).get(key[1])


def run_controls(
    group, names: list[str], docs: dict[str, list[tuple[dict, dict]]], seed: int, evaluate, controls: bool = True
) -> dict[str, dict]:
    """SAE id → eval → {metric, sae, random_decoder, pca[, raw_probe]} (``controls`` False: metric and sae
    only); also stored as each SAE's ``info["saebench_controls"]`` (with the measured L0 and the PCA rank).
    ``evaluate(name, entries)`` runs one eval on other entries of the same model (``evals.saebench.run``)."""
    if not controls:
        table = {}
        for name in names:
            key = headline(name, getattr(group.suite.saebench, name, None))
            for info, doc in docs.get(name, []):
                if key is not None:
                    row = {"metric": "/".join(key), "sae": value(doc, key)}
                    table.setdefault(info["id"], {})[name] = row
                    info.setdefault("saebench_controls", {"headlines": {}})["headlines"][name] = row
        return table
    entries = [e for e in group.entries if e.out_spec is None]
    specs = list({e.spec.name: e.spec for e in entries}.values())
    x = (
        (hub_sample_rows(group, specs) if on_hub(group) else sample_rows(group.model, group.tokenizer, specs))
        if entries
        else {}
    )
    sets = {e.name: build(e, x[e.spec.name], seed) for e in entries}
    shadow = []  # (SAE entry, control name, EvalTarget of the control)
    for e in entries:
        for cname, ctrl in sets[e.name].dictionaries.items():
            shadow.append((e, cname, _target(e, cname, ctrl)))
        shadow.append((e, "raw_probe", _target(e, "raw_probe", identity(e.spec.d_in))))
    cfg = group.suite.saebench
    table: dict[str, dict] = {e.info["id"]: {} for e in entries}
    for name in names:
        settings = getattr(cfg, name, None)
        key = headline(name, settings)
        if key is None:
            continue
        own = {info["id"]: doc for info, doc in docs.get(name, [])}
        for e in entries:
            table[e.info["id"]][name] = {"metric": "/".join(key), "sae": value(own.get(e.info["id"]), key)}
        if name == "core":
            for e in entries:
                table[e.info["id"]][name] = {"metric": f"{key[1]} (control sample)", **sets[e.name].core}
            continue
        chosen = [(e, c, t) for e, c, t in shadow if c != "raw_probe" or name in RAW]
        if name == "core" or not chosen:
            continue
        results = {info["id"]: doc for info, doc in evaluate(name, [t for _e, _c, t in chosen])}
        for e, cname, t in chosen:
            table[e.info["id"]][name][cname] = value(results.get(t.info["id"]), key)
            if t.info["id"] in results:  # the whole document, written beside the SAE's (``run.write_all``)
                e.info.setdefault(DOCUMENTS, {}).setdefault(name, []).append((t.info, results[t.info["id"]]))
        if name == "sparse_probing":
            for e in entries:
                raw = value(own.get(e.info["id"]), ("llm", "llm_top_1_test_accuracy"))
                table[e.info["id"]][name]["raw_probe"] = raw
    for e in entries:
        e.info["saebench_controls"] = {
            "measured_l0": sets[e.name].l0,
            "pca_rank": max(1, round(sets[e.name].l0)),
            "random_decoder_k": max(1, round(sets[e.name].l0)),
            "headlines": table[e.info["id"]],
        }
    return table


def _target(entry, cname: str, ctrl: torch.nn.Module):
    info = {
        **{k: v for k, v in entry.info.items() if k not in {"metrics", "densities", "density_histogram"}},
        "id": f"{entry.info['id']}~{cname}",
        "name": f"{entry.name}~{cname}",
        "architecture": f"control:{cname}",
        "sae_dir": "",
    }
    return replace(entry, name=info["name"], sae=ctrl, info=info)
