"""Task SAEs: one per location and family, trained on the fitting prompts' activations.

As in Makelov et al. (A.11), a task SAE sees only the activations of its location (one
head's q, k, v or z at one position) on IOI prompts. All of them train side by side on
one stream through ``sae.trainer.Trainer``: each batch maps every location key to the
same rows (prompts) of its activations, shuffled anew every epoch, inputs scaled to mean
norm √d_in (the scale is folded back into the saved weights).

L0 is matched by construction for the k-families (k = the target; batch-level rules hit
it on average in training and through their learned thresholds at inference). A ReLU
SAE's L0 follows from its L1 coefficient, so a grid of coefficients trains side by side
and the evaluation keeps, per location, the one whose L0 on the evaluation prompts is
nearest the target (``loading.match_l0``).

Gradient SAEs (gsae) need g = ∂L/∂x with each row, which task rows do not carry: they
are trained on the corpus only (full distribution).

The random-decoder control (Makelov et al.'s frozen random decoders) is a TopK SAE with
the same k and width whose decoder rows are fixed random unit directions; its encoder
and b_dec are trained.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from evals.supervised.config import SAEsConfig
from evals.supervised.locations import Location
from sae.architectures import config_class, sae_class, trainable_family
from sae.atomic import write_json
from sae.errors import SaelabError
from sae.saving import save_sae
from sae.train_run import folded_copy
from sae.trainer import Member, Trainer, TrainerConfig

RANDOM = "random_decoder"


def task_architectures(cfg: SAEsConfig) -> list[str]:
    """The families of ``cfg`` trained on task rows: those not supervised by gradients."""
    return [a for a in cfg.architectures if not trainable_family(a, "saes.architectures: ").needs_gradients]


def variant_specs(cfg: SAEsConfig, d_in: int) -> list[tuple[str, str, dict]]:
    """``(variant name, family, SAE config)`` of every SAE trained at one location, each family
    aimed at ``cfg.l0`` (``Family.config_at_l0``: k, or a grid of coefficient weights)."""
    d_sae = cfg.d_sae_multiple * d_in
    out = []
    for arch in task_architectures(cfg) if cfg.task else ():
        extra = cfg.family_config.get(arch, {})
        for variant, aim in trainable_family(arch).config_at_l0(cfg.l0, d_sae, cfg.relu_l1_grid):
            out.append((variant, arch, {"architecture": arch, "d_sae": d_sae, **extra, **aim}))
    if cfg.random_decoder:
        out.append((RANDOM, RANDOM, {"architecture": "topk", "d_sae": d_sae, "k": min(cfg.l0, d_sae)}))
    return out


def _build(family: str, sae_cfg: dict, d_in: int):
    arch = sae_cfg["architecture"]
    sae = sae_class(arch)(config_class(arch).model_validate({**sae_cfg, "d_in": d_in}))
    if family == RANDOM:
        sae.W_dec.requires_grad_(False)  # random unit rows from reset_parameters, never trained
    return sae


def _epochs(acts: dict[str, torch.Tensor], batch_size: int, seed: int):
    """``skip_rows → iterator`` of batches over shuffled epochs (exact resume for the trainer)."""
    n = next(iter(acts.values())).shape[0]
    per_epoch = n // batch_size

    def stream(skip_rows: int):
        step = skip_rows // batch_size
        epoch = step // per_epoch
        while True:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
            for b in range(step - epoch * per_epoch, per_epoch):
                idx = order[b * batch_size : (b + 1) * batch_size]
                yield {k: v[idx] for k, v in acts.items()}
            epoch += 1
            step = epoch * per_epoch

    return stream


def train_task_saes(
    fit_acts: dict[Location, torch.Tensor], cfg: SAEsConfig, out_dir: str | Path, model_name: str, progress: bool = True
) -> list[Path]:
    """Train every task SAE; returns their saved directories (``out_dir/<variant>/<location>``)."""
    out = Path(out_dir)
    n = next(iter(fit_acts.values())).shape[0]
    batch_size = min(cfg.task_batch_size, n)
    torch.manual_seed(cfg.seed)
    members, where = [], {}
    for loc, acts in fit_acts.items():
        d_in = acts.shape[1]
        norm = float(acts.float().norm(dim=-1).mean())
        scale = math.sqrt(d_in) / norm if norm > 0 else 1.0
        for variant, family, sae_cfg in variant_specs(cfg, d_in):
            name = f"{variant}|{loc.key}"
            members.append(Member.reading(name, _build(family, sae_cfg, d_in), loc.key, scale))
            where[name] = (variant, family, loc)
    if any(m.sae.needs_gradients for m in members):
        raise SaelabError("task SAEs cannot be gradient SAEs (no gradients are harvested for task rows)")
    tcfg = TrainerConfig(
        batch_size=batch_size,
        warmup_steps=min(50, cfg.task_epochs),
        decay_fraction=0.2,
        dead_after_tokens=2 * n,
        checkpoint_every=0,
        log_every=50,
        seed=cfg.seed,
        wandb_project=None,
    )
    steps = cfg.task_epochs * (n // batch_size)
    trainer = Trainer(members, tcfg, out / "_trainer", progress=progress)
    trainer.fit(_epochs({loc.key: a.float() for loc, a in fit_acts.items()}, batch_size, cfg.seed), steps)
    paths = []
    for m in members:
        variant, family, loc = where[m.name]
        sae = folded_copy(m.sae, m.scale)
        path = out / variant / loc.key
        save_sae(
            sae,
            path,
            metadata={
                "hook": loc.hook,
                "tl_hook": loc.tl_name,
                "head": loc.head,
                "model": model_name,
                "activation_scale": m.scale,
                "train_rows": trainer.rows,
                "train_steps": trainer.step,
                "name": m.name,
                "supervised": {
                    "kind": "random_decoder" if family == RANDOM else "task",
                    "family": family,
                    "location": loc.key,
                    "trained_on": "ioi_task",
                    "n_prompts": n,
                },
            },
        )
        paths.append(path)
    write_json(
        out / "task_saes.json", {"paths": [str(p.relative_to(out)) for p in paths], "rows": n, "steps": trainer.step}
    )
    return paths
