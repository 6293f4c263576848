"""The computational graph circuit methods score: nodes, receiver inputs and edges.

Nodes are the embedding, every attention head, every MLP and the logits. An edge runs
from a sender node to one *input* of a receiver: a head's query, key or value input, an
MLP's input, or the final residual stream that the logits read. A receiver sees every
sender upstream of it in the residual stream (for GPT-2, an MLP also sees the heads of
its own layer; for parallel-attention models such as Pythia it does not).

Node names match ``organism/circuits.json``: ``"L.H"`` for heads, ``"mlpL"``, plus
``"embed"`` and ``"logits"``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True, order=True)
class Node:
    kind: str  # "embed" | "head" | "mlp" | "logits"
    layer: int = -1
    head: int = -1

    def __str__(self) -> str:
        if self.kind == "head":
            return f"{self.layer}.{self.head}"
        if self.kind == "mlp":
            return f"mlp{self.layer}"
        return self.kind

    @staticmethod
    def parse(text: str) -> Node:
        if text in ("embed", "logits"):
            return Node(text)
        if text.startswith("mlp"):
            return Node("mlp", int(text[3:]))
        layer, head = text.split(".")
        return Node("head", int(layer), int(head))


@dataclass(frozen=True, order=True)
class Edge:
    sender: Node
    receiver: Node
    input: str  # "q" | "k" | "v" for heads, "in" for MLPs, "resid" for the logits

    def __str__(self) -> str:
        return f"{self.sender}->{self.receiver}[{self.input}]"


class Graph:
    """All nodes and edges of a model with ``n_layers`` blocks of ``n_heads`` heads."""

    def __init__(self, n_layers: int, n_heads: int, parallel_attn_mlp: bool = False):
        self.n_layers, self.n_heads, self.parallel = n_layers, n_heads, parallel_attn_mlp

    @classmethod
    def of(cls, model) -> Graph:
        return cls(model.cfg.n_layers, model.cfg.n_heads, bool(getattr(model.cfg, "parallel_attn_mlp", False)))

    @cached_property
    def heads(self) -> list[Node]:
        return [Node("head", layer, h) for layer in range(self.n_layers) for h in range(self.n_heads)]

    @cached_property
    def mlps(self) -> list[Node]:
        return [Node("mlp", layer) for layer in range(self.n_layers)]

    @cached_property
    def senders(self) -> list[Node]:
        """In forward order: embed, then each layer's heads, then its MLP."""
        out = [Node("embed")]
        for layer in range(self.n_layers):
            out += [Node("head", layer, h) for h in range(self.n_heads)] + [Node("mlp", layer)]
        return out

    def upstream(self, receiver: Node) -> list[Node]:
        """Senders whose output reaches ``receiver``'s input through the residual stream."""
        if receiver.kind == "logits":
            return list(self.senders)
        out = [Node("embed")]
        for layer in range(receiver.layer):
            out += [Node("head", layer, h) for h in range(self.n_heads)] + [Node("mlp", layer)]
        if receiver.kind == "mlp" and not self.parallel:
            out += [Node("head", receiver.layer, h) for h in range(self.n_heads)]
        return out

    @cached_property
    def receiver_inputs(self) -> list[tuple[Node, str]]:
        """In forward order."""
        out = []
        for layer in range(self.n_layers):
            out += [(Node("head", layer, h), site) for h in range(self.n_heads) for site in ("q", "k", "v")]
            out.append((Node("mlp", layer), "in"))
        out.append((Node("logits"), "resid"))
        return out

    @cached_property
    def edges(self) -> list[Edge]:
        return [Edge(s, r, site) for r, site in self.receiver_inputs for s in self.upstream(r)]


@contextlib.contextmanager
def per_head_hooks(model):
    """Turn on the bridge's per-head result and per-head q/k/v input hooks, and restore
    the previous settings afterwards (outputs are unchanged either way)."""
    cfg = model.cfg
    before = (bool(getattr(cfg, "use_attn_result", False)), bool(getattr(cfg, "use_split_qkv_input", False)))
    model.set_use_attn_result(True)
    model.set_use_split_qkv_input(True)
    try:
        yield model
    finally:
        model.set_use_attn_result(before[0])
        model.set_use_split_qkv_input(before[1])
