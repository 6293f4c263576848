"""A seeded generator of the organism's training corpus: a small templated English world.

A document is a run of sentences, each drawn from one of fifteen families. IOI and
greater-than sentences come from ``circuits.tasks`` so the model learns exactly the
prompt distribution the circuit tools probe; the other families (counting, induction,
facts, dialogue, lists, calendar, comparisons, ...) give SAEs many distinct features.

IOI sentences never use a name pair that ``heldout_pair`` reserves for evaluation, nor
the template ``HELDOUT_IOI_TEMPLATE``, so held-out accuracy measures generalisation.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator
from functools import partial

from pydantic import Field, field_validator

from circuits.tasks import greater_than, ioi
from circuits.tasks.vocabulary import EVENT_NOUNS, NAMES, OBJECTS, PLACES
from organism import world
from sae.config import FrozenConfig

HELDOUT_IOI_TEMPLATE = len(ioi.TEMPLATES) - 1
TRAIN_IOI_TEMPLATES = tuple(i for i in range(len(ioi.TEMPLATES)) if i != HELDOUT_IOI_TEMPLATE)


def heldout_pair(a: str, b: str) -> bool:
    """True for the ~20% of unordered name pairs reserved for evaluation."""
    key = "|".join(sorted((a, b))).encode()
    return zlib.crc32(key) % 5 == 0


def training_pair(a: str, b: str) -> bool:
    return not heldout_pair(a, b)


# ---------------------------------------------------------------- sentence families


def ioi_example(rng: random.Random) -> tuple[str, dict]:
    """One training IOI sentence and its attributes (template id, IO, S)."""
    tid = rng.choice(TRAIN_IOI_TEMPLATES)
    while True:
        io, s = rng.sample(NAMES, 2)
        if training_pair(io, s):
            break
    a, b = (io, s) if rng.random() < 0.5 else (s, io)
    text, _ = ioi.render(ioi.TEMPLATES[tid], a, b, s, rng.choice(PLACES), rng.choice(OBJECTS))
    return f"{text} {io}.", {"template": tid, "IO": io, "S": s}


def _ioi(rng: random.Random) -> str:
    return ioi_example(rng)[0]


def _greater_than(rng: random.Random) -> str:
    start = rng.randrange(0, 99)
    end = rng.randrange(start + 1, 100)
    cc = rng.choice(greater_than.CENTURIES)
    noun = rng.choice(EVENT_NOUNS)
    return f"The {noun} lasted from the year {cc}{start:02d} to the year {cc}{end:02d}."


def _born(rng: random.Random) -> str:
    return f"{rng.choice(NAMES)} was born in the year {rng.randrange(11, 20)}{rng.randrange(100):02d}."


def _counting(rng: random.Random) -> str:
    start, length = rng.randrange(0, 90), rng.randrange(4, 9)
    return "Counting: " + ", ".join(str(start + i) for i in range(length)) + "."


def _number_words(rng: random.Random) -> str:
    start = rng.randrange(0, len(world.NUMBER_WORDS) - 4)
    stop = rng.randrange(start + 3, len(world.NUMBER_WORDS))
    words = list(world.NUMBER_WORDS[start : stop + 1])
    if rng.random() < 0.5:
        return "We counted " + " ".join(words) + "."
    return "We counted down " + " ".join(reversed(words)) + "."


def _arithmetic(rng: random.Random) -> str:
    a, b = rng.randrange(0, 10), rng.randrange(0, 10)
    return f"{a} plus {b} is {a + b}."


def _induction(rng: random.Random) -> str:
    phrase = " ".join(rng.sample(world.FILLER_WORDS, rng.randrange(3, 7)))
    return f"Say it again: {phrase}. Again: {phrase}."


def _person_fact(rng: random.Random, world_seed: int = world.WORLD_SEED) -> str:
    name = rng.choice(NAMES)
    f = world.facts(world_seed)[name]
    kind = rng.randrange(3)
    if kind == 0:
        return f"{name} lives in {f['city']}."
    if kind == 1:
        return f"{name} works as a {f['job']}."
    return f"{name} likes to eat {f['food']}."


def _object_fact(rng: random.Random) -> str:
    obj = rng.choice(OBJECTS)
    if rng.random() < 0.5:
        return f"The {obj} is {rng.choice(world.COLORS)}."
    return f"The {obj} is in the {rng.choice(PLACES)}."


def _dialogue(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    return f'"Hello, {b}," said {a}. "Hi, {a}," said {b}.'


def _shopping(rng: random.Random) -> str:
    items = rng.sample(world.SHOP_ITEMS, rng.randrange(2, 5))
    return f"{rng.choice(NAMES)} bought " + ", ".join(items[:-1]) + f" and {items[-1]}."


def _calendar(rng: random.Random) -> str:
    seq = world.DAYS if rng.random() < 0.5 else world.MONTHS
    start, length = rng.randrange(len(seq)), rng.randrange(2, 6)
    run = [seq[(start + i) % len(seq)] for i in range(length)]
    if length == 2:
        return f"After {run[0]} comes {run[1]}."
    return ", ".join(run) + "."


def _comparison(rng: random.Random) -> str:
    i, j = rng.sample(range(len(world.ANIMALS)), 2)
    small, big = world.ANIMALS[min(i, j)], world.ANIMALS[max(i, j)]
    if rng.random() < 0.5:
        return f"The {big} is bigger than the {small}."
    return f"The {small} is smaller than the {big}."


def _pronoun(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    return (
        f"{name} lost {world.pronoun(name)} {rng.choice(OBJECTS)} at the {rng.choice(PLACES)}. "
        f"{world.subject_pronoun(name)} was sad."
    )


def _question(rng: random.Random) -> str:
    name, place = rng.choice(NAMES), rng.choice(PLACES)
    return f"Where is {name}? {name} is at the {place}."


def _weather(rng: random.Random) -> str:
    return f"It was {rng.choice(world.WEATHER)} in {rng.choice(world.CITIES)} on {rng.choice(world.DAYS)}."


FAMILIES: dict[str, Callable[[random.Random], str]] = {
    "ioi": _ioi,
    "greater_than": _greater_than,
    "born": _born,
    "counting": _counting,
    "number_words": _number_words,
    "arithmetic": _arithmetic,
    "induction": _induction,
    "person_fact": _person_fact,
    "object_fact": _object_fact,
    "dialogue": _dialogue,
    "shopping": _shopping,
    "calendar": _calendar,
    "comparison": _comparison,
    "pronoun": _pronoun,
    "question": _question,
    "weather": _weather,
}

DEFAULT_WEIGHTS: dict[str, float] = {
    "ioi": 0.35,
    "greater_than": 0.15,
    **{name: 0.5 / (len(FAMILIES) - 2) for name in FAMILIES if name not in ("ioi", "greater_than")},
}


class CorpusConfig(FrozenConfig):
    """How the organism corpus mixes its sentence families."""

    weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="Relative frequency of each sentence family (normalised; unknown names rejected).",
    )
    sentences_per_document: int = Field(8, gt=0, description="Sentences joined into one document.")
    world_seed: int = Field(
        world.WORLD_SEED,
        description="Draws the world's fixed facts (who lives where, works as what); "
        "another seed is another world with the same grammar.",
    )

    @field_validator("weights")
    @classmethod
    def _known_families(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown sentence families {unknown}; known: {sorted(FAMILIES)}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("family weights must be non-negative with a positive sum")
        return weights


def sentences(seed: int, config: CorpusConfig | None = None) -> Iterator[tuple[str, str]]:
    """An endless, seeded stream of ``(family, sentence)``."""
    config = config or CorpusConfig()
    rng = random.Random(seed)
    names = [n for n, w in config.weights.items() if w > 0]
    weights = [config.weights[n] for n in names]
    # The one family that states world facts is told which world it speaks of.
    makers = {**FAMILIES, "person_fact": partial(_person_fact, world_seed=config.world_seed)}
    while True:
        family = rng.choices(names, weights)[0]
        yield family, makers[family](rng)


def documents(seed: int, config: CorpusConfig | None = None) -> Iterator[str]:
    """An endless, seeded stream of documents (sentences joined by single spaces)."""
    config = config or CorpusConfig()
    stream = sentences(seed, config)
    while True:
        yield " ".join(next(stream)[1] for _ in range(config.sentences_per_document))
