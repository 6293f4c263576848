"""How well the organism solves its tasks, on prompts it never saw in training.

IOI prompts use only name pairs that ``corpus.heldout_pair`` kept out of the corpus; the
template ``corpus.HELDOUT_IOI_TEMPLATE`` never appears in training at all and is
reported on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from circuits.tasks import greater_than, ioi
from organism import corpus

Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def batched_logits(forward: Forward, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([forward(tokens[i : i + batch_size]) for i in range(0, len(tokens), batch_size)])


def _ioi_summary(forward: Forward, tokenizer, templates: list[int], n: int, seed: int) -> dict:
    batch = ioi.make_batch(tokenizer, n, seed=seed, templates=templates, pair_filter=corpus.heldout_pair)
    ld = ioi.logit_diff(batched_logits(forward, batch.tokens), batch)
    per_template = {}
    for t in templates:
        sel = batch.template_ids == t
        per_template[ioi.TEMPLATES[t]] = {
            "accuracy": float((ld[sel] > 0).float().mean()),
            "logit_diff": float(ld[sel].mean()),
            "n": int(sel.sum()),
        }
    return {
        "accuracy": float((ld > 0).float().mean()),
        "logit_diff": float(ld.mean()),
        "per_template": per_template,
    }


def evaluate(forward: Forward, tokenizer, n_prompts: int = 1100, seed: int = 12345) -> dict:
    """The organism's scores; ``forward`` maps ``[n, seq]`` tokens to ``[n, seq, vocab]`` logits."""
    held_in = _ioi_summary(forward, tokenizer, list(corpus.TRAIN_IOI_TEMPLATES), n_prompts, seed)
    held_out = _ioi_summary(forward, tokenizer, [corpus.HELDOUT_IOI_TEMPLATE], n_prompts // 10, seed + 1)
    gt = greater_than.make_batch(tokenizer, n_prompts // 2, seed=seed + 2)
    pd = greater_than.prob_diff(batched_logits(forward, gt.tokens), gt)
    return {
        "ioi_accuracy": held_in["accuracy"],
        "ioi_logit_diff": held_in["logit_diff"],
        "greater_than_prob_diff": float(pd.mean()),
        "greater_than_positive_fraction": float((pd > 0).float().mean()),
        "per_template": held_in["per_template"],
        "heldout_template": {
            "template": ioi.TEMPLATES[corpus.HELDOUT_IOI_TEMPLATE],
            "accuracy": held_out["accuracy"],
            "logit_diff": held_out["logit_diff"],
        },
        "n_ioi_prompts": n_prompts,
        "n_greater_than_prompts": n_prompts // 2,
    }
