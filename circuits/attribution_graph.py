"""Attribution graphs (Ameisen et al. 2025; circuit-tracer) over per-layer transcoders.

For one prompt: the local replacement model (``circuits.replacement_model``: transcoders
for the MLPs, attention patterns and LayerNorm scales frozen, error nodes, an explicit
constant node), its direct-effect adjacency, pruning by influence and the replacement and
completeness scores (``circuits.graph_pruning``), and the graph JSON that circuit-tracer's
frontend and Neuronpedia read (``circuits.graph_json``).

**Frozen attention hides query/key effects**: the graph attributes what heads move (OV)
under the prompt's own patterns, never how a feature changes where a head looks. The
organism's IOI and greater-than circuits select positions by QK (name movers, induction),
so their graphs show the value paths only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from circuits.graph_pruning import Layout, Pruned, graph_scores, prune_graph
from circuits.replacement_model import ReplacementModel, build_replacement
from sae.errors import ConfigError, SaelabError

MLP_IN = "blocks.{layer}.mlp.hook_in"
MLP_OUT = "blocks.{layer}.hook_mlp_out"


def load_transcoders(run_dir: str | Path, n_layers: int, device) -> tuple[list, list[str]]:
    """One transcoder per MLP layer from ``run_dir`` (the first found from
    ``blocks.L.mlp.hook_in`` to ``blocks.L.hook_mlp_out``), frozen; and their names."""
    from sae.run_dir import find_saes
    from sae.spliceable import SAE

    found: dict[int, tuple] = {}
    try:
        entries = find_saes(run_dir)
    except SaelabError as e:  # the user's input: exit 2
        raise ConfigError(str(e)) from None
    for entry in entries:
        sae = SAE.load(entry.path, device=device)
        for layer in range(n_layers):
            if sae.hook_name == MLP_IN.format(layer=layer) and sae.hook_name_out == MLP_OUT.format(layer=layer):
                found.setdefault(layer, (sae.module, entry.name))
    missing = [layer for layer in range(n_layers) if layer not in found]
    if missing:
        raise ConfigError(
            f"{run_dir}: no transcoder from blocks.L.mlp.hook_in to blocks.L.hook_mlp_out for layer(s) "
            f"{', '.join(map(str, missing))} (an attribution graph needs one at every MLP: "
            "saelab train configs/transcoders.yaml)"
        )
    modules = [found[layer][0].eval().requires_grad_(False) for layer in range(n_layers)]
    return modules, [found[layer][1] for layer in range(n_layers)]


def prompt_tokens(model, prompt: str) -> torch.Tensor:
    """The prompt's tokens, BOS first; a prompt the model cannot read is one line."""
    if not prompt.strip():
        raise ConfigError("the prompt is empty")
    tokens = model.to_tokens(prompt, prepend_bos=True, truncate=False)[0]
    n_ctx = model.cfg.n_ctx
    if tokens.shape[0] > n_ctx:
        raise ConfigError(f"the prompt is {tokens.shape[0]} tokens with BOS; the model's context is {n_ctx}")
    return tokens


@dataclass
class AttributionGraph:
    """A built graph: the replacement model, the adjacency and its layout."""

    prompt: str
    replacement: ReplacementModel
    adjacency: torch.Tensor  # [N, N], A[target, source]
    layout: Layout

    @property
    def probabilities(self) -> torch.Tensor:
        return self.replacement.target_probs

    def scores(self) -> tuple[float, float]:
        return graph_scores(self.adjacency, self.layout, self.probabilities)

    def scores_without_constant(self) -> tuple[float, float]:
        """The scores with the constant node's row and column removed, as circuit-tracer
        (which has no such node) computes them: only tokens count as inputs."""
        keep = torch.ones(self.layout.n, dtype=torch.bool, device=self.adjacency.device)
        keep[self.layout.inputs.stop - 1] = False
        lay = self.layout
        smaller = Layout(lay.n_features, lay.n_errors, lay.n_inputs - 1, lay.n_logits)
        return graph_scores(self.adjacency[keep][:, keep], smaller, self.probabilities)

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
        return prune_graph(self.adjacency, self.layout, self.probabilities, node_threshold, edge_threshold)


def build_graph(
    model,
    transcoders: list,
    prompt: str,
    max_n_logits: int = 10,
    desired_logit_prob: float = 0.95,
    batch_size: int = 256,
    progress: bool = False,
) -> AttributionGraph:
    tokens = prompt_tokens(model, prompt)
    rm = build_replacement(model, transcoders, tokens, max_n_logits, desired_logit_prob)
    A = rm.adjacency(batch_size=batch_size, progress=progress)
    layout = Layout(
        n_features=rm.n_features,
        n_errors=rm.weights.n_layers * rm.n_pos,
        n_inputs=rm.n_pos + 1,
        n_logits=len(rm.target_tokens),
    )
    return AttributionGraph(prompt, rm, A, layout)


def graph_summary(
    graph: AttributionGraph, pruned: Pruned, node_threshold: float, edge_threshold: float, tokenizer=None
) -> dict:
    """What ``saelab graph --json`` prints: scores and node counts before and after pruning
    (``n_nodes_pruned``: the nodes the pruned graph keeps; ``kept_fraction``: their share)."""
    replacement, completeness = graph.scores()
    replacement_ct, completeness_ct = graph.scores_without_constant()
    lay = graph.layout
    kept = pruned.node_mask
    n_feat_kept = int(kept[: lay.n_features].sum())
    n_err_kept = int(kept[lay.errors].sum())
    rm = graph.replacement
    return {
        "kind": "attribution_graph",
        "prompt": graph.prompt,
        "n_tokens": rm.n_pos,
        "replacement_score": replacement,
        "completeness_score": completeness,
        "replacement_score_without_constant": replacement_ct,
        "completeness_score_without_constant": completeness_ct,
        "n_nodes": lay.n,
        "n_feature_nodes": lay.n_features,
        "n_error_nodes": lay.n_errors,
        "n_nodes_pruned": int(kept.sum()),
        "n_feature_nodes_pruned": n_feat_kept,
        "n_error_nodes_pruned": n_err_kept,
        "kept_fraction": float(kept.sum()) / lay.n,
        "kept_fraction_features": n_feat_kept / max(lay.n_features, 1),
        "n_edges_pruned": int(pruned.edge_mask.sum()),
        "node_threshold": node_threshold,
        "edge_threshold": edge_threshold,
        "target_logits": [
            {"token": int(t), "text": tokenizer.decode([int(t)]) if tokenizer else None, "probability": float(p)}
            for t, p in zip(rm.target_tokens, rm.target_probs, strict=True)
        ],
        "note": "attention patterns and LayerNorm scales are frozen: query/key effects are not attributed",
    }
