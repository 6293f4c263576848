"""Prompts whose concepts the organism's world fixes: word categories, a name's gender, city, job.

Every prompt ends at the position that is read: the word itself for a word's category
(``"... Say it again: Paris"``), the token after the name for gender (``"... Anna lost"``,
where the model must choose his/her), and the token where the model predicts the fact for
city and job (``"... Anna lives in"``, ``"... Anna works as a"``). Each word or name gets
``contexts`` prompts, each after a different sentence of the organism's own corpus, so a
probe cannot key on one fixed context.

Facts are random per name, so a name-level concept is split **by name** (train and test
names disjoint): a probe passes only if the model's representation of the fact is shared
across names. Word categories are split by word for the same reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from sae.errors import SaelabError

BOS_SEP = " "


@dataclass
class Item:
    tokens: list[int]
    group: str  # the word or name (the split unit)
    label: str  # its class


@dataclass
class ConceptData:
    """Items of one dataset (``category``, ``gender``, ``city``, ``job``) and its classes, most populous first."""

    name: str
    items: list[Item]
    classes: list[str]
    test_groups: set[str] = field(default_factory=set)

    def rows(self, test: bool) -> list[int]:
        return [i for i, it in enumerate(self.items) if (it.group in self.test_groups) == test]


def world_categories() -> dict[str, tuple[str, ...]]:
    from organism import world

    return {
        "city": world.CITIES,
        "job": world.JOBS,
        "food": world.FOODS,
        "color": world.COLORS,
        "animal": world.ANIMALS,
        "day": world.DAYS,
        "month": world.MONTHS,
        "number": world.NUMBER_WORDS,
    }


def world_seed(model_name: str) -> int:
    """The world the model was trained on (its corpus config's ``world_seed``)."""
    from organism.provider import corpus_config
    from sae import providers

    provider = providers.find(model_name)
    if provider is None or not (provider.model_dir / "training.json").is_file():
        raise SaelabError(
            f"SAEBench's concept evals need an organism model (its world is known); {model_name!r} is not one"
        )
    return corpus_config(provider.model_dir).world_seed


def contexts(n: int, seed: int, max_tokens: int = 24) -> list[str]:
    """``n`` sentences of the organism's corpus (seeded), each short enough to prefix a prompt."""
    from organism.corpus import sentences

    out, stream = [], sentences(seed)
    while len(out) < n:
        _family, text = next(stream)
        if len(text.split()) <= max_tokens:
            out.append(text)
    return out


class Encoder:
    """Text → BOS-led token ids, refusing prompts whose read token is unknown to the tokenizer."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.unk = tokenizer.unk_token_id

    def __call__(self, text: str) -> list[int] | None:
        ids = [self.tok.bos_token_id, *self.tok(text)["input_ids"]]
        return None if ids[-1] == self.unk else ids

    def single(self, word: str) -> bool:
        ids = self.tok(BOS_SEP + word)["input_ids"]
        return len(ids) == 1 and ids[0] != self.unk


def _split(data: ConceptData, test_fraction: float, rng: random.Random) -> ConceptData:
    """Per class, a ``test_fraction`` share of its groups (at least one, at most all but one) to test."""
    by_class: dict[str, list[str]] = {}
    for it in data.items:
        by_class.setdefault(it.label, [])
        if it.group not in by_class[it.label]:
            by_class[it.label].append(it.group)
    for groups in by_class.values():
        if len(groups) < 2:
            continue
        order = sorted(groups)
        rng.shuffle(order)
        n_test = min(max(1, round(test_fraction * len(order))), len(order) - 1)
        data.test_groups.update(order[:n_test])
    return data


def build(
    name: str, tokenizer, model_name: str, n_contexts: int, test_fraction: float, max_classes: int | None, seed: int
) -> ConceptData:
    """One concept dataset of the organism's world (see the module docstring)."""
    from circuits.tasks.vocabulary import FEMALE_NAMES, NAMES
    from organism import world

    enc = Encoder(tokenizer)
    rng = random.Random(f"{seed}:{name}")
    ctx = contexts(n_contexts * 4, seed)
    items: list[Item] = []

    def add(group: str, label: str, template: str) -> None:
        for c in rng.sample(ctx, n_contexts):
            ids = enc(template.format(c=c))
            if ids is not None:
                items.append(Item(ids, group, label))

    if name == "category":
        for cat, words in world_categories().items():
            for w in words:
                if enc.single(w):
                    add(w, cat, "{c} Say it again: " + w)
    elif name == "gender":
        for n in NAMES:
            add(n, "female" if n in FEMALE_NAMES else "male", "{c} " + n + " lost")
    elif name in ("city", "job"):
        facts = world.facts(world_seed(model_name))
        template = {"city": " lives in", "job": " works as a"}[name]
        for n in NAMES:
            add(n, facts[n][name], "{c} " + n + template)
    else:
        raise SaelabError(f"unknown concept dataset {name!r}")
    counts: dict[str, int] = {}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    classes = sorted(counts, key=lambda c: (-counts[c], c))
    if max_classes is not None:
        classes = classes[:max_classes]
    keep = set(classes)
    data = ConceptData(name, [it for it in items if it.label in keep], classes)
    return _split(data, test_fraction, rng)


@dataclass
class Pooled:
    """Per-position rows of a set of prompts or texts and which one each row belongs to; ``pool`` means them.

    The organism's prompts are read at one position (one row each: pooling is the identity);
    the hub path's texts are mean-pooled over their non-special positions, as SAEBench does."""

    rows: torch.Tensor  # [n_positions, d]
    owner: torch.Tensor  # [n_positions] prompt index
    n: int

    @classmethod
    def single(cls, rows: torch.Tensor) -> Pooled:
        """One row per prompt."""
        return cls(rows, torch.arange(rows.shape[0]), rows.shape[0])

    def counts(self) -> torch.Tensor:
        return torch.bincount(self.owner, minlength=self.n).clamp_min(1)

    def pool(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        rows = self.rows if rows is None else rows
        out = torch.zeros(self.n, rows.shape[1], dtype=rows.dtype)
        out.index_add_(0, self.owner, rows)
        return out / self.counts().to(rows.dtype)[:, None]

    def pool_map(self, fn, chunk: int = 4096) -> torch.Tensor:
        """Mean per prompt of ``fn(rows)``, computed ``chunk`` rows at a time (an SAE's codes of every position
        of 5000 texts would not fit at once)."""
        out = None
        for lo in range(0, self.rows.shape[0], chunk):
            y = fn(self.rows[lo : lo + chunk])
            if out is None:
                out = torch.zeros(self.n, y.shape[1], dtype=y.dtype)
            out.index_add_(0, self.owner[lo : lo + chunk], y)
        if out is None:
            raise SaelabError("no positions to pool")
        return out / self.counts().to(out.dtype)[:, None]


@torch.no_grad()
def pooled_codes(sae, data: Pooled) -> torch.Tensor:
    """An SAE's codes at every row, pooled per prompt (SAEBench encodes each position, then means)."""
    device = next(sae.parameters()).device
    return data.pool_map(lambda rows: sae.encode(rows.to(device)).float().cpu())


@torch.no_grad()
def read_masked(
    model, specs: list, tokens: torch.Tensor, mask: torch.Tensor, batch_size: int = 64, bar=None
) -> dict[str, Pooled]:
    """Per hook, the rows of every sequence of ``tokens`` [n, L] where ``mask`` is True (right padding is never
    read: causal attention leaves the real positions untouched)."""
    device = next(model.parameters()).device
    rows: dict[str, list[torch.Tensor]] = {s.name: [] for s in specs}
    owner: list[torch.Tensor] = []
    tl_names = sorted({s.tl_name for s in specs})
    for lo in range(0, tokens.shape[0], batch_size):
        chunk, m = tokens[lo : lo + batch_size], mask[lo : lo + batch_size]
        width = int(m.any(0).nonzero().max()) + 1 if m.any() else 1
        chunk, m = chunk[:, :width], m[:, :width]
        cache = run_capturing(model, chunk.to(device), tl_names)
        for s in specs:
            rows[s.name].append(s.read(cache[s.tl_name])[m.to(device)].float().cpu())
        owner.append((torch.arange(chunk.shape[0])[:, None] + lo).expand(-1, width)[m])
        if bar is not None:
            bar.update(chunk.shape[0])
    own = torch.cat(owner)
    return {k: Pooled(torch.cat(v), own, tokens.shape[0]) for k, v in rows.items()}


@torch.no_grad()
def read_last(model, specs: list, items: list[Item], batch_size: int = 128) -> dict[str, torch.Tensor]:
    """``{hook name: [n_items, d_in]}``: each prompt's activation at its last token (right-padded batches:
    causal attention leaves the real positions untouched)."""
    device = next(model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {s.name: [] for s in specs}
    tl_names = sorted({s.tl_name for s in specs})
    for lo in range(0, len(items), batch_size):
        chunk = items[lo : lo + batch_size]
        width = max(len(it.tokens) for it in chunk)
        tokens = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, it in enumerate(chunk):
            tokens[i, : len(it.tokens)] = torch.tensor(it.tokens)
            tokens[i, len(it.tokens) :] = it.tokens[-1]  # any id: never read
        last = torch.tensor([len(it.tokens) - 1 for it in chunk])
        cache = run_capturing(model, tokens.to(device), tl_names)
        rows = torch.arange(len(chunk))
        for s in specs:
            out[s.name].append(s.read(cache[s.tl_name])[rows, last.to(device)].float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def run_capturing(model, tokens: torch.Tensor, tl_names) -> dict[str, torch.Tensor]:
    """One forward pass of ``tokens``; the (detached) activations at the TransformerLens hooks ``tl_names``."""
    cache: dict[str, torch.Tensor] = {}

    def capture(name):
        def hook(act, hook=None):
            cache[name] = act.detach()
            return act

        return hook

    model.run_with_hooks(tokens, fwd_hooks=[(n, capture(n)) for n in tl_names])
    return cache
