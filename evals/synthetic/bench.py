"""The synthetic benchmark: every SAE family trained on known features, scored on recovery.

All families of one configuration train side by side on one stream of synthetic batches
through the ordinary ``sae.trainer.Trainer`` (gradient SAEs read the downstream gradient
of ``SyntheticData.gradient``), then each is scored on fresh rows: reconstruction (FVU, L0,
dead latents, with the inference encoder) and dictionary recovery (``score.recovery``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from evals.core.metrics import ReconstructionStats
from evals.suite_config import SyntheticFamily, SyntheticSuite
from evals.synthetic.generate import PRESETS, SyntheticConfig, SyntheticData
from evals.synthetic.score import mcc, recovery
from sae.architectures import families, family
from sae.config import build_config
from sae.errors import ConfigError
from sae.trainer import Member, Trainer, TrainerConfig

EVAL_ROWS = 16_384
#: the sparsity-coefficient weight of coefficient families (ReLU's L1) on these data
#: (unit-norm features, magnitudes ~1)
COEFFICIENT = 0.1


def default_families(k: int) -> list[SyntheticFamily]:
    """Every trainable family with its defaults, aimed at L0 k = the data's expected L0
    (``Family.config_at_l0``; coefficient families at weight ``COEFFICIENT``)."""
    out = []
    for entry in families(trainable=True):
        _, aim = entry.config_at_l0(k, coefficients=(COEFFICIENT,))[0]
        out.append(SyntheticFamily(name=entry.name, sae={"architecture": entry.name, **aim}))
    return out


def build_family(spec: SyntheticFamily, data_cfg: SyntheticConfig, expansion: float):
    entry = family(spec.sae.get("architecture", "?"))
    cls = entry.sae_class
    fields = {"d_in": data_cfg.d, "d_sae": max(1, round(expansion * data_cfg.n_features)), **spec.sae}
    if entry.has_k and "k" in fields:
        fields["k"] = min(fields["k"], fields["d_sae"])
    return cls(build_config(cls.config_class, fields, f"synthetic.families[{spec.name}].sae"))


def score_sae(data: SyntheticData, sae, seed: int, n_rows: int = EVAL_ROWS) -> dict:
    """Reconstruction and recovery of one trained SAE on fresh rows."""
    gen = torch.Generator().manual_seed(seed)
    x, _ = data.sample(n_rows, gen)
    sae.eval()
    with torch.no_grad():
        selection, x_hat = sae.reconstruct(x)
    stats = ReconstructionStats(sae.cfg.d_sae)
    stats.update(x, selection, x_hat)
    rec = stats.result()
    alive = stats.fire_counts > 0
    out = {k: rec[k] for k in ("fvu", "l0", "dead_fraction", "cosine_similarity")}
    out.update(recovery(data.dictionary, sae.W_dec.detach(), alive=alive))
    out["d_sae"] = sae.cfg.d_sae
    return out


def run_config(
    name: str,
    data_cfg: SyntheticConfig,
    suite: SyntheticSuite,
    progress: bool = True,
    run_dir: str | Path | None = None,
) -> dict:
    """Train every family on one data configuration; returns {config, families: name → scores}."""
    data = SyntheticData(data_cfg)
    families = suite.families or default_families(max(1, round(data_cfg.mean_active)))
    if len({f.name for f in families}) != len(families):
        raise ConfigError("synthetic.families: names must be unique")
    torch.manual_seed(suite.seed)
    members = [
        Member.reading(f.name, build_family(f, data_cfg, suite.expansion), "x", lr=f.lr or suite.lr) for f in families
    ]
    with_grads = any(m.sae.needs_gradients for m in members)
    tcfg = TrainerConfig(
        batch_size=suite.batch_size,
        lr=suite.lr,
        warmup_steps=min(100, suite.steps // 10),
        checkpoint_every=0,
        log_every=max(1, suite.steps // 10),
        seed=suite.seed,
        wandb_project=None,
        dead_after_tokens=max(suite.batch_size * 50, 1),
    )
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="saelab_synth_") as tmp:
        trainer = Trainer(members, tcfg, run_dir or tmp, progress=progress)
        trainer.fit(data.batches(suite.batch_size, seed=suite.seed + 1, with_grads=with_grads), suite.steps)
    seconds = time.time() - start
    scores = {
        m.name: {"architecture": m.sae.cfg.architecture, **score_sae(data, m.sae, seed=suite.seed + 2)} for m in members
    }
    # chance: every score of a random dictionary of each family's shape (keyed by d_sae)
    widths = dict.fromkeys(m.sae.cfg.d_sae for m in members)
    chance = {str(w): chance_scores(data, w, suite.seed) for w in widths}
    return {
        "name": name,
        "config": data_cfg.model_dump(),
        "steps": suite.steps,
        "batch_size": suite.batch_size,
        "train_seconds": round(seconds, 1),
        "chance": chance,
        "mcc_chance": chance[str(members[0].sae.cfg.d_sae)]["mcc"],  # the first family's width (older readers)
        "families": scores,
    }


def random_dictionary(data: SyntheticData, d_sae: int, seed: int) -> torch.Tensor:
    """``d_sae`` Gaussian directions in d dimensions (isotropic, so unit-normalised they are
    uniform on the sphere): a dictionary of the learned ones' shape that learned nothing."""
    gen = torch.Generator().manual_seed(seed + 3)
    return torch.randn(d_sae, data.cfg.d, generator=gen)


def chance_scores(data: SyntheticData, d_sae: int, seed: int) -> dict:
    """Every recovery score (``score.recovery``: MMCS, MCC, precision/recall/F1 at the same
    cosine threshold) of a random dictionary of ``d_sae`` directions, every latent counted
    live: the floor each score should be read against. It depends on the width (MCC about
    0.42 at d = 32, 0.25 at 128, 0.19 at 256; precision and recall at cos > 0.9 are ~0
    unless d is tiny)."""
    return recovery(data.dictionary, random_dictionary(data, d_sae, seed))


def chance_mcc(data: SyntheticData, d_sae: int, seed: int) -> float:
    """MCC of the random dictionary of ``chance_scores`` (the same draw)."""
    return mcc(data.dictionary, random_dictionary(data, d_sae, seed))


def run_benchmark(suite: SyntheticSuite, progress: bool = True) -> dict:
    """Every named configuration of ``suite``."""
    out = {}
    for name in suite.configs:
        if name not in PRESETS:
            raise ConfigError(f"synthetic.configs: unknown configuration {name!r}; known: {', '.join(PRESETS)}")
        out[name] = run_config(name, PRESETS[name], suite, progress=progress)
    return out
