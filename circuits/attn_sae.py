"""The attention-SAE circuit finder, built on Kissane et al. (2024).

Inputs: one TopK SAE per layer on ``attn.hook_z`` (heads concatenated), trained on the
organism corpus — not on the task. For each feature i of layer L, its per-head
decoder-norm attribution is h_{i,k} = ‖W_dec[i, head k]‖ / Σ_j ‖W_dec[i, head j]‖
(Kissane et al.'s weight-based head attribution). The feature's task relevance is how
much more it fires on positive than on negative prompts, Δ_i = max(0, E_pos f_i − E_neg
f_i), with activations averaged over each prompt's positions. A head's score is
Σ_i h_{i,k}·Δ_i over its layer's features.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from circuits.graph import Graph, Node

N_TOKENS = 1_000_000
D_SAE = 1024
K = 16


def head_attribution(W_dec: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``[d_sae, n_heads]`` decoder-norm share of each head in each feature."""
    norms = W_dec.reshape(W_dec.shape[0], n_heads, -1).norm(dim=-1)
    return norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)


def train_layer_saes(model, out_dir: Path, n_tokens: int = N_TOKENS, progress: bool = False) -> list[Path]:
    """TopK SAEs on every layer's hook_z, trained side by side on one activation stream."""
    from sae.train_run import RunConfig, train

    n_layers = model.cfg.n_layers
    cfg = RunConfig.model_validate({
        "data": {"model": "organism", "n_tokens": n_tokens, "context_size": 64},
        "saes": [{"name": f"layer{layer}", "hook": f"blocks.{layer}.attn.hook_z",
                  "sae": {"architecture": "topk", "d_sae": D_SAE, "k": K}} for layer in range(n_layers)],
        "trainer": {"batch_size": 4096, "wandb_project": None},
        "heldout": None,
    })
    train(cfg, out_dir, progress=progress, model=model, tokenizer=model.tokenizer)
    return [out_dir / f"layer{layer}" for layer in range(n_layers)]


def attn_sae_scores(model, batch, saes: list) -> dict[Node, float]:
    from sae.harvest import Harvester

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    hooks = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    harvester = Harvester(model, model.tokenizer, hooks)
    mask = (torch.arange(batch.tokens.shape[1])[None, :] < batch.lengths[:, None]).float()
    scores = {}
    with torch.no_grad():
        pos, neg = harvester.full(batch.tokens), harvester.full(batch.corrupt_tokens)
        for layer, sae in enumerate(saes):
            fp = (sae.encode(pos[hooks[layer]]) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            fn = (sae.encode(neg[hooks[layer]]) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            delta = (fp.mean(0) - fn.mean(0)).clamp_min(0)  # [d_sae]
            attribution = head_attribution(sae.W_dec, n_heads)  # [d_sae, n_heads]
            per_head = delta @ attribution
            for h in range(n_heads):
                scores[Node("head", layer, h)] = float(per_head[h])
    return scores


def run_attn_sae(model, tokenizer, task, n_prompts=250, seed=0, sae_dir: str | None = None, progress=False, **_):
    from circuits.methods import MethodResult, _batches
    from sae.saving import load_sae

    _, batch = _batches(tokenizer, task, n_prompts, seed)
    start = time.time()
    trained_here = sae_dir is None
    if trained_here:
        import tempfile

        sae_dir = tempfile.mkdtemp(prefix="saelab_attn_saes_")
    root = Path(sae_dir)
    paths = [root / f"layer{layer}" for layer in range(model.cfg.n_layers)]
    if not all((p / "cfg.json").is_file() for p in paths):
        paths = train_layer_saes(model, root, progress=progress)
    saes = [load_sae(p)[0] for p in paths]
    scores = attn_sae_scores(model, batch, saes)
    heads = Graph.of(model).heads
    return MethodResult(task, "attn-sae", {h: scores.get(h, 0.0) for h in heads}, time.time() - start, n_prompts,
                        forward_passes=2,
                        details={"saes": str(root), "trained_in_this_run": trained_here,
                                 "sae": f"topk k={K}, d_sae={D_SAE} per layer on attn.hook_z, organism corpus"})
