"""The discrete-SAE circuit finder (O'Neill & Bui, 2024), as the paper's code defines it.

1. Run positive prompts (the model can solve them) and negative prompts (it cannot: IOI
   with three distinct names, greater-than with start year 01).
2. Take every head's output written to the residual stream, z_h W_O^h, averaged over the
   prompt's positions (BOS included, padding excluded), or at the last position.
3. Train ONE SAE shared by all heads on the head vectors of a few prompts, positives and
   negatives shuffled together.
4. Discretise: each head's code on a prompt is the argmax latent.
5. Node score: the number of codes a head uses on positives and never on negatives.
   Edge score: for a pair of heads, the number of code pairs that co-occur on a positive
   and never on a negative.

Fixed hyperparameters (the paper's code, not tuned on the organism): 200 codes, a ReLU
SAE exactly as in the paper's code (``DiscreteSAE``), L1 λ = 0.02 on the mean activation
sum with the MSE averaged over elements, Adam lr 1e-3, 500 full-batch epochs, 10
training prompts. (The paper's config file has 300 codes; its text and this issue fix 200.) Any registry family can replace the ReLU SAE with the same 200-code
budget (k-sparse families use k = 8).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from circuits.graph import Graph, Node
from circuits.tasks.base import TaskBatch

N_CODES = 200
L1 = 0.02
LR = 1e-3
EPOCHS = 500
N_TRAIN_PROMPTS = 10
FAMILY_K = 8


class DiscreteSAE(nn.Module):
    """The paper's SAE (sae-circuits ``src/sae.py``), reproduced exactly.

    f = ReLU((x − b) Eᵀ + e), x̂ = f Dᵀ + b, with b a tied bias starting at zero, E
    ``[n_codes, d_in]`` whose rows (one per code) are kept at unit norm, and D ``[d_in,
    n_codes]`` whose rows are kept at unit norm *over the codes* — the paper's constrained
    linear layer normalises the last weight dimension of both layers. Weights start as
    unit-normalised Gaussians (encoder and decoder independent), the encoder bias as
    U(−1/√d_in, 1/√d_in). Gradients lose their components along the weight rows, and the
    rows are renormalised at every step.
    """

    def __init__(self, d_in: int, n_codes: int = N_CODES):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(d_in))
        self.E = nn.Parameter(nn.functional.normalize(torch.randn(n_codes, d_in), dim=-1))
        bound = 1 / d_in**0.5
        self.e = nn.Parameter(torch.empty(n_codes).uniform_(-bound, bound))
        self.D = nn.Parameter(nn.functional.normalize(torch.randn(d_in, n_codes), dim=-1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b) @ self.E.T + self.e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encode(x)
        x_hat = f @ self.D.T + self.b
        return nn.functional.mse_loss(x_hat, x) + L1 * f.abs().sum(-1).mean()

    @torch.no_grad()
    def constrain(self) -> None:
        for w in (self.E, self.D):
            if w.grad is not None:
                unit = w / w.norm(dim=-1, keepdim=True)
                w.grad -= (w.grad * unit).sum(-1, keepdim=True) * unit

    @torch.no_grad()
    def renormalise(self) -> None:
        for w in (self.E, self.D):
            w /= w.norm(dim=-1, keepdim=True)


@torch.no_grad()
def head_outputs(model, tokens: torch.Tensor, lengths: torch.Tensor, position: str = "mean") -> torch.Tensor:
    """``[n_prompts, n_heads_total, d_model]``: each head's write to the residual stream."""
    from circuits.graph import per_head_hooks

    n_layers = model.cfg.n_layers
    names = [f"blocks.{layer}.attn.hook_result" for layer in range(n_layers)]
    with per_head_hooks(model):
        _, cache = model.run_with_cache(tokens, names_filter=names)
    result = torch.cat([cache[n] for n in names], dim=2)  # [b, s, layers*heads, d]
    rows = torch.arange(tokens.shape[0])
    if position == "last":
        return result[rows, lengths - 1]
    mask = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).to(result.dtype)
    return (result * mask[:, :, None, None]).sum(1) / lengths[:, None, None].to(result.dtype)


def train_codebook(samples: torch.Tensor, family: str | None = None, seed: int = 0) -> nn.Module:
    """Full-batch training on ``[n, d]`` head vectors; returns a module with ``encode``."""
    torch.manual_seed(seed)
    if family is None or family == "discrete":
        sae = DiscreteSAE(samples.shape[1])
        loss_of = sae
        constrain, renorm = sae.constrain, sae.renormalise
    else:
        from sae.architectures import sae_class

        cls = sae_class(family)
        kw = {} if family == "relu" else {"k": FAMILY_K}
        sae = cls(cls.config_class(d_in=samples.shape[1], d_sae=N_CODES, b_dec_init="mean", **kw))
        sae.init_b_dec(samples)
        loss_of = lambda x: sum(sae(x).losses.values())  # noqa: E731
        constrain, renorm = sae.remove_parallel_gradient, sae.normalize_decoder
    opt = torch.optim.Adam(sae.parameters(), lr=LR)
    sae.train()
    for _ in range(EPOCHS):
        loss = loss_of(samples)
        opt.zero_grad()
        loss.backward()
        constrain()
        opt.step()
        renorm()
    return sae.eval()


@dataclass
class DiscreteResult:
    node_scores: dict[Node, float]
    pair_scores: dict[frozenset, float]
    codes_pos: torch.Tensor  # [n_prompts, n_heads] int
    codes_neg: torch.Tensor
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def node_scores_from_codes(codes_pos: torch.Tensor, codes_neg: torch.Tensor) -> torch.Tensor:
    """Per head: |codes seen on positives − codes seen on negatives|."""
    out = torch.zeros(codes_pos.shape[1])
    for h in range(codes_pos.shape[1]):
        out[h] = len(set(codes_pos[:, h].tolist()) - set(codes_neg[:, h].tolist()))
    return out


def pair_scores_from_codes(codes_pos: torch.Tensor, codes_neg: torch.Tensor) -> dict[tuple[int, int], int]:
    """Per unordered head pair: code pairs that co-occur on some positive, never on a negative."""
    n_heads = codes_pos.shape[1]
    pos, neg = codes_pos.tolist(), codes_neg.tolist()
    out = {}
    for h1, h2 in itertools.combinations(range(n_heads), 2):
        seen_pos = {(row[h1], row[h2]) for row in pos}
        seen_neg = {(row[h1], row[h2]) for row in neg}
        out[(h1, h2)] = len(seen_pos - seen_neg)
    return out


def discrete_sae_circuit(model, batch: TaskBatch, n_train: int = N_TRAIN_PROMPTS, family: str | None = None,
                         position: str = "mean", seed: int = 0) -> DiscreteResult:
    """Run the method end to end on ``batch`` (clean = positives, corrupted = negatives)."""
    start = time.time()
    pos = head_outputs(model, batch.tokens, batch.lengths, position)
    neg = head_outputs(model, batch.corrupt_tokens, batch.lengths, position)
    t_acts = time.time()
    both = torch.cat([pos, neg])
    order = torch.randperm(both.shape[0], generator=torch.Generator().manual_seed(seed))[:n_train]
    samples = both[order].reshape(-1, both.shape[-1])
    sae = train_codebook(samples, family, seed)
    t_train = time.time()
    with torch.no_grad():
        codes_pos = sae.encode(pos).argmax(-1)
        codes_neg = sae.encode(neg).argmax(-1)
    heads = Graph.of(model).heads
    node = node_scores_from_codes(codes_pos, codes_neg)
    pairs = pair_scores_from_codes(codes_pos, codes_neg)
    end = time.time()
    return DiscreteResult(
        node_scores={h: float(node[i]) for i, h in enumerate(heads)},
        pair_scores={frozenset((heads[a], heads[b])): float(s) for (a, b), s in pairs.items()},
        codes_pos=codes_pos, codes_neg=codes_neg, seconds=end - start,
        timings={"activations": t_acts - start, "sae_training": t_train - t_acts, "scoring": end - t_train},
    )
