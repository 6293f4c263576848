"""Random-tensor streams and SAE members shared by the trainer tests of both tiers."""

from __future__ import annotations

import torch

from sae.architectures import family, trainable
from sae.trainer import Member, TrainerConfig

D, F, B = 16, 64, 128


def stream(skip_rows: int, steps: int = 40, seed: int = 0, poison_at: int | None = None):
    """Sparse combinations of a fixed dictionary, plus a gradient-like signal."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randn(F, D, generator=g)
    true /= true.norm(dim=1, keepdim=True)
    for i in range(steps):
        codes = (torch.rand(B, F, generator=g) < 0.05).float() * (1 + torch.rand(B, F, generator=g))
        x = codes @ true + 0.01 * torch.randn(B, D, generator=g)
        grad = torch.randn(B, D, generator=g)
        if poison_at is not None and i == poison_at:
            x[0, 0] = float("nan")
        if i * B >= skip_rows:
            yield {"x": x, "x.grad": grad}


def members(archs=None):
    """One member per family (default: every trainable one): k = 4, or coefficient weight 0.05."""
    torch.manual_seed(0)
    out = []
    for arch in archs or trainable():
        entry = family(arch)
        cls = entry.sae_class
        kw = {"k": 4} if entry.has_k else {entry.coefficient.field: 0.05}
        grad_key = "x.grad" if entry.needs_gradients else None
        out.append(Member(arch, cls(cls.config_class(d_in=D, d_sae=F, **kw)), "x", grad_key, scale=1.5))
    return out


def cfg(**kw):
    return TrainerConfig(
        **{
            "batch_size": B,
            "lr": 3e-3,
            "warmup_steps": 5,
            "checkpoint_every": 10,
            "log_every": 5,
            "wandb_project": None,
            "dead_after_tokens": 2 * B,
            **kw,
        }
    )
