"""Autointerp's contexts: activating and non-activating windows of the organism's text per latent.

One pass over held-out text (the suite's text source and seed; ``context_size`` tokens a
row) records, for a sample of live latents, the activation at every token (BOS and
padding zeroed, as SAEBench masks special tokens). Windows are ±``buffer`` tokens around a
centre (SAEBench's ``index_with_buffer``; centres at least ``buffer`` from either end);
BOS/padding tokens are dropped from a window's text.

Per latent (sae-bench 0.6.0 ``autointerp/main.py`` ``gather_data``; eai-delphi 0.1.3
``latents/samplers.py``):

- **activating windows**: every peak, strongest first, no two peaks of one row within
  ``buffer`` of each other (SAEBench ``get_k_largest_indices(no_overlap=True)``); up to
  ``max_examples`` kept;
- **delphi**: train and test examples drawn by quantile (``split_quantiles``: the
  descending list cut into ``n_quantiles`` even slices, ``n // n_quantiles`` random picks
  each); **deviation**: test examples are drawn from the windows the train sample did not
  take (delphi draws both from the whole list, so they can repeat);
  **non-activating windows**: random windows in which the latent is zero throughout
  (delphi's ``non_activating_source="random"``), a train set (for the statistical
  baseline's contrast; delphi's explainer sees none) and a disjoint test set;
- **SAEBench**: the top ``n_top`` peaks, split at random into generation and scoring;
  importance-weighted peaks (probability ∝ a², among positions below the weakest top
  peak) likewise; ``n_random`` uniformly random windows for scoring. As in SAEBench, a
  random window is labelled non-activating whatever the latent does there (the windows
  that do fire are counted in the details).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from sae.errors import SaelabError


@dataclass
class Window:
    """One window: its tokens (strings, BOS dropped) and the latent's activation at each."""

    tokens: list[str]
    acts: list[float]
    kind: str  # top | quantile | iw | random | non_activating
    quantile: int | None = None
    where: tuple[int, int] = (0, 0)  # (row, centre) in the harvested text

    @property
    def max_act(self) -> float:
        return max(self.acts, default=0.0)

    def text(self) -> str:
        return "".join(self.tokens)


@dataclass
class LatentContexts:
    latent: int
    max_activation: float
    n_activating_windows: int
    delphi_train: list[Window] = field(default_factory=list)
    delphi_test: list[Window] = field(default_factory=list)
    non_activating_train: list[Window] = field(default_factory=list)
    non_activating_test: list[Window] = field(default_factory=list)
    saebench_generation: list[Window] = field(default_factory=list)
    saebench_scoring: list[Window] = field(default_factory=list)  # shuffled
    saebench_active: list[bool] = field(default_factory=list)  # SAEBench's label per scoring window
    saebench_random_firing: int = 0  # random scoring windows where the latent does fire
    top_max: float = 0.0  # the largest activation in SAEBench's top windows (its act_threshold's base)


@dataclass
class Harvested:
    """Token strings ``[n_rows, T]``, a keep mask, and per SAE the sampled latents' activations."""

    tokens: list[list[str]]
    keep: torch.Tensor  # [n_rows, T] bool
    acts: dict[str, torch.Tensor]  # SAE name → [n_rows, T, n_latents]
    latents: dict[str, list[int]]  # SAE name → latent ids (columns of acts)


def candidate_latents(d_sae: int, densities, n: int, seed: int) -> list[int]:
    """``n`` latents in a seeded random order among those alive in the suite's pass (all if unknown)."""
    alive = [i for i in range(d_sae) if densities is None or densities[i] > 0]
    rng = random.Random(f"{seed}:autointerp:latents")
    rng.shuffle(alive)
    return alive[:n]


@torch.no_grad()
def harvest(model, tokenizer, saes: dict[str, tuple], batches, latents: dict[str, list[int]], progress=None):
    """Run ``batches`` of token ids through ``model``; ``saes``: name → (sae, HookSpec)."""
    from sae.harvest import Harvester

    hooks = sorted({spec.name for _sae, spec in saes.values()})
    harvester = Harvester(model, tokenizer, hooks)
    vocab = [str(t) for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    rows, keeps, acts = [], [], {name: [] for name in saes}
    for tokens in batches:
        keep = harvester.mask(tokens)
        full = harvester.full(tokens)
        for name, (sae, spec) in saes.items():
            x = full[spec.name]
            device = next(sae.parameters()).device
            codes = sae.encode(x.flatten(0, 1).to(device, sae.W_dec.dtype)).float().cpu()
            codes = codes[:, latents[name]].reshape(*tokens.shape, -1)
            codes[~keep.cpu()] = 0
            acts[name].append(codes)
        rows += [[vocab[int(i)] for i in row] for row in tokens.tolist()]
        keeps.append(keep.cpu())
        if progress is not None:
            progress.update(1)
    if not rows:
        raise SaelabError("autointerp: the text source produced no token")
    return Harvested(rows, torch.cat(keeps), {n: torch.cat(a) for n, a in acts.items()}, latents)


def window(h: Harvested, values: torch.Tensor, row: int, centre: int, buffer: int, kind: str, **kw) -> Window:
    lo, hi = centre - buffer, centre + buffer + 1
    keep = h.keep[row, lo:hi].tolist()
    toks = [t for t, k in zip(h.tokens[row][lo:hi], keep, strict=True) if k]
    acts = [float(a) for a, k in zip(values[row, lo:hi].tolist(), keep, strict=True) if k]
    return Window(toks, acts, kind, where=(row, centre), **kw)


def peaks(values: torch.Tensor, buffer: int, k: int | None = None) -> list[tuple[int, int]]:
    """SAEBench's ``get_k_largest_indices(no_overlap=True)`` among positive values: (row, centre) pairs."""
    inner = values[:, buffer : values.shape[1] - buffer]
    flat = inner.flatten()
    positive = int((flat > 0).sum())
    order = flat.argsort(descending=True, stable=True)[:positive].tolist()
    width = inner.shape[1]
    out, seen = [], set()
    for idx in order:
        row, col = divmod(idx, width)
        col += buffer
        if (row, col) in seen:
            continue
        out.append((row, col))
        seen.update((row, col + o) for o in range(-buffer, buffer + 1))
        if k is not None and len(out) == k:
            break
    return out


def split_quantiles(examples: list, n_quantiles: int, n_samples: int, rng: random.Random) -> list[tuple]:
    """delphi's ``split_quantiles``: ``n_samples // n_quantiles`` random picks from each even slice of the
    strongest-first ``examples``, as (example, quantile) pairs."""
    size = len(examples) // n_quantiles
    per = n_samples // n_quantiles
    out = []
    for q in range(n_quantiles):
        part = examples[q * size : (q + 1) * size]
        pick = part if len(part) < per else rng.sample(part, per)
        out += [(x, q) for x in pick]
    return out


def _random_centres(h: Harvested, buffer: int, n: int, rng: random.Random, accept, limit: int = 50) -> list:
    rows, width = len(h.tokens), len(h.tokens[0])
    out, seen = [], set()
    for _ in range(n * limit):
        if len(out) == n:
            break
        where = (rng.randrange(rows), rng.randrange(buffer, width - buffer))
        if where not in seen and accept(*where):
            seen.add(where)
            out.append(where)
    return out


def latent_contexts(h: Harvested, name: str, column: int, cfg, seed: int) -> LatentContexts | None:
    """Every sample of one latent (None when it has fewer activating windows than ``cfg.min_examples``)."""
    values = h.acts[name][..., column]
    latent = h.latents[name][column]
    buffer = cfg.buffer
    found = peaks(values, buffer)
    if len(found) < cfg.min_examples:
        return None
    rng = random.Random(f"{seed}:autointerp:{name}:{latent}")
    ranked = found[: cfg.max_examples]
    out = LatentContexts(latent, float(values.max()), len(found))

    # delphi: quantile samples, train and test disjoint
    train = split_quantiles(ranked, cfg.n_quantiles, cfg.n_examples_train, rng)
    taken = {where for where, _q in train}
    test = split_quantiles([p for p in ranked if p not in taken], cfg.n_quantiles, cfg.n_examples_test, rng)
    out.delphi_train = [window(h, values, r, c, buffer, "quantile", quantile=q) for (r, c), q in train]
    out.delphi_test = [window(h, values, r, c, buffer, "quantile", quantile=q) for (r, c), q in test]

    # delphi: random non-activating windows (the latent is zero throughout)
    def silent(row: int, centre: int) -> bool:
        return bool((values[row, centre - buffer : centre + buffer + 1] == 0).all())

    centres = _random_centres(h, buffer, 2 * cfg.n_non_activating, rng, silent)
    quiet = [window(h, values, r, c, buffer, "non_activating") for r, c in centres]
    out.non_activating_train, out.non_activating_test = quiet[: len(quiet) // 2], quiet[len(quiet) // 2 :]

    # SAEBench: top, importance-weighted and random windows
    n_top = cfg.n_top_ex_for_generation + cfg.n_top_ex_for_scoring
    top = [window(h, values, r, c, buffer, "top") for r, c in found[:n_top]]
    threshold = min(values[r, c] for r, c in found[:n_top])
    below = torch.where(values >= threshold, torch.zeros_like(values), values)[:, buffer : values.shape[1] - buffer]
    n_iw = cfg.n_iw_sampled_ex_for_generation + cfg.n_iw_sampled_ex_for_scoring
    weights = below.flatten().double().pow(2)
    iw = []
    n_iw = min(n_iw, int((weights > 0).sum()))  # SAEBench skips a latent with none; we use what there is
    if n_iw:
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        picks = torch.multinomial(weights, n_iw, replacement=False, generator=gen).tolist()
        width = below.shape[1]
        iw = [window(h, values, i // width, i % width + buffer, buffer, "iw") for i in picks]
    rng.shuffle(top)
    rng.shuffle(iw)
    n_top_gen, n_iw_gen = cfg.n_top_ex_for_generation, cfg.n_iw_sampled_ex_for_generation
    out.saebench_generation = sorted(top[:n_top_gen] + iw[:n_iw_gen], key=lambda w: w.max_act, reverse=True)
    any_where = _random_centres(h, buffer, cfg.n_random_ex_for_scoring, rng, lambda r, c: True)
    randoms = [window(h, values, r, c, buffer, "random") for r, c in any_where]
    out.saebench_random_firing = sum(w.max_act > 0 for w in randoms)
    out.top_max = max(w.max_act for w in top)
    act_threshold = cfg.act_threshold_frac * out.top_max
    scoring = [(w, w.max_act > act_threshold) for w in top[n_top_gen:] + iw[n_iw_gen:]]
    scoring += [(w, False) for w in randoms]  # SAEBench gives random windows zero activations
    rng.shuffle(scoring)
    out.saebench_scoring = [w for w, _ in scoring]
    out.saebench_active = [a for _, a in scoring]
    return out


def highlight(tokens: list[str], marked: list[bool], merge: bool = True) -> str:
    """delphi's ``_highlight``: runs of marked tokens wrapped in one ``<< >>`` pair; ``merge=False``:
    SAEBench's ``Example.to_str(mark_toks=True)``, each marked token wrapped on its own."""
    if not merge:
        return "".join(f"<<{t}>>" if m else t for t, m in zip(tokens, marked, strict=True))
    out, i = [], 0
    while i < len(tokens):
        if marked[i]:
            out.append("<<")
            while i < len(tokens) and marked[i]:
                out.append(tokens[i])
                i += 1
            out.append(">>")
        else:
            out.append(tokens[i])
            i += 1
    return "".join(out)
