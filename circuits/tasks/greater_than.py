"""Greater-than (Hanna et al., 2023).

"The war lasted from the year 1732 to the year 17" → the model should put its mass on
two-digit years greater than 32. Century and two-digit year are separate tokens, as
GPT-2 splits them (" 17" + "32"). The corrupted prompt sets the start year's last two
digits to 01, so every continuation is valid and the prompt carries no threshold.

Metric: Σ_{y>YY} p(y) − Σ_{y≤YY} p(y) over the 100 two-digit year tokens, with p the
full-vocabulary softmax at END (not renormalised over the years).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from circuits.tasks.base import TaskBatch, encode_with_bos, end_logits, pad_id_of, pad_right, single_token_id
from circuits.tasks.vocabulary import EVENT_NOUNS

TEMPLATE = "The {NOUN} lasted from the year {CC}{YY} to the year {CC}"
TEMPLATES: tuple[str, ...] = (TEMPLATE,)
CENTURIES: tuple[int, ...] = tuple(range(11, 20))
YEARS: tuple[int, ...] = tuple(range(2, 99))  # YY; 01 is the corruption, 99 has no greater year


def year_token_ids(tokenizer, device: torch.device | str | None = None) -> torch.Tensor:
    """Ids of the 100 two-digit tokens "00".."99"; raises if one is not a single token."""
    ids = [single_token_id(tokenizer, f"{y:02d}") for y in range(100)]
    if any(i is None for i in ids):
        raise ValueError("the tokenizer does not have all 100 two-digit year tokens")
    return torch.tensor(ids, device=device)


def _splits_like_gpt2(tokenizer, cc: int, yy: int) -> bool:
    ids = tokenizer.encode(f" {cc}{yy:02d}", add_special_tokens=False)
    return ids == [single_token_id(tokenizer, f" {cc}"), single_token_id(tokenizer, f"{yy:02d}")]


def make_batch(
    tokenizer,
    n: int,
    seed: int = 0,
    nouns: Sequence[str] | None = None,
    centuries: Sequence[int] = CENTURIES,
    years: Sequence[int] = YEARS,
    device: torch.device | str | None = None,
) -> TaskBatch:
    """``n`` greater-than prompts (YY cycling through ``years``) and their 01-corruptions,
    as tensors on ``device``."""
    rng = random.Random(seed)
    year_ids = year_token_ids(tokenizer, device=device)
    years_of = year_ids.tolist()  # YY -> token id, read once
    nouns = [w for w in (nouns or EVENT_NOUNS) if single_token_id(tokenizer, " " + w) is not None]
    cents = [c for c in centuries if all(_splits_like_gpt2(tokenizer, c, y) for y in (1, *years))]
    if not nouns or not cents:
        raise ValueError("the tokenizer has no usable nouns or centuries for greater-than")

    order = list(years)
    rng.shuffle(order)
    prompts, corrupts, attrs = [], [], []
    for i in range(n):
        yy = order[i % len(order)]
        cc, noun = rng.choice(cents), rng.choice(nouns)
        prompts.append(TEMPLATE.format(NOUN=noun, CC=cc, YY=f"{yy:02d}"))
        corrupts.append(TEMPLATE.format(NOUN=noun, CC=cc, YY="01"))
        attrs.append({"noun": noun, "century": cc, "YY": yy, "template": 0})

    ids, _ = encode_with_bos(tokenizer, prompts)
    cids, _ = encode_with_bos(tokenizer, corrupts)
    yy_pos, end_pos = [], []
    for k, (r, c, a) in enumerate(zip(ids, cids, attrs, strict=True)):
        if len(r) != len(c):
            raise ValueError(f"clean and corrupted prompt {k} tokenize to different lengths")
        yy_pos.append(r.index(years_of[a["YY"]]))
        end_pos.append(len(r) - 1)
    pad = pad_id_of(tokenizer)
    return TaskBatch(
        task="greater-than",
        prompts=prompts,
        corrupt_prompts=corrupts,
        tokens=pad_right(ids, pad, device),
        corrupt_tokens=pad_right(cids, pad, device),
        lengths=torch.tensor([len(r) for r in ids], device=device),
        positions={"YY": torch.tensor(yy_pos, device=device), "END": torch.tensor(end_pos, device=device)},
        answers=torch.tensor([years_of[a["YY"]] for a in attrs], device=device),
        distractors=torch.full((n,), -1, dtype=torch.long, device=device),
        template_ids=torch.zeros(n, dtype=torch.long, device=device),
        attributes=attrs,
        labels={"YY": torch.tensor([a["YY"] for a in attrs], device=device)},
        vocab_ids={"years": year_ids},
    )


def paper_negatives(tokenizer, batch: TaskBatch, seed: int = 0) -> TaskBatch:
    """``batch`` itself: its corruption (same noun and century, start year YY = 01) is
    already O'Neill & Bui's greater-than negative (sae-circuits ``data/gt.py``)."""
    return batch


def prob_diff(logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
    """Σ_{y>YY} p(y) − Σ_{y≤YY} p(y) at END, one value per prompt."""
    probs = end_logits(logits, batch).float().softmax(-1)
    p_years = probs[:, batch.vocab_ids["years"].to(probs.device)]  # [n, 100]
    yy = batch.labels["YY"].to(probs.device)
    greater = torch.arange(100, device=probs.device)[None, :] > yy[:, None]
    return (p_years * greater).sum(-1) - (p_years * ~greater).sum(-1)


metric = prob_diff
