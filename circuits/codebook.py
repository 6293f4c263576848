"""The codebook behind the discrete-SAE finder: the paper's SAE or any registry family.

The paper's SAE (``DiscreteSAE``, ``train_discrete_sae``) and its fixed hyperparameters
(``N_CODES``, ``L1``, ``LR``, ``EPOCHS``) live here, beside the registry families that may
replace it; ``circuits.discrete_sae`` runs the method on whichever codebook is trained.

``train_codebook`` returns an ``encode`` function, ``[..., d] → [..., n_codes]``
activations, whose argmax is the code. Every family gets the paper's training budget:
the same rows, ``n_codes`` latents, Adam at lr 1e-3, 500 full-batch epochs. Families
keep their own losses and defaults, and are trained as the lab's trainer trains them
(inputs scaled to mean norm √d, ``input_scale``, applied again at encoding; decoder rows kept at
unit norm where the family asks for it; AuxK on the latents that did not fire in the
previous epoch; gradient SAEs read ∂L/∂x), without the trainer's learning-rate schedule
and clipping, which the paper's recipe does not have. k-sparse families use
``FAMILY_K`` latents per row unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

FAMILY_K = 8
N_CODES = 200
L1 = 0.02
LR = 1e-3
EPOCHS = 500

Encode = Callable[[torch.Tensor], torch.Tensor]


class DiscreteSAE(nn.Module):
    """The paper's SAE (sae-circuits ``src/sae.py``), reproduced exactly.

    f = ReLU((x − b) Eᵀ + e), x̂ = f Dᵀ + b, with b a tied bias starting at zero, E
    ``[n_codes, d_in]`` whose rows (one per code) are kept at unit norm, and D ``[d_in,
    n_codes]`` whose rows are kept at unit norm *over the codes*: the paper's constrained
    linear layer normalises the last weight dimension of both layers. Weights start as
    unit-normalised Gaussians (encoder and decoder independent), the encoder bias as
    U(−1/√d_in, 1/√d_in). Gradients lose their components along the weight rows, and the
    rows are renormalised at every step.
    """

    def __init__(self, d_in: int, n_codes: int = N_CODES, l1: float = L1, device: torch.device | str | None = None):
        super().__init__()
        self.l1 = l1
        self.b = nn.Parameter(torch.zeros(d_in, device=device))
        self.E = nn.Parameter(nn.functional.normalize(torch.randn(n_codes, d_in, device=device), dim=-1))
        bound = 1 / d_in**0.5
        self.e = nn.Parameter(torch.empty(n_codes, device=device).uniform_(-bound, bound))
        self.D = nn.Parameter(nn.functional.normalize(torch.randn(d_in, n_codes, device=device), dim=-1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b) @ self.E.T + self.e)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.D.T + self.b

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encode(x)
        return nn.functional.mse_loss(self.decode(f), x) + self.l1 * f.abs().sum(-1).mean()

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


def train_discrete_sae(
    samples: torch.Tensor, n_codes: int = N_CODES, seed: int = 0, epochs: int = EPOCHS
) -> DiscreteSAE:
    """Full-batch Adam on ``[n, d]`` head vectors, as the paper's ``train``, on their device."""
    torch.manual_seed(seed)
    sae = DiscreteSAE(samples.shape[1], n_codes, device=samples.device)
    opt = torch.optim.Adam(sae.parameters(), lr=LR)
    for _ in range(epochs):
        loss = sae.loss(samples)
        opt.zero_grad()
        loss.backward()
        sae.constrain()
        opt.step()
        sae.renormalise()
    return sae.eval()


def train_family(
    samples: torch.Tensor,
    family: str,
    seed: int = 0,
    n_codes: int = N_CODES,
    k: int | None = None,
    grads: torch.Tensor | None = None,
    epochs: int = EPOCHS,
) -> Encode:
    from sae.architectures import trainable_family

    entry = trainable_family(family, "--sae-arch: ")
    _, aim = entry.config_at_l0(k or FAMILY_K, n_codes)[0]  # k-families: k; others: their defaults
    cls = entry.sae_class
    torch.manual_seed(seed)
    # built where the torch default puts it (its initial weights drawn as they always are),
    # then trained on the samples' device
    sae = cls(cls.config_class(d_in=samples.shape[1], d_sae=n_codes, **aim)).to(samples.device)
    scale = input_scale(samples)
    x = samples * scale
    g = grads / scale if grads is not None else None
    sae.init_b_dec(x)
    opt = torch.optim.Adam(sae.parameters(), lr=LR)
    sae.train()
    dead = None
    for _ in range(epochs):
        out = sae(x, g=g, dead=dead)
        loss = sum(out.losses.values())
        opt.zero_grad()
        loss.backward()
        sae.remove_parallel_gradient()
        opt.step()
        sae.normalize_decoder()
        dead = out.fire_counts() == 0
    sae.eval()

    def encode(v: torch.Tensor) -> torch.Tensor:
        return sae.encode(v * scale)

    return encode


def input_scale(samples: torch.Tensor) -> float:
    """The lab trainer's convention: the factor that brings rows to mean norm √d."""
    norm = float(samples.norm(dim=-1).mean())
    return samples.shape[1] ** 0.5 / norm if norm > 0 else 1.0


def train_codebook(
    samples: torch.Tensor,
    family: str | None = None,
    seed: int = 0,
    n_codes: int = N_CODES,
    k: int | None = None,
    grads: torch.Tensor | None = None,
    scale_inputs: bool = False,
    epochs: int = EPOCHS,
) -> Encode:
    """Full-batch training on ``[n, d]`` head vectors; ``family`` None is the paper's SAE,
    on raw head vectors unless ``scale_inputs`` (families always scale, as the trainer does)."""
    if family is None or family == "discrete":
        scale = input_scale(samples) if scale_inputs else 1.0
        sae = train_discrete_sae(samples * scale, n_codes=n_codes, seed=seed, epochs=epochs)
        return lambda v: sae.encode(v * scale)
    return train_family(samples, family, seed=seed, n_codes=n_codes, k=k, grads=grads, epochs=epochs)


@torch.no_grad()
def codebook_stats(encode: Encode, samples: torch.Tensor, acts: torch.Tensor, codes: torch.Tensor) -> dict:
    """What the codebook looks like: how many codes the heads use, how sparse it is."""
    train_acts = encode(samples)
    return {
        "train_rows_without_code": float((train_acts.amax(-1) <= 0).float().mean()),
        "codes_used": int(codes.unique().numel()),
        "rows_without_code": float((acts.amax(-1) <= 0).float().mean()),
        "train_l0": float((train_acts > 0).float().sum(-1).mean()),
        "l0": float((acts > 0).float().sum(-1).mean()),
    }
