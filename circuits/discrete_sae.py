"""The discrete-SAE circuit finder (O'Neill & Bui, 2024), as the paper's code defines it.

1. Run positive prompts (the model can solve them) and negative prompts (it cannot: IOI
   with three distinct names, greater-than with start year 01), the negatives built as
   the paper's code builds them (each task's ``paper_negatives``).
2. Take every head's output written to the residual stream, z_h W_O^h, averaged over the
   prompt's positions (BOS included, padding excluded, as the paper's code runs each
   prompt alone with TransformerLens' default BOS), or at the last position. Each
   vector is centred over d_model: the paper reads GPT-2 through
   ``HookedTransformer.from_pretrained``, whose default ``center_writing_weights``
   centres every W_O, and z_h (W_O^h − mean) = z_h W_O^h − mean_d(z_h W_O^h). The
   model's output is unchanged by it (every reader of the residual stream is a
   LayerNorm); the SAE's input is what the paper's SAE saw. For the same reason the
   value biases are folded out (TransformerLens' default ``fold_value_biases``): since
   every attention pattern sums to 1, z_h = (pattern · x W_V^h) + b_V^h, so z_h W_O^h
   carries the constant b_V^h W_O^h, which ``fold_value_biases`` moves into b_O. The
   head vector is z_h W_O^h − b_V^h W_O^h (``value_bias_writes``); the heads of a layer
   still sum, with Σ_h b_V^h W_O^h + b_O, to the attention output. On the organism that
   constant is ~10% of a head write's norm and differs per head, and one SAE is shared
   by all heads, so it is not absorbed by the SAE's bias: it is removed as the paper's
   model had it removed. Measured on the organism (100 prompts, seeds 0-4, path-patching
   ground truth), the fold is within seed noise: node ROC AUC 0.742 ± 0.045 folded vs
   0.744 ± 0.052 not (IOI), 0.710 ± 0.071 vs 0.718 ± 0.058 (greater-than); it is kept
   because it is the paper's input, not for a gain.
3. Score codes on every positive and negative prompt given (the paper: all 250 + 250,
   its SAE's 10 training prompts among them), not only on the training prompts.
4. Train ONE SAE shared by all heads on the head vectors of a few prompts, drawn at
   random from positives and negatives together.
5. Discretise: each head's code on a prompt is the argmax latent over every prompt.
6. Node score: the number of codes a head uses on positives and never on negatives.
   Edge score: for a pair of heads, the number of code pairs that co-occur on a positive
   and never on a negative. The paper's "edge" ROC turns these into head scores
   (``edge_node_scores``).

Fixed hyperparameters (the paper's code, not tuned on the organism): 200 codes, a ReLU
SAE exactly as in the paper's code (``codebook.DiscreteSAE``), L1 λ = 0.02 on the mean activation
sum with the MSE averaged over elements, Adam lr 1e-3, 500 full-batch epochs, 10
training prompts. (The paper's config file has 300 codes; its text and this issue fix
200.) Any registry family can replace the ReLU SAE with the same code budget
(``codebook.train_family``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits.codebook import EPOCHS, N_CODES, codebook_stats, train_codebook
from circuits.graph import Graph, Node, per_head_hooks
from circuits.tasks.base import TaskBatch

N_TRAIN_PROMPTS = 10
POSITIONS = ("mean", "last")


def _pool(result: torch.Tensor, lengths: torch.Tensor, position: str) -> torch.Tensor:
    """``[b, s, heads, d]`` → ``[b, heads, d]``: mean over real positions, or the last one."""
    lengths = lengths.to(result.device)
    if position == "last":
        return result[torch.arange(result.shape[0], device=result.device), lengths - 1]
    mask = (torch.arange(result.shape[1], device=result.device)[None, :] < lengths[:, None]).to(result.dtype)
    return (result * mask[:, :, None, None]).sum(1) / lengths[:, None, None].to(result.dtype)


def _result_names(model) -> list[str]:
    return [f"blocks.{layer}.attn.hook_result" for layer in range(model.cfg.n_layers)]


def value_bias_writes(model) -> torch.Tensor:
    """``[n_layers * n_heads, d_model]``: b_V^h W_O^h, the constant each head writes
    through its value bias (what TransformerLens' ``fold_value_biases`` moves into b_O)."""
    b_v, w_o = model.b_V, model.W_O  # [L, H, d_head], [L, H, d_head, d_model]
    return torch.einsum("lhd,lhdm->lhm", b_v, w_o).flatten(0, 1)


@torch.no_grad()
def head_outputs(
    model, tokens: torch.Tensor, lengths: torch.Tensor, position: str = "mean", center: bool = True
) -> torch.Tensor:
    """``[n_prompts, n_heads_total, d_model]``: each head's write to the residual stream
    with its value bias folded out (``value_bias_writes``), centred over d_model, as
    TransformerLens' ``fold_value_biases`` and ``center_writing_weights`` leave it.
    ``center=False`` skips the per-head centring (the variant docs/validation.md reports
    on both organisms)."""
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r} ({' or '.join(POSITIONS)})")
    names = _result_names(model)
    with per_head_hooks(model):
        _, cache = model.run_with_cache(tokens, names_filter=names)
    pooled = _pool(torch.cat([cache[n] for n in names], dim=2), lengths, position)
    pooled = pooled - value_bias_writes(model).to(pooled)
    return pooled - pooled.mean(-1, keepdim=True) if center else pooled


def head_output_grads(model, tokens: torch.Tensor, lengths: torch.Tensor, position: str = "mean") -> torch.Tensor:
    """g = ∂L/∂(head output), pooled like the activations, with L the summed next-token
    cross-entropy over real tokens (what gradient SAEs read; see ``sae.harvest``)."""
    names = _result_names(model)
    store: dict[str, torch.Tensor] = {}

    def track(act, hook):
        return act.detach().requires_grad_(True)

    def save(name):
        def hook(act, hook):
            store[name] = act
            return act

        return hook

    with torch.enable_grad(), per_head_hooks(model):
        logits = model.run_with_hooks(tokens, fwd_hooks=[("hook_embed", track)] + [(n, save(n)) for n in names])
        targets = tokens[:, 1:]
        valid = torch.arange(1, tokens.shape[1], device=logits.device)[None, :] < lengths.to(logits.device)[:, None]
        ce = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
        grads = torch.autograd.grad((ce * valid.flatten()).sum(), [store[n] for n in names])
    return _pool(torch.cat(grads, dim=2), lengths, position)


def codes_of(acts: torch.Tensor) -> torch.Tensor:
    """Argmax latent per row of ``[..., n_codes]`` activations. As in the paper's code
    (``np.argmax``), a row on which no latent fires gets code 0, the first index."""
    return acts.argmax(-1)


def node_scores_from_codes(codes_pos: torch.Tensor, codes_neg: torch.Tensor) -> torch.Tensor:
    """Per head: |codes seen on positives − codes seen on negatives|."""
    n_heads = codes_pos.shape[1]
    width = int(max(codes_pos.max(), codes_neg.max())) + 1

    def keys(codes):
        return (torch.arange(n_heads, device=codes.device)[None, :] * width + codes).flatten().unique()

    pos, neg = keys(codes_pos), keys(codes_neg)
    only_pos = pos[~torch.isin(pos, neg)]
    return torch.bincount(only_pos // width, minlength=n_heads).float()


def codes_used(codes: torch.Tensor) -> torch.Tensor:
    """Per head (column of ``[n_prompts, n_heads]`` codes): how many distinct codes it uses."""
    return torch.tensor([float(codes[:, h].unique().numel()) for h in range(codes.shape[1])], device=codes.device)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation (scipy's, ties at their average rank); 0 when either side is constant."""
    from scipy.stats import spearmanr

    x, y = a.double().cpu().numpy(), b.double().cpu().numpy()
    if len(x) < 2 or (x == x[0]).all() or (y == y[0]).all():
        return 0.0
    return float(spearmanr(x, y).statistic)


def pair_scores_from_codes(codes_pos: torch.Tensor, codes_neg: torch.Tensor) -> dict[tuple[int, int], int]:
    """Per unordered head pair: code pairs that co-occur on some positive, never on a negative."""
    n_heads = codes_pos.shape[1]
    width = int(max(codes_pos.max(), codes_neg.max())) + 1
    h1, h2 = torch.triu_indices(n_heads, n_heads, offset=1, device=codes_pos.device)
    pair_id = torch.arange(h1.numel(), device=codes_pos.device)

    def keys(codes):
        return ((pair_id[None, :] * width + codes[:, h1]) * width + codes[:, h2]).flatten().unique()

    pos, neg = keys(codes_pos), keys(codes_neg)
    only_pos = pos[~torch.isin(pos, neg)]
    counts = torch.bincount(only_pos // (width * width), minlength=h1.numel())
    return {(a, b): c for a, b, c in zip(h1.tolist(), h2.tolist(), counts.tolist(), strict=True)}


def edge_node_scores(
    pair_scores: dict[tuple[int, int], float], n_heads_total: int, k: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """The paper's edge method as head scores (sae-circuits ``src/edge.py``): rank ordered
    head pairs by their score, walk the ranking collecting both endpoints of each pair,
    and count how often each head appears among the first ``k`` endpoints. The paper sets
    k = n_heads²/2 with n_heads its per-layer head count [inf]; ties keep the pair order."""
    ordered = []
    for (a, b), s in pair_scores.items():
        ordered += [(s, a, b), (s, b, a)]
    ordered.sort(key=lambda t: (-t[0], t[1], t[2]))
    endpoints = [h for _, a, b in ordered for h in (a, b)][:k]
    return torch.bincount(torch.tensor(endpoints, dtype=torch.long, device=device), minlength=n_heads_total).float()


@dataclass
class DiscreteResult:
    node_scores: dict[Node, float]
    pair_scores: dict[frozenset, float]
    edge_node_scores: dict[Node, float]
    codes_pos: torch.Tensor  # [n_prompts, n_heads] int
    codes_neg: torch.Tensor
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    codebook: dict = field(default_factory=dict)


def discrete_sae_circuit(
    model,
    batch: TaskBatch,
    n_train: int = N_TRAIN_PROMPTS,
    family: str | None = None,
    position: str = "mean",
    seed: int = 0,
    n_codes: int = N_CODES,
    k: int | None = None,
    scale_inputs: bool = False,
    center: bool = True,
    epochs: int = EPOCHS,
) -> DiscreteResult:
    """Run the method end to end on ``batch`` (clean = positives, corrupted = negatives;
    pass the task's ``paper_negatives`` batch for the paper's contrast). ``epochs`` is the
    paper's 500 unless a quick check asks for fewer."""
    start = time.time()
    pos = head_outputs(model, batch.tokens, batch.lengths, position, center)
    neg = head_outputs(model, batch.corrupt_tokens, batch.lengths, position, center)
    t_acts = time.time()
    both = torch.cat([pos, neg])
    # drawn on a CPU generator, so the SAE's training prompts are the same on every device
    cpu_draw = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(both.shape[0], generator=cpu_draw, device="cpu")[:n_train].to(both.device)
    samples = both[order].reshape(-1, both.shape[-1])
    grads = None
    if family is not None and family != "discrete":
        from sae.architectures import sae_class

        if sae_class(family).needs_gradients:
            tokens = torch.cat([batch.tokens, batch.corrupt_tokens])[order]
            lengths = torch.cat([batch.lengths, batch.lengths])[order]
            grads = head_output_grads(model, tokens, lengths, position).reshape(-1, both.shape[-1])
    encode = train_codebook(
        samples, family=family, seed=seed, n_codes=n_codes, k=k, grads=grads, scale_inputs=scale_inputs, epochs=epochs
    )
    t_train = time.time()
    with torch.no_grad():
        act_pos, act_neg = encode(pos), encode(neg)
        codes_pos, codes_neg = codes_of(act_pos), codes_of(act_neg)
    graph = Graph.of(model)
    heads = graph.heads
    node = node_scores_from_codes(codes_pos, codes_neg)
    pairs = pair_scores_from_codes(codes_pos, codes_neg)
    edge_nodes = edge_node_scores(pairs, len(heads), k=graph.n_heads**2 // 2, device=node.device)
    end = time.time()
    return DiscreteResult(
        node_scores=dict(zip(heads, node.tolist(), strict=True)),
        pair_scores={frozenset((heads[a], heads[b])): float(s) for (a, b), s in pairs.items()},
        edge_node_scores=dict(zip(heads, edge_nodes.tolist(), strict=True)),
        codes_pos=codes_pos,
        codes_neg=codes_neg,
        seconds=end - start,
        timings={"activations": t_acts - start, "sae_training": t_train - t_acts, "scoring": end - t_train},
        codebook={
            **codebook_stats(encode, samples, torch.cat([act_pos, act_neg]), torch.cat([codes_pos, codes_neg])),
            # how far the node score only tracks how many codes a head uses at all
            "score_vs_codes_used_spearman": spearman(node, codes_used(codes_pos)),
        },
    )
