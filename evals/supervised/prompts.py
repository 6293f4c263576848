"""IOI prompts with their attributes, the train/test split, and counterfactual pairs.

Attributes of a prompt (Makelov et al. §4): the **IO** name, the **S** name and **Pos**,
the order of the first two mentions (``ABB``: IO first, ``BAB``: S first).

The split follows the paper's code (``amakelov/sae``):

- *names*: the usable names are shuffled with the seed and halved. Evaluation prompts draw
  IO and S from the first half; counterfactual edits replace a name by one from the
  second half, so an edit always introduces a name the base prompt does not contain.
  The fitting prompts draw from all names, so every name has a supervised feature in
  both roles (a mean feature needs examples of its value);
- *templates*: fitting and evaluation use the training templates; the held-out templates
  (by default the last one, which the organism never saw in training) give a separate
  generalisation set on which sufficiency and necessity are measured again;
- fitting and evaluation prompts are different samples (different seeds).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from circuits.tasks import ioi
from circuits.tasks.base import TaskBatch
from circuits.tasks.vocabulary import FEMALE_NAMES, MALE_NAMES
from evals.supervised.config import PromptConfig
from sae.errors import SaelabError

ATTRIBUTES = ("IO", "S", "Pos")
POS_VALUES = ("ABB", "BAB")
_ORDER = {"ABB": "ABBA", "BAB": "BABA"}


@dataclass(frozen=True)
class PromptSpec:
    """One IOI prompt, before tokenization."""

    template: int
    io: str
    s: str
    pos: str  # "ABB" (IO mentioned first) or "BAB"
    place: str
    obj: str

    def render_args(self) -> tuple:
        a, b = (self.io, self.s) if self.pos == "ABB" else (self.s, self.io)
        return ioi.TEMPLATES[self.template], a, b, self.s, self.place, self.obj

    def value(self, attribute: str) -> str:
        return {"IO": self.io, "S": self.s, "Pos": self.pos}[attribute]

    def attrs(self) -> dict:
        return {
            "IO": self.io,
            "S": self.s,
            "Pos": self.pos,
            "order": _ORDER[self.pos],
            "place": self.place,
            "object": self.obj,
            "template": self.template,
        }


@dataclass(frozen=True)
class Split:
    """Names and templates of each part of the evaluation."""

    names: tuple[str, ...]  # every usable name: the supervised features' vocabulary
    base_names: tuple[str, ...]  # IO/S of evaluation prompts
    counterfactual_names: tuple[str, ...]  # names edits introduce
    fit_templates: tuple[int, ...]
    heldout_templates: tuple[int, ...]
    places: tuple[str, ...]
    objects: tuple[str, ...]

    def describe(self) -> dict:
        return {
            "names": list(self.names),
            "base_names": list(self.base_names),
            "counterfactual_names": list(self.counterfactual_names),
            "fit_templates": list(self.fit_templates),
            "heldout_templates": list(self.heldout_templates),
        }


def make_split(tokenizer, cfg: PromptConfig) -> Split:
    names = sorted(ioi.usable(tokenizer, ioi.NAMES))
    if len(names) < 8:
        raise SaelabError(f"the tokenizer has only {len(names)} single-token names; the evaluation needs at least 8")
    shuffled = list(names)
    random.Random(cfg.seed).shuffle(shuffled)
    half = len(shuffled) // 2
    n_templates = len(ioi.TEMPLATES)
    heldout = tuple(cfg.heldout_templates) if cfg.heldout_templates is not None else (n_templates - 1,)
    bad = [t for t in heldout if not 0 <= t < n_templates]
    if bad:
        raise SaelabError(f"held-out template ids {bad} out of range (there are {n_templates} templates)")
    fit = tuple(t for t in range(n_templates) if t not in heldout)
    if not fit:
        raise SaelabError("every template is held out; keep at least one for fitting")
    places, objects = ioi.usable(tokenizer, ioi.PLACES), ioi.usable(tokenizer, ioi.OBJECTS)
    if not places or not objects:
        raise SaelabError("the tokenizer has no single-token places or objects for IOI prompts")
    return Split(
        names=tuple(names),
        base_names=tuple(sorted(shuffled[:half])),
        counterfactual_names=tuple(sorted(shuffled[half:])),
        fit_templates=fit,
        heldout_templates=heldout,
        places=tuple(places),
        objects=tuple(objects),
    )


def name_pairs(n: int, names: Sequence[str], rng: random.Random) -> list[tuple[str, str]]:
    """``n`` (IO, S) pairs, IO ≠ S, in rounds in which every name is IO once and S once, so
    any ``len(names)`` consecutive prompts give every name a feature in both roles."""
    if len(names) < 2:
        raise SaelabError("IOI prompts need at least two names")
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        ios, ss = list(names), list(names)
        rng.shuffle(ios)
        rng.shuffle(ss)
        while clash := [j for j in range(len(ss)) if ios[j] == ss[j]]:
            j = clash[0]
            swaps = [i for i in range(len(ss)) if i != j and ss[i] != ios[j] and ss[j] != ios[i]]
            if not swaps:
                rng.shuffle(ss)
                continue
            k = rng.choice(swaps)
            ss[j], ss[k] = ss[k], ss[j]
        pairs += zip(ios, ss, strict=True)
    return pairs[:n]


def sample_specs(n: int, names: Sequence[str], templates: Sequence[int], split: Split, seed: int) -> list[PromptSpec]:
    """``n`` prompts; templates cycle and orders alternate so every prefix is balanced."""
    rng = random.Random(seed)
    out = []
    for i, (io, s) in enumerate(name_pairs(n, names, rng)):
        out.append(
            PromptSpec(
                template=templates[i % len(templates)],
                io=io,
                s=s,
                pos=POS_VALUES[(i // len(templates)) % 2],
                place=rng.choice(split.places),
                obj=rng.choice(split.objects),
            )
        )
    return out


def counterfactual(specs: Sequence[PromptSpec], attribute: str, names: Sequence[str], seed: int) -> list[PromptSpec]:
    """Each prompt with one attribute changed: IO or S to a name (from ``names``) the prompt
    does not contain, or Pos flipped (names kept)."""
    rng = random.Random(seed)
    out = []
    for p in specs:
        if attribute == "Pos":
            out.append(replace(p, pos="BAB" if p.pos == "ABB" else "ABB"))
            continue
        choices = [n for n in names if n not in (p.io, p.s)]
        new = rng.choice(choices)
        out.append(replace(p, io=new) if attribute == "IO" else replace(p, s=new))
    return out


def to_batch(tokenizer, specs: Sequence[PromptSpec], names: Sequence[str], seed: int) -> TaskBatch:
    """Tokenized prompts (with ABC corruptions, which ``TaskBatch`` carries) and attributes."""
    rng = random.Random(seed)
    corrupts = []
    for p in specs:
        x, y, z = rng.sample(list(names), 3)
        corrupts.append((ioi.TEMPLATES[p.template], x, y, z, p.place, p.obj))
    return ioi.build_batch(tokenizer, [p.render_args() for p in specs], corrupts, [p.attrs() for p in specs])


@dataclass
class PromptSet:
    specs: list[PromptSpec]
    batch: TaskBatch

    def __len__(self) -> int:
        return len(self.specs)


@dataclass
class Prompts:
    """Every prompt set of one evaluation."""

    split: Split
    fit: PromptSet
    eval: PromptSet
    heldout: PromptSet | None
    counterfactuals: dict[str, PromptSet]  # attribute → eval prompts with that attribute changed


def build_prompts(tokenizer, cfg: PromptConfig, attributes: Sequence[str] = ATTRIBUTES) -> Prompts:
    split = make_split(tokenizer, cfg)
    s = cfg.seed * 1000

    def prompt_set(specs: list[PromptSpec], seed: int) -> PromptSet:
        return PromptSet(specs, to_batch(tokenizer, specs, split.names, seed))

    fit = prompt_set(sample_specs(cfg.n_fit, split.names, split.fit_templates, split, s + 1), s + 2)
    base = sample_specs(cfg.n_eval, split.base_names, split.fit_templates, split, s + 3)
    evaluation = prompt_set(base, s + 4)
    heldout = None
    if cfg.n_heldout_template > 0:
        heldout = prompt_set(
            sample_specs(cfg.n_heldout_template, split.base_names, split.heldout_templates, split, s + 5), s + 6
        )
    cfs = {
        a: prompt_set(counterfactual(base, a, split.counterfactual_names, s + 7 + i), s + 4)
        for i, a in enumerate(attributes)
    }
    return Prompts(split, fit, evaluation, heldout, cfs)


# ------------------------------------------------------------------ attribute codes


@dataclass(frozen=True)
class AttributeVocab:
    """Supervised features of the ``independent`` parametrisation: one per IO name, one per
    S name, one per Pos value (the bias ā is kept apart)."""

    names: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return 2 * len(self.names) + len(POS_VALUES)

    def offset(self, attribute: str) -> int:
        return {"IO": 0, "S": len(self.names), "Pos": 2 * len(self.names)}[attribute]

    def feature(self, attribute: str, value: str) -> int:
        values = POS_VALUES if attribute == "Pos" else self.names
        try:
            return self.offset(attribute) + values.index(value)
        except ValueError:
            raise SaelabError(f"{attribute} value {value!r} is not in the supervised features' vocabulary") from None

    def labels(self) -> list[str]:
        return [f"IO={n}" for n in self.names] + [f"S={n}" for n in self.names] + [f"Pos={p}" for p in POS_VALUES]

    def indices(self, specs: Sequence[PromptSpec]) -> torch.Tensor:
        """``[n, 3]`` feature index of each prompt's IO, S and Pos."""
        return torch.tensor([[self.feature(a, p.value(a)) for a in ATTRIBUTES] for p in specs], dtype=torch.long)

    def one_hot(self, specs: Sequence[PromptSpec]) -> torch.Tensor:
        """``[n, n_features]`` 0/1 codes: the active supervised features of each prompt."""
        idx = self.indices(specs)
        out = torch.zeros(len(specs), self.n_features)
        out.scatter_(1, idx, 1.0)
        return out


def gender_of(name: str) -> str | None:
    return "male" if name in MALE_NAMES else "female" if name in FEMALE_NAMES else None
