"""Reading activations at locations, and running the model with them replaced."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from circuits.tasks.base import TaskBatch
from evals.supervised.locations import Location
from sae.task_positions import harvest_task_positions


def harvest(model, tokenizer, batch: TaskBatch, locations: Iterable[Location], chunk: int = 250) -> dict:
    """``{location: [n_prompts, d]}``: each prompt read at its own semantic position."""
    locations = list(locations)
    hooks = sorted({loc.hook for loc in locations})
    roles = sorted({loc.position for loc in locations})
    rows = harvest_task_positions(model, tokenizer, batch, hooks, roles, chunk=chunk)
    n = len(batch)
    return {
        loc: rows.acts[loc.hook].view(n, len(roles), -1)[:, roles.index(loc.position)].contiguous() for loc in locations
    }


class Intervener:
    """END logits of a batch's prompts with chosen locations set to given values."""

    def __init__(self, model, batch: TaskBatch, batch_size: int = 250):
        self.model, self.batch, self.batch_size = model, batch, batch_size
        self.device = next(model.parameters()).device
        self.forward_passes = 0
        self._clean: torch.Tensor | None = None

    @property
    def clean(self) -> torch.Tensor:
        if self._clean is None:
            self._clean = self.end_logits({})
        return self._clean

    def _hooks(self, values: Mapping[Location, torch.Tensor], lo: int, hi: int) -> list:
        by_name: dict[str, list[Location]] = {}
        for loc in values:
            by_name.setdefault(loc.tl_name, []).append(loc)
        hooks = []
        for name, locs in by_name.items():

            def write(act, hook, locs=locs):
                act = act.clone()
                rows = torch.arange(act.shape[0], device=act.device)
                for loc in locs:
                    pos = self.batch.positions[loc.position][lo:hi].to(act.device)
                    act[rows, pos, loc.head] = values[loc][lo:hi].to(act.device, act.dtype)
                return act

            hooks.append((name, write))
        return hooks

    @torch.no_grad()
    def end_logits(self, values: Mapping[Location, torch.Tensor]) -> torch.Tensor:
        """``[n, vocab]`` logits at END with ``values[loc]`` (``[n, d]``) written at each location."""
        out = []
        tokens, end = self.batch.tokens, self.batch.positions["END"]
        for lo in range(0, tokens.shape[0], self.batch_size):
            hi = min(lo + self.batch_size, tokens.shape[0])
            logits = self.model.run_with_hooks(tokens[lo:hi].to(self.device), fwd_hooks=self._hooks(values, lo, hi))
            rows = torch.arange(hi - lo, device=logits.device)
            out.append(logits[rows, end[lo:hi].to(logits.device)].float().cpu())
            self.forward_passes += 1
        return torch.cat(out)

    def logit_diff(self, logits: torch.Tensor) -> torch.Tensor:
        """logit(IO) − logit(S), per prompt."""
        rows = torch.arange(logits.shape[0])
        return logits[rows, self.batch.answers] - logits[rows, self.batch.distractors]
