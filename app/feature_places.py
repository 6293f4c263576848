"""Where a feature appears in the saved circuits and graphs of the run directories.

Two sources, both read, never computed here:

- **feature circuits** (``kind: circuit``, ``method: feature-circuit``, from
  ``circuits.feature_circuits``): ``details.top_nodes`` (``{"node": "attn1/42", "effect"}``)
  and ``details.top_edges`` (``source``/``target``/``effect``); a site ``attnL`` / ``mlpL`` /
  ``residL`` is the SAE at ``blocks.L.hook_attn_out`` / ``hook_mlp_out`` / ``hook_resid_post``.
- **graphs** (any other JSON object with a ``nodes`` list, e.g. attribution graphs), read
  generically: a node is this feature when its feature index (``feature``, ``latent``,
  ``feature_index`` or ``index``) is the feature's and it names the SAE's hook (``hook``,
  ``hook_name`` or ``site``) or the SAE (``sae``); a node that names only a ``layer`` is
  matched by layer and reported as such (a layer alone cannot tell two SAEs at one layer
  apart). Edges (``links`` or ``edges``, with ``source``/``target`` naming node ids
  ``id``/``node_id``/``node``) touching a matched node are counted. Attribution graphs in
  circuit-tracer's JSON (``saelab graph``) are read by their own rule: a node of
  ``feature_type`` "cross layer transcoder" has id ``layer_feature_pos`` (its ``feature``
  field is circuit-tracer's Cantor number, not the index), and ``metadata.transcoder_list``
  names the SAE of each layer; its other node types (embeddings, errors, logits) are no
  feature's.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.run_dir import _result_documents

SITES = {"attn": "hook_attn_out", "mlp": "hook_mlp_out", "resid": "hook_resid_post"}
FEATURE_KEYS = ("feature", "latent", "feature_index", "index")
HOOK_KEYS = ("hook", "hook_name", "site")
ID_KEYS = ("id", "node_id", "node")


def site_hook(site: str) -> str | None:
    """``attn1`` → ``blocks.1.hook_attn_out`` (None for anything else)."""
    m = re.fullmatch(r"(attn|mlp|resid)(\d+)", site)
    return f"blocks.{m.group(2)}.{SITES[m.group(1)]}" if m else None


def hook_layer(hook: str) -> int | None:
    m = re.match(r"blocks\.(\d+)\.", hook or "")
    return int(m.group(1)) if m else None


def _int(v) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


def circuit_places(doc: dict, hook: str, feature: int) -> list[dict]:
    """This feature's rows in a feature-circuit result: its node (effect, rank) and its edges."""
    details = doc.get("details") or {}
    nodes = details.get("top_nodes") or []
    out = []

    def mine(name) -> bool:
        if not isinstance(name, str) or "/" not in name:
            return False
        site, idx = name.rsplit("/", 1)
        return site_hook(site) == hook and idx == str(feature)

    for rank, n in enumerate(nodes):
        if isinstance(n, dict) and mine(n.get("node")):
            out.append({"role": "node", "rank": rank + 1, "of": len(nodes), "effect": n.get("effect"), "other": ""})
    for e in details.get("top_edges") or []:
        if not isinstance(e, dict):
            continue
        if mine(e.get("source")):
            out.append({"role": "edge out", "rank": None, "of": None, "effect": e.get("effect"), "other": e["target"]})
        if mine(e.get("target")):
            out.append({"role": "edge in", "rank": None, "of": None, "effect": e.get("effect"), "other": e["source"]})
    return out


TRACER_FEATURE = "cross layer transcoder"


def _tracer_match(node: dict, doc: dict, layer: int | None, sae_name: str, feature: int) -> str | None:
    """How a circuit-tracer feature node is this feature (None: it is not)."""
    m = re.fullmatch(r"(\d+)_(\d+)_(\d+)", str(node.get("node_id", "")))
    if not m or int(m.group(2)) != feature:
        return None
    names = (doc.get("metadata") or {}).get("transcoder_list") or []
    at = int(m.group(1))
    if at < len(names) and isinstance(names[at], str):
        named = names[at]
        return "transcoder_list" if named == sae_name or Path(named).name == sae_name else None
    return "layer only" if at == layer else None


def _generic_match(node: dict, hook: str, layer: int | None, sae_name: str, feature: int) -> str | None:
    """How a generic graph node is this feature (None: it is not)."""
    idx = next((_int(node[k]) for k in FEATURE_KEYS if k in node), None)
    if idx != feature:
        return None
    named = next((node[k] for k in HOOK_KEYS if isinstance(node.get(k), str)), None)
    if named is not None or node.get("sae") is not None:
        return "hook" if named == hook else "sae" if node.get("sae") == sae_name else None
    return "layer only" if layer is not None and _int(node.get("layer")) == layer else None


def graph_places(doc: dict, hook: str, sae_name: str, feature: int) -> list[dict]:
    """This feature's nodes in a graph document, with the number of edges at each."""
    layer = hook_layer(hook)
    edges = [e for e in (doc.get("links") or doc.get("edges") or []) if isinstance(e, dict)]
    out = []
    for node in doc.get("nodes") or []:
        if not isinstance(node, dict):
            continue
        if "feature_type" in node:  # circuit-tracer's graph JSON
            tracer = node["feature_type"] == TRACER_FEATURE
            how = _tracer_match(node, doc, layer, sae_name, feature) if tracer else None
        else:
            how = _generic_match(node, hook, layer, sae_name, feature)
        if how is None:
            continue
        node_id = next((node[k] for k in ID_KEYS if k in node), None)
        n_in = sum(1 for e in edges if node_id is not None and e.get("target") == node_id)
        n_out = sum(1 for e in edges if node_id is not None and e.get("source") == node_id)
        scores = {
            k: v
            for k, v in node.items()
            if k not in FEATURE_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        out.append({"node": node_id, "matched by": how, "edges in": n_in, "edges out": n_out, **scores})
    return out


def feature_places(run_dirs: list[Path], hook: str, sae_name: str, feature: int) -> list[dict]:
    """Every place of the feature: ``{"file", "kind", "rows"}`` per document that has it."""
    found = []
    for d in run_dirs:
        if not Path(d).is_dir():
            continue
        for path, doc in _result_documents(d):
            if path.parent.name == "dashboard":
                continue
            if doc.get("kind") == "circuit" and doc.get("method") == "feature-circuit":
                rows, kind = circuit_places(doc, hook, feature), "feature circuit"
            elif isinstance(doc.get("nodes"), list):
                rows, kind = graph_places(doc, hook, sae_name, feature), str(doc.get("kind") or "graph")
            else:
                continue
            if rows:
                found.append({"file": str(path), "kind": kind, "task": doc.get("task"), "rows": rows})
    return found
