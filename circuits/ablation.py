"""Mean ablation of heads and MLPs over a corrupted distribution.

A node is replaced, at every position, by its mean output over the corrupted prompts of
the same template (prompts of one template align position by position), which removes
what the node contributes about the specific prompt while keeping its average effect.
This is how faithfulness is measured for every circuit here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from circuits.tasks.base import TaskBatch

Metric = Callable[[torch.Tensor, TaskBatch], torch.Tensor]


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def mlp_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def template_means(batch: TaskBatch, acts: torch.Tensor) -> torch.Tensor:
    """Each prompt's activation replaced by the position-wise mean over its template."""
    out = torch.empty_like(acts)
    template_ids = batch.template_ids.to(acts.device)
    for t in template_ids.unique():
        sel = template_ids == t
        out[sel] = acts[sel].mean(0, keepdim=True)
    return out


class MeanAblator:
    """Runs the clean prompts with any set of nodes mean-ablated.

    Nodes are ``(layer, head)`` for heads and ``(layer, None)`` for MLPs.
    """

    def __init__(self, model, batch: TaskBatch, metric: Metric):
        self.model, self.batch, self.metric = model, batch, metric
        n = model.cfg.n_layers
        names = [z_hook(layer) for layer in range(n)] + [mlp_hook(layer) for layer in range(n)]
        with torch.no_grad():
            _, corrupt = model.run_with_cache(batch.corrupt_tokens, names_filter=names)
            self.full = float(metric(model(batch.tokens), batch).mean())
        self.means_z = [template_means(batch, corrupt[z_hook(layer)]) for layer in range(n)]
        self.means_mlp = [template_means(batch, corrupt[mlp_hook(layer)]) for layer in range(n)]

    @torch.no_grad()
    def run(self, ablate: Iterable[tuple[int, int | None]]) -> float:
        """Mean metric with the nodes in ``ablate`` mean-ablated."""
        ablate = set(ablate)
        hooks = []
        for layer in range(self.model.cfg.n_layers):
            heads = sorted(h for (lay, h) in ablate if lay == layer and h is not None)
            if heads:

                def head_hook(act, hook, heads=heads, mean=self.means_z[layer]):
                    out = act.clone()
                    out[:, :, heads] = mean[:, :, heads].to(act.dtype)
                    return out

                hooks.append((z_hook(layer), head_hook))
            if (layer, None) in ablate:

                def mlp_replace(act, hook, mean=self.means_mlp[layer]):
                    return mean.to(act.dtype)

                hooks.append((mlp_hook(layer), mlp_replace))
        return float(self.metric(self.model.run_with_hooks(self.batch.tokens, fwd_hooks=hooks), self.batch).mean())
