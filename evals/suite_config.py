"""The evaluation suite's config (``configs/eval_suite.yaml``, ``configs/claims.yaml``).

One typed config drives every form of ``saelab eval --suite``: which held-out text the
SAEs are spliced into, how the mean-ablation baseline is estimated, whether the
synthetic benchmark and the attention analyses run, and, for the claims suite, which
SAEs to train (one run per seed, every hyperparameter written out) before evaluating.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from evals.saebench.config import SAEBenchSuite
from sae import providers
from sae.config import FrozenConfig
from sae.errors import ConfigError
from sae.text import TextSource
from sae.train_run import RunConfig

#: organism-corpus seeds the suite reads by default; training runs use other seeds (checked)
EVAL_SEED = 20_002
MEAN_SEED = 20_003


class EvalData(FrozenConfig):
    """The held-out text every SAE is evaluated on."""

    source: TextSource = Field(
        default_factory=TextSource,
        description="Text source (default: each model provider's own text, e.g. organism-b's corpus for "
        "organism-b SAEs; the default provider's for any other model).",
    )
    seed: int = Field(EVAL_SEED, description="Seed of the held-out stream; must differ from every run's training seed.")
    n_tokens: int = Field(131_072, gt=0, description="Token positions evaluated (BOS included, padding excluded).")
    context_size: int | None = Field(None, ge=2, description="Tokens per sequence; None: the runs' training context.")
    lm_batch_size: int = Field(64, gt=0, description="Sequences per forward pass.")
    device: str = Field("cpu", description="Device of the model and SAEs.")


class MeanAblation(FrozenConfig):
    """The mean-ablation baseline: the hook replaced by its mean over held-out tokens."""

    n_tokens: int = Field(65_536, gt=0, description="Token positions the mean is taken over (BOS excluded).")
    seed: int = Field(MEAN_SEED, description="Seed of the text the mean is taken over (disjoint from the eval text).")


class SyntheticFamily(FrozenConfig):
    """One SAE of the synthetic benchmark."""

    name: str = Field(..., description="Label in the results.")
    sae: dict[str, Any] = Field(
        ...,
        description="Family config (architecture and its fields; d_in comes from the data, d_sae "
        "from the expansion unless given).",
    )
    lr: float | None = Field(None, gt=0, description="Learning rate (default: the benchmark's).")

    @field_validator("sae")
    @classmethod
    def _known_fields(cls, sae: dict[str, Any]) -> dict[str, Any]:
        """A family the registry trains, and only its fields (values are checked once d_sae is known)."""
        from sae.architectures import REGISTRY, trainable

        entry = REGISTRY.get(sae.get("architecture"))
        if entry is None or not entry.trainable:
            raise ValueError(
                f"architecture {sae.get('architecture')!r} is not a trainable family ({', '.join(trainable())})"
            )
        unknown = sorted(set(sae) - set(entry.config_class.model_fields))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} for family {entry.name!r}")
        return sae


class SyntheticSuite(FrozenConfig):
    """The ground-truth benchmark (``evals.synthetic``): no language model."""

    enabled: bool = Field(True, description="Run it.")
    configs: list[str] = Field(["easy", "hard"], description="Named data configurations (evals.synthetic.PRESETS).")
    steps: int = Field(1500, gt=0, description="Training steps per SAE.")
    batch_size: int = Field(1024, gt=0, description="Rows per step.")
    lr: float = Field(3e-3, gt=0, description="Learning rate.")
    expansion: float = Field(
        1.0, gt=0, description="d_sae = expansion × the number of true features (unless a family sets d_sae)."
    )
    seed: int = Field(0, description="Seed of the data and of the SAEs.")
    families: list[SyntheticFamily] = Field(
        default_factory=list,
        description="SAEs trained on every configuration; "
        "empty: every trainable family with its defaults (k = expected L0).",
    )


class AttentionSuite(FrozenConfig):
    """Kissane et al.'s analyses for ``attn.hook_z`` SAEs (heads concatenated)."""

    enabled: bool = Field(True, description="Run them for every hook_z SAE.")
    top_features: int = Field(10, gt=0, description="Features listed per head (by decoder-norm share).")
    dfa_prompts: int = Field(4, ge=0, description="Held-out sequences for which DFA examples are recorded.")


SEED_SEPARATOR = ".s"  # SAE "topk" of seed 2 is saved as "topk.s2"


class TrainSection(FrozenConfig):
    """SAEs the suite trains before evaluating (the claims suite).

    Every SAE of ``run.saes`` is trained once per seed, all of them side by side in one run
    on one activation stream (one harvest of the language model for all seeds): the seeds
    are initialisations (each SAE's own ``seed``, so SAEs of one seed and width start from
    the same weights whatever else the run holds), the training text is shared. Copy ``n``
    of SAE ``name`` is saved as ``name.s<seed>``.
    """

    seeds: list[int] = Field(..., min_length=1, description="Initialisation seeds; each SAE is trained once per seed.")
    run: RunConfig = Field(
        ...,
        description="A 'saelab train' config (data, saes, trainer) whose SAEs are "
        "replicated per seed; held-out scoring is the suite's.",
    )

    @field_validator("run")
    @classmethod
    def _named(cls, run: RunConfig) -> RunConfig:
        for i, spec in enumerate(run.saes):
            if not spec.name:
                raise ValueError(f"saes.{i}: every SAE of a claims suite needs a 'name'")
        return run

    def run_config(self) -> RunConfig:
        """The ``RunConfig`` of the run (every SAE once per seed)."""
        from sae.config import build_config

        run = self.run.model_dump()
        run["saes"] = [
            {**spec, "name": f"{spec['name']}{SEED_SEPARATOR}{seed}", "seed": seed}
            for spec in run["saes"]
            for seed in self.seeds
        ]
        run["trainer"] = {**run["trainer"], "seed": self.seeds[0]}
        run["heldout"] = None
        return build_config(RunConfig, run, "train.run")


def split_seed(name: str) -> tuple[str, int | None]:
    """``"topk.s2"`` → ``("topk", 2)``; a name without a seed suffix → ``(name, None)``."""
    base, sep, seed = name.rpartition(SEED_SEPARATOR)
    if sep and base and seed.isdigit():
        return base, int(seed)
    return name, None


class SuiteConfig(FrozenConfig):
    """``saelab eval --suite CONFIG``."""

    data: EvalData = Field(default_factory=EvalData, description="The held-out text every SAE is evaluated on.")
    mean_ablation: MeanAblation = Field(default_factory=MeanAblation, description="The mean-ablation baseline.")
    splice: bool = Field(True, description="Splice the SAEs into the model (CE, KL); off: reconstruction only.")
    dense_threshold: float = Field(
        0.1, gt=0, le=1, description="A latent firing on more than this fraction of tokens is dense."
    )
    synthetic: SyntheticSuite = Field(
        default_factory=lambda: SyntheticSuite(enabled=False),
        description="The synthetic ground-truth benchmark (off unless the section is given).",
    )
    attention: AttentionSuite = Field(
        default_factory=AttentionSuite, description="Attention-SAE analyses (head attribution, DFA)."
    )
    train: TrainSection | None = Field(None, description="Train these SAEs first (claims).")
    claims: bool = Field(False, description="Test the seed papers' claims on the trained SAEs (needs train).")
    l0_target: float | None = Field(None, gt=0, description="Matched held-out L0 the compared SAEs should have.")
    l0_tolerance: float = Field(0.1, ge=0, description="Band half-width as a fraction of l0_target.")
    saebench: SAEBenchSuite = Field(
        default_factory=SAEBenchSuite,
        description="SAEBench's evaluations (core, sparse probing, absorption) on the organism's world; "
        "off unless 'evals' lists some.",
    )
    gradient_inference: bool = Field(
        False,
        description="Also evaluate every gradient SAE (g-SAE) with its training rule at inference (gradient "
        "term from a backward pass of the model), as '<name>_grad_inference'; the lab's rule has no gradient.",
    )

    @model_validator(mode="after")
    def _claims_need_training(self) -> SuiteConfig:
        if self.claims and self.train is None:
            raise ValueError("claims: true needs a 'train' section (the SAEs the claims are about)")
        if self.data.seed == self.mean_ablation.seed:
            raise ValueError("mean_ablation.seed must differ from data.seed (the mean is taken on other text)")
        return self


def eval_source(cfg: SuiteConfig, model_name: str) -> TextSource:
    """The held-out text for SAEs of ``model_name``: the configured source, or, when the
    config names none, a provider model's own text (organism-b is evaluated on its corpus), or,
    for another model with SAEBench evals on the hub path, SAEBench's core text
    (``saebench.hub.core_dataset``)."""
    if "source" in cfg.data.model_fields_set:
        return cfg.data.source
    if providers.find(model_name) is None:
        from evals.saebench.hub_concepts import hub_text

        return hub_text(cfg, model_name, "core") or cfg.data.source  # SAEBench's core text on the hub path
    return TextSource(kind=model_name)


def check_heldout(cfg: SuiteConfig, train_seeds: dict[str, int | None]) -> None:
    """Refuse to evaluate on the text a run trained on (a provider's generated corpus: same seed)."""
    if "source" in cfg.data.model_fields_set and providers.find(cfg.data.source.kind) is None:
        return
    for run, seed in train_seeds.items():
        if seed is not None and seed in (cfg.data.seed, cfg.mean_ablation.seed):
            raise ConfigError(
                f"{run} was trained on generated text with seed {seed}, which the suite evaluates on; "
                "set data.seed and mean_ablation.seed to other values"
            )
