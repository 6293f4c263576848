"""Activations at chosen positions of task prompts, with per-row metadata.

Circuit discovery and the supervised-dictionary evaluations need rows such as "head
2.0's output at END of IOI prompt 17", labelled with the prompt's attributes. A task
batch (``circuits.tasks.TaskBatch``, used here by duck typing so ``sae`` stays free of
``circuits`` imports) supplies tokens, role positions and attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sae.harvest import Harvester


@dataclass
class TaskRows:
    """``acts[hook]`` is ``[n_prompts * n_roles, d_in]``; ``meta[i]`` describes row i."""

    acts: dict[str, torch.Tensor]
    meta: list[dict]

    def select(self, **where) -> torch.Tensor:
        """Indices of the rows whose metadata match every ``key=value``."""
        return torch.tensor(
            [i for i, m in enumerate(self.meta) if all(m.get(k) == v for k, v in where.items())], dtype=torch.long
        )


def harvest_task_positions(
    model,
    tokenizer,
    batch,
    hooks: Sequence[str],
    roles: Sequence[str] | None = None,
    corrupted: bool = False,
    dtype: str | torch.dtype = torch.float32,
    chunk: int = 256,
) -> TaskRows:
    """Rows at ``roles`` (default: every position the batch names) of each prompt.

    Rows are ordered prompt by prompt, roles in the given order. ``corrupted`` reads the
    batch's corrupted prompts at the same positions.
    """
    harvester = Harvester(model, tokenizer, hooks, dtype=dtype)
    roles = list(roles) if roles is not None else list(batch.positions)
    tokens = batch.corrupt_tokens if corrupted else batch.tokens
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in harvester.hooks}
    for lo in range(0, tokens.shape[0], chunk):
        full = harvester.full(tokens[lo : lo + chunk])
        rows = torch.arange(full[harvester.hooks[0]].shape[0])
        pos = torch.stack([batch.positions[r][lo : lo + chunk] for r in roles], dim=1)  # [n, n_roles]
        for h in harvester.hooks:
            parts[h].append(full[h][rows[:, None], pos.to(full[h].device)].flatten(0, 1).cpu())
    meta = []
    for i in range(tokens.shape[0]):
        attrs = batch.attributes[i] if batch.attributes else {}
        for r in roles:
            meta.append(
                {"prompt_id": i, "role": r, "position": int(batch.positions[r][i]), "corrupted": corrupted, **attrs}
            )
    return TaskRows(acts={h: torch.cat(v) for h, v in parts.items()}, meta=meta)
