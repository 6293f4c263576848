"""The codebook behind the discrete-SAE finder: the paper's SAE or any registry family.

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

from circuits.discrete_sae import EPOCHS, LR, N_CODES, train_discrete_sae

FAMILY_K = 8

Encode = Callable[[torch.Tensor], torch.Tensor]


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
    sae = cls(cls.config_class(d_in=samples.shape[1], d_sae=n_codes, **aim))
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
