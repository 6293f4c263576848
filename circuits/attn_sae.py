"""The attention-SAE circuit finder, built on Kissane et al. (2024).

Inputs: one TopK SAE per layer on ``attn.hook_z`` (heads concatenated), trained with the
lab's trainer on the model's corpus, not on the task. For each feature i of layer L, its
per-head decoder-norm attribution is h_{i,k} = ‖W_dec[i, head k]‖ / Σ_j ‖W_dec[i, head j]‖
(Kissane et al.'s weight-based head attribution). The feature's task relevance is how
much more it fires on positive than on negative prompts, Δ_i = max(0, E_pos f_i − E_neg
f_i), with activations averaged over each prompt's positions (BOS and padding excluded,
as in training). A head's score is Σ_i h_{i,k}·Δ_i over its layer's features.

Value biases: ``hook_z`` is read as the bridge gives it, b_V included (TransformerLens'
``fold_value_biases``, which Kissane et al.'s models had, would subtract b_V^h from every
z_h). That is a constant shift of the SAE's input; the SAEs subtract b_dec before
encoding and start it at the data's geometric median, both translation-equivariant, so
the shift is absorbed by b_dec and neither the decoder-norm attribution (W_dec) nor the
feature activations change, except through the input scale √d_in / E‖x‖, which the
shift moves slightly. It is not folded; the head codebooks of the discrete-SAE method,
where one SAE is shared by all heads and no single bias can absorb per-head constants,
are (``circuits.discrete_sae.value_bias_writes``).

The seconds reported include training the SAEs: measured here when they are trained in
the run, read from the run's ``sweep_summary.json`` when existing SAEs are reused.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange

from circuits.graph import Graph, Node
from sae.model import model_device

D_SAE = 1024
K = 16


def head_attribution(W_dec: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[d_sae, n_heads]`` decoder-norm share of each head in each feature."""
    norms = rearrange(W_dec, "f (head d_head) -> f head d_head", head=n_heads).norm(dim=-1)
    return norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)


def layer_sae_paths(root: Path, n_layers: int) -> list[Path]:
    return [root / f"layer{layer}" for layer in range(n_layers)]


def model_name(model) -> str:
    """The name ``sae.train_run`` records for ``model``: its provider, or where it was loaded from."""
    from sae import providers

    source = getattr(model, "saelab_source", None)
    if source is None:
        return providers.default_name()
    return source.provider if source.kind == "provider" else source.location


def layer_sae_config(model, name: str, n_tokens: int):
    """The ``sae.train_run`` config of the per-layer hook_z SAEs, training where the model runs."""
    from sae.train_run import RunConfig

    return RunConfig.model_validate(
        {
            "data": {"model": name, "n_tokens": n_tokens, "context_size": 64},
            "saes": [
                {
                    "name": f"layer{layer}",
                    "hook": f"blocks.{layer}.attn.hook_z",
                    "sae": {"architecture": "topk", "d_sae": D_SAE, "k": K},
                }
                for layer in range(model.cfg.n_layers)
            ],
            "trainer": {
                "batch_size": 4096,
                "wandb_project": None,
                "checkpoint_every": 0,
                "device": str(model_device(model)),  # the SAEs train where the model runs
            },
            "heldout": None,
        }
    )


def train_layer_saes(model, tokenizer, out_dir: Path, n_tokens: int, progress: bool = False) -> float:
    """TopK SAEs on every layer's hook_z, trained side by side on one activation stream
    with ``sae.train_run``; returns the training seconds."""
    from sae.train_run import train

    cfg = layer_sae_config(model, model_name(model), n_tokens)
    start = time.time()
    train(cfg, out_dir, progress=progress, model=model, tokenizer=tokenizer)
    return time.time() - start


def training_seconds(root: Path) -> float | None:
    try:
        return float(json.loads((root / "sweep_summary.json").read_text())["seconds"]["train"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


@torch.no_grad()
def attn_sae_scores(model, tokenizer, batch, saes: list) -> tuple[dict[Node, float], dict]:
    from sae.harvest import Harvester

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    hooks = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    harvester = Harvester(model, tokenizer, hooks)
    pos, neg = harvester.full(batch.tokens), harvester.full(batch.corrupt_tokens)  # on the model's device
    device = pos[hooks[0]].device
    positions = torch.arange(batch.tokens.shape[1], device=device)[None, :]
    mask = ((positions >= 1) & (positions < batch.lengths.to(device)[:, None])).float()  # no BOS, no padding
    scores, top = {}, {}
    for layer, sae in enumerate(saes):
        fp = (sae.encode(pos[hooks[layer]]) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        fn = (sae.encode(neg[hooks[layer]]) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        delta = (fp.mean(0) - fn.mean(0)).clamp_min(0)  # [d_sae]
        attribution = head_attribution(sae.W_dec, n_heads)  # [d_sae, n_heads]
        per_head = delta @ attribution
        for h, value in enumerate(per_head.tolist()):
            scores[Node("head", layer, h)] = value
        best = delta.topk(min(5, delta.numel()))
        top[f"layer{layer}"] = [
            {"feature": i, "delta": v} for v, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)
        ]
    return scores, top


@dataclass
class AttnSAECircuit:
    """Head scores of the attention-SAE method, the seconds they took, and how they were made."""

    node_scores: dict[Node, float]
    seconds: float
    details: dict


def attn_sae_circuit(
    model, tokenizer, batch, sae_dir: str | Path | None, n_tokens: int, progress: bool = False
) -> AttnSAECircuit:
    """Score ``batch``'s heads with the SAEs in ``sae_dir`` (trained there first if missing,
    on ``n_tokens`` tokens); with no directory, train into a temporary one that is removed
    afterwards."""
    if sae_dir is None:
        with tempfile.TemporaryDirectory(prefix="saelab_attn_saes_") as tmp:
            res = attn_sae_circuit(model, tokenizer, batch, tmp, n_tokens, progress)
        res.details["saes"] = None
        return res
    from sae.saving import load_sae

    start = time.time()
    root = Path(sae_dir)
    paths = layer_sae_paths(root, model.cfg.n_layers)
    trained_here = not all((p / "cfg.json").is_file() for p in paths)
    if trained_here:
        train_seconds = train_layer_saes(model, tokenizer, root, n_tokens, progress=progress)
    else:
        train_seconds = training_seconds(root)
    saes = [load_sae(p, device=model_device(model))[0].eval() for p in paths]
    scores, top = attn_sae_scores(model, tokenizer, batch, saes)
    elapsed = time.time() - start
    seconds = elapsed if trained_here or train_seconds is None else elapsed + train_seconds
    heads = Graph.of(model).heads
    return AttnSAECircuit(
        {h: scores.get(h, 0.0) for h in heads},
        seconds,
        details={
            "saes": str(root),
            "trained_in_this_run": trained_here,
            "training_seconds": train_seconds,
            "hook": "blocks.L.attn.hook_z (heads concatenated)",
            "sae": f"topk k={K}, d_sae={D_SAE} per layer, trained on the model's corpus",
            "node_score": "sum over features of decoder-norm head share x "
            "max(0, mean activation on positives - on negatives)",
            "top_features": top,
        },
    )
