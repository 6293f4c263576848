"""Full-distribution SAEs: the same per-head hooks, trained on the model's corpus.

These are SAEs as a lab would train them for general use (Makelov et al.'s OpenWebText
SAEs), here through ``sae.train_run.train`` on the organism corpus (or the text source
given), one per hook and family, all on one activation stream. Widths and L0 match the
task SAEs (``Family.config_at_l0``: k = the target, or a grid of coefficient weights such as
ReLU's L1, selected per location by evaluation L0).
Gradient SAEs (gsae) train here only: the store harvests g = ∂L/∂x with the rows.

Batch-level families (mutual and feature choice) infer with thresholds learned on corpus
rows; on the task's rows (larger, e.g. name movers at END) more latents pass them, so their
evaluation L0 can exceed k: the results report it and flag families outside the L0 band.
"""

from __future__ import annotations

from pathlib import Path

from evals.supervised.config import SAEsConfig
from evals.supervised.locations import Location
from sae.architectures import trainable_family
from sae.errors import SaelabError


def full_run_config(locations: list[Location], cfg: SAEsConfig, model_name: str, d_in_of) -> dict:
    hooks = sorted({(loc.layer, loc.head, loc.site) for loc in locations})
    saes = []
    for layer, head, site in hooks:
        hook = f"blocks.{layer}.attn.hook_{site}[{head}]"
        d_sae = cfg.d_sae_multiple * d_in_of(hook)
        for arch in cfg.architectures:
            extra = cfg.family_config.get(arch, {})
            saes += [
                {
                    "name": f"{variant}/{layer}.{head}.{site}",
                    "hook": hook,
                    "sae": {"architecture": arch, "d_sae": d_sae, **extra, **aim},
                }
                for variant, aim in trainable_family(arch).config_at_l0(cfg.l0, d_sae, cfg.full_relu_l1_grid)
            ]
    data = {"model": model_name, "n_tokens": cfg.full_tokens, "context_size": 64}
    if "full_source" in cfg.model_fields_set:
        data["source"] = cfg.full_source.model_dump(mode="json")
    # else the run config's data section gives a provider's model its own text (organism-b's
    # corpus for organism-b), and any other model the default provider's
    return {
        "data": data,
        "saes": saes,
        "trainer": {"batch_size": cfg.full_batch_size, "seed": cfg.seed, "wandb_project": None},
        "heldout": None,
    }


def train_full_saes(
    locations: list[Location],
    cfg: SAEsConfig,
    out_dir: str | Path,
    model,
    tokenizer,
    model_name: str,
    progress: bool = True,
) -> list[Path]:
    """Train (or, when ``out_dir`` holds the same finished run, reuse) every full-distribution SAE."""
    from sae.hooks import resolve_hook
    from sae.train_run import RunConfig, train

    out = Path(out_dir)
    run = RunConfig.model_validate(full_run_config(locations, cfg, model_name, lambda h: resolve_hook(model, h).d_in))
    names = [spec.name for spec in run.saes]
    if not (out / "sweep_summary.json").is_file():
        if run.trainer.batch_size > cfg.full_tokens:
            raise SaelabError(
                f"saes.full_tokens ({cfg.full_tokens}) is smaller than one batch ({run.trainer.batch_size})"
            )
        train(run, out, progress=progress, model=model, tokenizer=tokenizer)
    paths = [out / name for name in names]
    missing = [str(p) for p in paths if not (p / "cfg.json").is_file()]
    if missing:
        raise SaelabError(
            f"{out}: holds a different full-distribution run (missing {missing[0]}); use another --out or remove it"
        )
    return paths
