"""Indirect object identification (Wang et al., 2022).

A prompt names two people, then repeats one of them (the subject S); the model should
complete with the other (the indirect object IO): "When Mary and John went to the store,
John gave a drink to" → " Mary". ABBA templates mention IO first, BABA templates S
first. The corrupted prompt replaces the three name mentions by three distinct random
names (the ABC distribution), so it carries no information about which name is the IO.

Metric: logit(IO) − logit(S) at the END position.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from circuits.tasks.base import (
    TaskBatch,
    encode_with_bos,
    end_logits,
    pad_id_of,
    pad_right,
    single_token_id,
    token_index_at,
)
from circuits.tasks.vocabulary import NAMES, OBJECTS, PLACES

# {A} and {B} are the two names of the opening clause, {C} the subject of the second
# clause. ABBA fills A=IO, B=S, C=S; BABA fills A=S, B=IO, C=S; ABC fills three
# distinct names. Every template ends on the word right before the IO.
TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {PLACE}, {C} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {C} decided to give it to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {C} decided to give the {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {C} gave a {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {C} gave a {OBJECT} to",
    "After the lunch, {A} and {B} went to the {PLACE}. {C} gave a {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {C} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument. Afterwards {C} said to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {C} gave a {OBJECT} to",
    "The {PLACE} {A} and {B} went to had a {OBJECT}. {C} gave it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {C} gave it to",
    "When {A} and {B} arrived at the {PLACE}, {C} threw the {OBJECT} to",
)

ORDERS = ("ABBA", "BABA")


def render(template: str, a: str, b: str, c: str, place: str, obj: str) -> tuple[str, dict[str, int]]:
    """The prompt text and the character offset of each name slot (A, B, C)."""
    text, starts = "", {}
    i = 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            slot = template[i + 1 : j]
            value = {"A": a, "B": b, "C": c, "PLACE": place, "OBJECT": obj}[slot]
            if slot in "ABC":
                starts[slot] = len(text)
            text += value
            i = j + 1
        else:
            text += template[i]
            i += 1
    return text, starts


def usable(tokenizer, words: Sequence[str]) -> list[str]:
    """Words that are one token after a leading space (as they appear mid-sentence)."""
    return [w for w in words if single_token_id(tokenizer, " " + w) is not None]


def make_batch(
    tokenizer,
    n: int,
    seed: int = 0,
    templates: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    pair_filter: Callable[[str, str], bool] | None = None,
    orders: Sequence[str] = ORDERS,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """``n`` IOI prompts with their ABC corruptions, as tensors on ``device``.

    Templates cycle through ``templates`` (all by default) and orders alternate, so any
    prefix of the batch is balanced. ``pair_filter(io, s)`` restricts the name pairs,
    e.g. to combinations held out of the organism's training corpus.
    """
    rng = random.Random(seed)
    template_ids = list(templates) if templates is not None else list(range(len(TEMPLATES)))
    pool = usable(tokenizer, names if names is not None else NAMES)
    places, objects = usable(tokenizer, PLACES), usable(tokenizer, OBJECTS)
    if len(pool) < 3 or not places or not objects:
        raise ValueError("the tokenizer has too few single-token names, places or objects for IOI")

    pairs = [(a, b) for a in pool for b in pool if a != b and (pair_filter is None or pair_filter(a, b))]
    if not pairs:
        raise ValueError("pair_filter rejects every name pair")

    prompts, corrupts, attrs = [], [], []
    for i in range(n):
        tid = template_ids[i % len(template_ids)]
        order = orders[(i // len(template_ids)) % len(orders)]
        io, s = rng.choice(pairs)
        place, obj = rng.choice(places), rng.choice(objects)
        a, b = (io, s) if order == "ABBA" else (s, io)
        x, y, z = rng.sample(pool, 3)
        prompts.append((TEMPLATES[tid], a, b, s, place, obj))
        corrupts.append((TEMPLATES[tid], x, y, z, place, obj))
        attrs.append({"IO": io, "S": s, "order": order, "place": place, "object": obj, "template": tid})
    return build_batch(tokenizer, prompts, corrupts, attrs, device=device)


def paper_negatives(tokenizer, batch: TaskBatch, seed: int = 0) -> TaskBatch:
    """``batch`` with O'Neill & Bui's IOI negatives as its corrupted prompts.

    The discrete-SAE finder contrasts positives with negatives built as the paper's code
    builds them (sae-circuits ``data/ioi.py``), not with the ABC corruption that
    patching uses: the IO mention becomes a new name N3 (≠ IO, S), the first S mention
    becomes the IO name, and the subject S stays. "When Mary and John went to the
    store, John gave a drink to" → "When N3 and Mary went to the store, John gave a
    drink to". Three distinct names, none repeated, so the prompt names no IO; the two
    names of each positive still appear in its negative, so positives and negatives
    differ in structure rather than in which names occur. Clean prompts are unchanged.
    """
    rng = random.Random(seed)
    pool = usable(tokenizer, NAMES)
    prompts, negatives = [], []
    for att in batch.attributes:
        template, io, s = TEMPLATES[att["template"]], att["IO"], att["S"]
        n3 = rng.choice([n for n in pool if n not in (io, s)])
        if att["order"] == "ABBA":
            prompts.append((template, io, s, s, att["place"], att["object"]))
            negatives.append((template, n3, io, s, att["place"], att["object"]))
        else:
            prompts.append((template, s, io, s, att["place"], att["object"]))
            negatives.append((template, io, n3, s, att["place"], att["object"]))
    return build_batch(tokenizer, prompts, negatives, batch.attributes, device=batch.tokens.device)


def build_batch(
    tokenizer,
    prompts: Sequence[tuple],
    corrupts: Sequence[tuple],
    attrs: Sequence[dict],
    device: torch.device | str | None = None,
) -> TaskBatch:
    """Tokenize given prompts into a batch whose tensors are on ``device``.

    ``prompts[i]`` and ``corrupts[i]`` are ``render`` arguments ``(template, a, b, c, place,
    object)``; ``attrs[i]`` holds at least ``IO``, ``S``, ``order`` and ``template``.
    Callers that need controlled prompts (counterfactual pairs) build them here.
    """
    attrs = list(attrs)
    clean_texts, clean_starts = zip(*(render(*p) for p in prompts), strict=True)
    corrupt_texts, _ = zip(*(render(*p) for p in corrupts), strict=True)
    ids, offsets = encode_with_bos(tokenizer, list(clean_texts))
    cids, _ = encode_with_bos(tokenizer, list(corrupt_texts))
    for k, (r, c) in enumerate(zip(ids, cids, strict=True)):
        if len(r) != len(c):
            raise ValueError(f"clean and corrupted prompt {k} tokenize to different lengths")

    pos = {"IO": [], "S1": [], "S2": [], "END": []}
    for att, starts, off in zip(attrs, clean_starts, offsets, strict=True):
        io_slot, s_slot = ("A", "B") if att["order"] == "ABBA" else ("B", "A")
        # offsets of a word token include its leading space: look one character earlier
        pos["IO"].append(token_index_at(off, starts[io_slot] - 1))
        pos["S1"].append(token_index_at(off, starts[s_slot] - 1))
        pos["S2"].append(token_index_at(off, starts["C"] - 1))
        pos["END"].append(len(off) - 1)

    answers = [single_token_id(tokenizer, " " + a["IO"]) for a in attrs]
    distractors = [single_token_id(tokenizer, " " + a["S"]) for a in attrs]
    pad = pad_id_of(tokenizer)
    return TaskBatch(
        task="ioi",
        prompts=list(clean_texts),
        corrupt_prompts=list(corrupt_texts),
        tokens=pad_right(ids, pad, device),
        corrupt_tokens=pad_right(cids, pad, device),
        lengths=torch.tensor([len(r) for r in ids], device=device),
        positions={k: torch.tensor(v, device=device) for k, v in pos.items()},
        answers=torch.tensor(answers, device=device),
        distractors=torch.tensor(distractors, device=device),
        template_ids=torch.tensor([a["template"] for a in attrs], device=device),
        attributes=attrs,
    )


def logit_diff(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """logit(IO) − logit(S) at END, one value per prompt."""
    last = end_logits(logits, batch)
    rows = torch.arange(last.shape[0], device=last.device)
    return last[rows, batch.answers.to(last.device)] - last[rows, batch.distractors.to(last.device)]


def accuracy(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Per prompt: 1.0 where logit(IO) > logit(S)."""
    return (logit_diff(logits, batch) > 0).float()


metric = logit_diff
