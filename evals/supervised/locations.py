"""Where the dictionaries live: per-head q, k, v and z at the circuit's positions.

A *location* is one head's query, key, value or output (``attn.hook_q/k/v/z[h]``) at one
semantic position of the prompt (IO, S1, S2 or END, read per prompt). A *cross-section*
is a set of locations intervened on together. Both follow Makelov et al. §4 / A.4:

- name movers (and backup name movers, as the paper's "(B)NM"): outputs and queries at
  END, keys at IO and S1. The paper evaluates the queries and keys as ONE cross-section,
  "(B)NM q+k" (``name_mover q+k``): every (B)NM head's query at END and its keys at IO
  and S1, intervened on together, with q and k at the positions the ground-truth
  definition gives them (a query is read where the head attends from, a key where the
  name it moves sits). The split ``name_mover q@END`` and ``name_mover k@IO,S1`` are kept
  beside it, named as such: they say which of the two carries an effect, a question
  the paper's cross-section does not ask;
- S-inhibition heads: outputs at END, values at S2;
- induction and duplicate-token heads: outputs at S2;
- heads with another direct path to the logits (negative name movers; the organism's
  S-suppression heads, a role GPT-2's published circuit does not name): outputs at END.

The heads come from the ground truth: an organism's roles in its frozen circuits
(``organism/circuits.json``, ``organism/circuits_b.json``; a head with several roles
serves in each), GPT-2 small's from Wang et al.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sae.errors import SaelabError

SITES = ("q", "k", "v", "z")

#: one site read at some positions
Part = tuple[str, tuple[str, ...]]
#: cross-section name → (roles whose heads it takes, the (site, positions) parts it joins)
CROSS_SECTIONS: dict[str, tuple[tuple[str, ...], tuple[Part, ...]]] = {
    "name_mover z@END": (("name_mover", "backup_name_mover"), (("z", ("END",)),)),
    "name_mover q+k": (("name_mover", "backup_name_mover"), (("q", ("END",)), ("k", ("IO", "S1")))),
    "name_mover q@END": (("name_mover", "backup_name_mover"), (("q", ("END",)),)),
    "name_mover k@IO,S1": (("name_mover", "backup_name_mover"), (("k", ("IO", "S1")),)),
    "s_inhibition z@END": (("s_inhibition",), (("z", ("END",)),)),
    "s_inhibition v@S2": (("s_inhibition",), (("v", ("S2",)),)),
    "induction+duplicate z@S2": (("induction", "duplicate_token"), (("z", ("S2",)),)),
    "negative_name_mover z@END": (("negative_name_mover",), (("z", ("END",)),)),
    "s_suppression z@END": (("s_suppression",), (("z", ("END",)),)),
}
#: the cross-section the acceptance numbers are read at: the heads that move the answer at END
PRIMARY = "name_mover z@END"


@dataclass(frozen=True, order=True)
class Location:
    layer: int
    head: int
    site: str  # q | k | v | z
    position: str  # IO | S1 | S2 | END

    @property
    def hook(self) -> str:
        return f"blocks.{self.layer}.attn.hook_{self.site}[{self.head}]"

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.head}.{self.site}@{self.position}"

    @property
    def tl_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_{self.site}"

    def describe(self) -> dict:
        return {
            "key": self.key,
            "hook": self.hook,
            "layer": self.layer,
            "head": self.head,
            "site": self.site,
            "position": self.position,
        }


@dataclass(frozen=True)
class CrossSection:
    name: str
    roles: tuple[str, ...]
    parts: tuple[Part, ...]
    heads: tuple[tuple[int, int], ...]

    @property
    def site(self) -> str:
        """The sites joined by ``+`` (``"q+k"``), or the one site."""
        return "+".join(dict.fromkeys(site for site, _ in self.parts))

    @property
    def positions(self) -> tuple[str, ...]:
        """Every position any part reads, in order of first appearance."""
        return tuple(dict.fromkeys(p for _, positions in self.parts for p in positions))

    @property
    def locations(self) -> tuple[Location, ...]:
        return tuple(
            Location(layer, head, site, p)
            for site, positions in self.parts
            for layer, head in self.heads
            for p in positions
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "roles": list(self.roles),
            "site": self.site,
            "positions": list(self.positions),
            "parts": [{"site": site, "positions": list(positions)} for site, positions in self.parts],
            "heads": [f"{layer}.{head}" for layer, head in self.heads],
            "locations": [loc.key for loc in self.locations],
        }


def role_heads(model_name: str) -> dict[str, list[tuple[int, int]]]:
    """role → heads ``(layer, head)`` of the IOI ground truth for ``model_name``."""
    from circuits import ground_truth

    frozen = ground_truth.circuits_file(model_name)
    if frozen is not None:
        if not frozen.is_file():
            raise SaelabError(
                f"{model_name} has no frozen circuits ({frozen} is missing); "
                f"run 'saelab organism circuits --model {model_name} --freeze'"
            )
        record = json.loads(frozen.read_text())["ioi"]
    elif model_name == "gpt2":
        record = json.loads((ground_truth.HERE / ground_truth.FILES[("gpt2", "ioi")]).read_text())
    else:
        raise SaelabError(
            f"no IOI circuit with head roles for model {model_name!r} (known: organism, organism-b, gpt2)"
        )
    out: dict[str, list[tuple[int, int]]] = {}
    for node in record["nodes"]:
        layer, head = (int(x) for x in node["node"].split("."))
        for role in node.get("roles", [node["role"]]):
            out.setdefault(role, []).append((layer, head))
    return out


def cross_sections(model_name: str, names: tuple[str, ...] | None = None) -> list[CrossSection]:
    """The model's cross-sections (those whose roles have heads), or the ``names`` asked for."""
    roles = role_heads(model_name)
    found = []
    for name, (wanted, parts) in CROSS_SECTIONS.items():
        heads = sorted({h for r in wanted for h in roles.get(r, [])})
        if heads:
            found.append(CrossSection(name, wanted, parts, tuple(heads)))
    if names is None:
        return found
    by_name = {x.name: x for x in found}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SaelabError(f"unknown cross-section(s) {missing} for {model_name}; known: {', '.join(by_name)}")
    return [by_name[n] for n in names]


def unique_locations(sections: list[CrossSection]) -> list[Location]:
    return sorted({loc for x in sections for loc in x.locations})
