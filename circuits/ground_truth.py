"""Ground-truth circuits, from data files, never from a method being scored.

- A model provider (``sae.providers``) that ships frozen circuits (its ``circuits`` file):
  those path-patching circuits (primary), and, where this directory holds one, a second,
  independent one from a faithfulness search (``faithfulness_search``), frozen in
  ``circuits/ground_truth/<provider>_faithfulness.json``. Both organisms (``organism``,
  ``organism-b``) have both.
- GPT-2 small: Wang et al.'s IOI heads and Hanna et al.'s greater-than heads and MLPs.
- attn-only-4l: the docstring circuit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from circuits.graph import Node
from sae import providers

HERE = Path(__file__).resolve().parent / "ground_truth"
TASK_KEYS = {"ioi": "ioi", "greater-than": "greater_than", "docstring": "docstring"}
FILES = {
    ("gpt2", "ioi"): "gpt2_ioi.json",
    ("gpt2", "greater-than"): "gpt2_greater_than.json",
    ("attn-only-4l", "docstring"): "attn_only_4l_docstring.json",
}


@dataclass
class GroundTruth:
    name: str
    task: str
    nodes: set[Node]
    edges: set[tuple[Node, Node, str]] = field(default_factory=set)
    source: str = ""

    @property
    def heads(self) -> set[Node]:
        return {n for n in self.nodes if n.kind == "head"}

    @property
    def mlps(self) -> set[Node]:
        return {n for n in self.nodes if n.kind == "mlp"}

    def head_pairs(self) -> set[frozenset]:
        """Unordered head–head pairs joined by a ground-truth edge (for co-occurrence scores)."""
        return {frozenset((s, r)) for s, r, _ in self.edges if s.kind == r.kind == "head" and s != r}


def _from_record(name: str, task: str, record: dict, source: str) -> GroundTruth:
    nodes = {Node.parse(n["node"]) for n in record["nodes"]}
    edges = {
        (Node.parse(e["sender"]), Node.parse(e["receiver"]), e.get("input", "resid")) for e in record.get("edges", [])
    }
    return GroundTruth(name=name, task=task, nodes=nodes, edges=edges, source=source)


def circuits_file(model: str) -> Path | None:
    """The frozen path-patching circuits that ``model``'s provider ships, if it is one that does."""
    provider = providers.find(model)
    return None if provider is None else provider.files.get("circuits")


def faithfulness_file(model: str) -> Path:
    return HERE / f"{model}_faithfulness.json"


def organism_circuits_file() -> Path:
    return providers.get("organism").files["circuits"]


def organism_faithfulness_file() -> Path:
    return faithfulness_file("organism")


def truth_models() -> list[str]:
    """Every name ``--ground-truth-model`` accepts: the providers that ship circuits, then
    the models whose literature circuits ship here."""
    shipped = [name for name in providers.names() if circuits_file(name) is not None]
    return shipped + sorted({m for m, _ in FILES})


def load(model: str, task: str, which: str = "path_patching") -> GroundTruth:
    """The ground truth for ``task`` on ``model`` (a provider such as 'organism' or
    'organism-b', 'gpt2', 'attn-only-4l')."""
    if task not in TASK_KEYS:
        raise ValueError(f"unknown task {task!r}")
    frozen = circuits_file(model)
    if frozen is not None:
        if not frozen.is_file():
            raise ValueError(
                f"{model} has no frozen circuits ({frozen} is missing); "
                f"run 'saelab organism circuits --model {model} --freeze'"
            )
        if which == "path_patching":
            data = json.loads(frozen.read_text())[TASK_KEYS[task]]
            return _from_record("path_patching", task, data, f"{model}/{frozen.name} (path patching)")
        if which == "faithfulness" and faithfulness_file(model).is_file():
            data = json.loads(faithfulness_file(model).read_text())[TASK_KEYS[task]]
            return _from_record(
                "faithfulness", task, data, "greedy mean-ablation search (circuits.faithfulness_search)"
            )
        raise ValueError(f"unknown {model} ground truth {which!r} ({' or '.join(available(model))})")
    key = (model, task)
    if key not in FILES:
        raise ValueError(f"no ground truth for {task} on {model}")
    data = json.loads((HERE / FILES[key]).read_text())
    return _from_record("literature", task, data, data["source"])


def available(model: str) -> list[str]:
    if circuits_file(model) is None:
        return ["literature"]
    return ["path_patching", "faithfulness"] if faithfulness_file(model).is_file() else ["path_patching"]


#: (n_layers, n_heads) of the models whose literature circuits ship here
SHAPES = {"gpt2": (12, 12), "attn-only-4l": (4, 8)}


def truth_model_for(model_name: str, n_layers: int, n_heads: int) -> str | None:
    """Whose ground-truth files apply to a model: a provider's own for a provider's model
    (the organism's for the organism, organism-b's for organism-b), GPT-2 small's for any
    model of GPT-2 small's shape (hub weights, a local copy, or a random model built to that
    shape for plumbing checks); None otherwise."""
    if circuits_file(model_name) is not None:
        return model_name
    if (n_layers, n_heads) == SHAPES["gpt2"]:
        return "gpt2"
    return None


def resolve(truth_model: str | None, task: str, which: str | None, n_layers: int, n_heads: int) -> list[GroundTruth]:
    """The ground truths to score against (primary first), checked against the model's
    shape; [] when no ground truth applies."""
    if truth_model is None:
        return []
    names = [which] if which else available(truth_model)
    truths = [load(truth_model, task, n) for n in names]
    for t in truths:
        bad = [str(n) for n in t.nodes if n.layer >= n_layers or (n.kind == "head" and n.head >= n_heads)]
        if bad:
            raise ValueError(
                f"the {t.name} ground truth of {task} on {truth_model} names {', '.join(sorted(bad)[:3])}, "
                f"outside a model of {n_layers} layers x {n_heads} heads"
            )
    return truths
