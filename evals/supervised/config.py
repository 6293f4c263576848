"""Typed settings of a supervised-dictionary evaluation (Makelov, Lange & Nanda 2024)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from sae.config import FrozenConfig
from sae.text import TextSource


def default_architectures() -> tuple[str, ...]:
    """SAE families trained by default: every trainable family of the registry, the ones
    supervised by gradients last (task rows carry no gradients, so they train on the corpus
    only; ``task_saes`` skips them)."""
    from sae.architectures import families

    return tuple(f.name for f in sorted(families(trainable=True), key=lambda f: f.needs_gradients))


#: family settings that differ from the registry defaults here. vsae at kl_coefficient 1
#: collapses on task rows (measured on the organism's name movers: training FVU 0.33 after 100
#: steps, 1.98 after 700; evaluation FVU 1.95), at 0.01 it reaches FVU 0.05.
FAMILY_CONFIG = {"vsae": {"kl_coefficient": 0.01}}


class PromptConfig(FrozenConfig):
    """The IOI prompts: a fitting set, an evaluation set and a held-out-template set."""

    n_fit: int = Field(4000, gt=0, description="Prompts the dictionaries and task SAEs are fitted on (paper: 20,000).")
    n_eval: int = Field(400, gt=0, description="Prompts every evaluation is measured on (paper: 5,000).")
    n_heldout_template: int = Field(200, ge=0, description="Prompts of the held-out templates (0: skip).")
    heldout_templates: tuple[int, ...] | None = Field(
        None,
        description="Template ids kept out of fitting (None: the last template, the one the organism "
        "never saw in training).",
    )
    seed: int = Field(0, description="Seeds the name split and every prompt set.")


class SAEsConfig(FrozenConfig):
    """The SAEs trained when none are given: task SAEs, full-distribution SAEs, the random-decoder control."""

    architectures: tuple[str, ...] = Field(
        default_factory=default_architectures,
        min_length=1,
        description="SAE families to train (task and full distribution; default: every trainable family "
        "of the registry, gradient-supervised ones trained on the corpus only).",
    )
    l0: int = Field(
        4,
        gt=0,
        description="Matched L0: k of every k-family; coefficient families (ReLU's L1) train a grid "
        "and keep the weight whose L0 is nearest.",
    )
    d_sae_multiple: int = Field(16, gt=0, description="Latents per input dimension (paper: 16 for task SAEs).")
    l0_tolerance: float = Field(
        0.25, ge=0, description="A family is 'matched' where its evaluation L0 is within this fraction of the target."
    )
    relu_l1_grid: tuple[float, ...] = Field(
        (2.0, 3.0, 4.0, 5.0),
        min_length=1,
        description="Sparsity-coefficient weights (ReLU's L1) of task SAEs of coefficient families, "
        "trained side by side; the one whose evaluation L0 is nearest the target is kept per location.",
    )
    full_relu_l1_grid: tuple[float, ...] = Field(
        (8.0, 11.0, 14.0, 17.0),
        min_length=1,
        description="The same for full-distribution SAEs (corpus rows are smaller than task rows, so "
        "the weights must be larger).",
    )
    family_config: dict[str, dict] = Field(
        default_factory=lambda: dict(FAMILY_CONFIG),
        description="Extra config fields per family, e.g. {vsae: "
        "{kl_coefficient: 0.01}} (applied to task and full SAEs).",
    )
    task_epochs: int = Field(100, gt=0, description="Passes over the fitting prompts for task SAEs.")
    task_batch_size: int = Field(512, gt=0, description="Rows per step for task SAEs.")
    task: bool = Field(True, description="Train task SAEs.")
    full_distribution: bool = Field(True, description="Train full-distribution SAEs on the model's corpus.")
    full_tokens: int = Field(500_000, gt=0, description="Corpus tokens for full-distribution SAEs.")
    full_source: TextSource = Field(
        default_factory=TextSource,
        description="Corpus of the full-distribution SAEs (default: a provider model's own text, "
        "e.g. organism-b's corpus for organism-b; the default provider's for any other model).",
    )
    full_batch_size: int = Field(4096, gt=0, description="Rows per step for full-distribution SAEs.")
    random_decoder: bool = Field(True, description="Train the random-decoder control (TopK, decoder frozen).")
    seed: int = Field(0, description="Seeds SAE initialisation.")

    @field_validator("architectures")
    @classmethod
    def _registered(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from sae.architectures import trainable

        bad = [n for n in names if n not in trainable()]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a trainable family ({', '.join(trainable())})")
        return names

    @field_validator("family_config")
    @classmethod
    def _family_fields(cls, extra: dict[str, dict]) -> dict[str, dict]:
        """Registered families and only their own fields, checked when the config is read."""
        from sae.architectures import REGISTRY, trainable

        for name, fields in extra.items():
            entry = REGISTRY.get(name)
            if entry is None or not entry.trainable:
                raise ValueError(f"{name!r} is not a trainable family ({', '.join(trainable())})")
            unknown = sorted(set(fields) - set(entry.config_class.model_fields))
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r} for family {name!r}")
        return extra


class EvalConfig(FrozenConfig):
    """What is measured and how."""

    cross_sections: tuple[str, ...] | None = Field(None, description="Cross-section names (None: all of the model's).")
    ks: tuple[int, ...] = Field((2, 4, 6), min_length=1, description="Feature budgets of the SAE greedy edits.")
    attributes: tuple[str, ...] = Field(
        ("IO", "S", "Pos"), min_length=1, description="Attributes edited in the control evaluation."
    )
    f1_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="F1 at which a feature counts as interpretable in the summaries (precision and recall ≥ t/(2−t)).",
    )
    causal_threshold: float = Field(0.6, gt=0, le=1, description="F1 split of the causal interpretability check.")
    max_name_set: int = Field(10, gt=0, description="Largest name set tried as a predicate (greedy unions).")
    informative_flip_rate: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A control edit is headline when its counterfactual patch "
        "changes the top-1 prediction on at least this fraction.",
    )
    control_all_attributes: bool = Field(
        False,
        description="Also edit attributes whose patch leaves the prediction "
        "unchanged (success then only restates the no-edit rate).",
    )
    batch_size: int = Field(250, gt=0, description="Prompts per forward pass.")

    @model_validator(mode="after")
    def _known_attributes(self) -> EvalConfig:
        bad = [a for a in self.attributes if a not in ("IO", "S", "Pos")]
        if bad:
            raise ValueError(f"unknown attribute(s) {bad}; known: IO, S, Pos")
        return self


class SupervisedConfig(FrozenConfig):
    """``saelab eval supervised`` settings (``--set prompts.n_eval=200`` and so on)."""

    model: str = Field("organism", description="'organism', 'organism-b', 'gpt2', or a local model directory.")
    prompts: PromptConfig = Field(default_factory=PromptConfig, description="The IOI prompt sets.")
    saes: SAEsConfig = Field(default_factory=SAEsConfig, description="The SAEs trained when none are given.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="What is measured and how.")
    device: str = Field("cpu", description="Device of the model and the SAEs.")
