"""A small, standalone path-patching helper (Wang et al., 2022) over a TransformerBridge.

Path patching measures how much of a metric flows along the direct paths from sender
nodes to receiver inputs. Step A runs the clean prompts with every attention head frozen
to its clean output, except the senders, which take their corrupted output; MLPs are
recomputed, so paths through MLPs count as direct. Step B runs the clean prompts again
with only the receivers' inputs (a head's query, key or value, or an MLP's input)
replaced by what they were in step A. With no receivers the metric is read from step A's
logits (paths to the output).

This helper exists to establish the organism's ground-truth circuits once; the general
circuit-discovery baselines live in ``circuits/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from circuits.tasks.base import TaskBatch

Metric = Callable[[torch.Tensor, TaskBatch], torch.Tensor]


@dataclass(frozen=True)
class Node:
    """An attention head ``(layer, head)`` or an MLP ``(layer, None)``."""

    layer: int
    head: int | None = None

    @property
    def is_mlp(self) -> bool:
        return self.head is None

    def __str__(self) -> str:
        return f"mlp{self.layer}" if self.is_mlp else f"{self.layer}.{self.head}"

    @staticmethod
    def parse(text: str) -> Node:
        if text.startswith("mlp"):
            return Node(int(text[3:]))
        layer, head = text.split(".")
        return Node(int(layer), int(head))


@dataclass(frozen=True)
class Receiver:
    """A receiver input: ``site`` is ``q``, ``k`` or ``v`` for a head, ``in`` for an MLP;
    ``position`` names a role position (e.g. ``"END"``) or None for all positions."""

    node: Node
    site: str
    position: str | None = None

    def hook(self) -> str:
        if self.node.is_mlp:
            return f"blocks.{self.node.layer}.mlp.hook_in"
        return f"blocks.{self.node.layer}.attn.hook_{self.site}"


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def mlp_hook(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


@dataclass
class Caches:
    """Per-layer head outputs (``z``) and MLP outputs of the clean and corrupted runs."""

    clean_z: list[torch.Tensor]
    corrupt_z: list[torch.Tensor]
    clean_mlp: list[torch.Tensor]
    corrupt_mlp: list[torch.Tensor]
    clean_metric: torch.Tensor
    corrupt_metric: torch.Tensor


@torch.no_grad()
def run_caches(model, batch: TaskBatch, metric: Metric) -> Caches:
    n_layers = model.cfg.n_layers
    names = [z_hook(layer) for layer in range(n_layers)] + [mlp_hook(layer) for layer in range(n_layers)]
    clean_logits, clean = model.run_with_cache(batch.tokens, names_filter=names)
    corrupt_logits, corrupt = model.run_with_cache(batch.corrupt_tokens, names_filter=names)
    return Caches(
        clean_z=[clean[z_hook(layer)] for layer in range(n_layers)],
        corrupt_z=[corrupt[z_hook(layer)] for layer in range(n_layers)],
        clean_mlp=[clean[mlp_hook(layer)] for layer in range(n_layers)],
        corrupt_mlp=[corrupt[mlp_hook(layer)] for layer in range(n_layers)],
        clean_metric=metric(clean_logits, batch),
        corrupt_metric=metric(corrupt_logits, batch),
    )


def _replace(value: torch.Tensor):
    def hook(act, hook):
        return value.to(act.dtype)

    return hook


def _capture(store: dict, key: str):
    def hook(act, hook):
        store[key] = act.detach().clone()
        return act

    return hook


def _position_mask(batch: TaskBatch, position: str | None, seq: int, device) -> torch.Tensor:
    if position is None:
        return torch.ones(len(batch), seq, dtype=torch.bool, device=device)
    mask = torch.zeros(len(batch), seq, dtype=torch.bool, device=device)
    mask[torch.arange(len(batch), device=device), batch.positions[position].to(device)] = True
    return mask


@torch.no_grad()
def path_patch(
    model,
    batch: TaskBatch,
    caches: Caches,
    senders: Sequence[Node],
    receivers: Sequence[Receiver] | None,
    metric: Metric,
) -> torch.Tensor:
    """The metric per prompt after patching the paths ``senders`` → ``receivers``."""
    sender_set = set(senders)
    hooks = []
    for layer in range(model.cfg.n_layers):
        z = caches.clean_z[layer].clone()
        for node in sender_set:
            if not node.is_mlp and node.layer == layer:
                z[:, :, node.head] = caches.corrupt_z[layer][:, :, node.head]
        hooks.append((z_hook(layer), _replace(z)))
        if Node(layer) in sender_set:
            hooks.append((mlp_hook(layer), _replace(caches.corrupt_mlp[layer])))
    if not receivers:
        return metric(model.run_with_hooks(batch.tokens, fwd_hooks=hooks), batch)

    store: dict[str, torch.Tensor] = {}
    capture_names = sorted({r.hook() for r in receivers})
    model.run_with_hooks(batch.tokens, fwd_hooks=hooks + [(name, _capture(store, name)) for name in capture_names])

    def patch_receivers(name: str):
        mine = [r for r in receivers if r.hook() == name]

        def hook(act, hook):
            out = act.clone()
            patched = store[name].to(act.dtype)
            for r in mine:
                mask = _position_mask(batch, r.position, act.shape[1], act.device)
                if r.node.is_mlp:
                    out[mask] = patched[mask]
                else:
                    out[:, :, r.node.head][mask] = patched[:, :, r.node.head][mask]
            return out

        return hook

    logits = model.run_with_hooks(batch.tokens, fwd_hooks=[(n, patch_receivers(n)) for n in capture_names])
    return metric(logits, batch)
