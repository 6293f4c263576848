"""The ``saebench`` section of a suite config: which SAEBench evaluations run, and their settings.

Defaults follow SAEBench (v0.6.0) where the organism allows; where its datasets or sizes
cannot apply (a 4-layer word-level model, concepts of 5 to 13 members), the field says what
it replaces.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sae.config import FrozenConfig

CONCEPT_DATASETS = ("category", "gender", "city", "job")


def positive_counts(values: list[int], name: str) -> list[int]:
    """A list of latent counts: non-empty, positive, sorted, without repeats."""
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive integers")
    return sorted(set(values))


class SparseProbingSettings(FrozenConfig):
    """Sparse probing: one-vs-rest concepts of the organism's world, top-k latents by mean difference."""

    datasets: list[str] = Field(
        list(CONCEPT_DATASETS),
        description="Concept datasets (SAEBench: bias_in_bios, amazon reviews, ...): 'category' (a word's "
        "category, read at the word), 'gender' (a name's gender, read after the name), 'city' and 'job' "
        "(a name's fact, read where the model predicts it).",
    )
    k_values: list[int] = Field(
        [1, 2, 5, 10, 20], description="Latent counts k of the top-k probes (SAEBench: 1, 2, 5)."
    )
    contexts: int = Field(8, gt=0, description="Prompts per word or name, each after another corpus sentence.")
    test_fraction: float = Field(
        0.3, gt=0, lt=1, description="Share of each class's words/names held out for testing (split by item)."
    )
    max_classes: int = Field(5, gt=1, description="Classes per dataset, the most populous first (SAEBench: <= 5).")
    C: float = Field(1.0, gt=0, description="Inverse L2 strength of the logistic probes (sklearn's C; SAEBench 1.0).")
    max_iter: int = Field(200, gt=0, description="L-BFGS iterations per probe.")
    seed: int = Field(42, description="Seed of the prompts, the split and the negative sampling (SAEBench 42).")

    @field_validator("datasets")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(CONCEPT_DATASETS))
        if unknown or not names:
            raise ValueError(f"unknown concept datasets {unknown}; known: {list(CONCEPT_DATASETS)}")
        return names

    @field_validator("k_values")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        return positive_counts(values, "k_values")


class AbsorptionSettings(FrozenConfig):
    """Feature absorption with a word-category hierarchy in place of first letters."""

    contexts: int = Field(8, gt=0, description="Prompts per word ('Say it again: WORD' after a corpus sentence).")
    test_fraction: float = Field(
        0.5, gt=0, lt=1, description="Share of each word's prompts held out for measuring absorption."
    )
    max_k_value: int = Field(10, gt=0, description="Largest k of the k-sparse probes (SAEBench 10).")
    f1_jump_threshold: float = Field(0.03, ge=0, description="F1 gain that admits one more split latent (SAEBench).")
    k_sparse_probe_l1_decay: float = Field(
        0.01, ge=0, description="L1 strength of the latent-ranking probe (SAEBench)."
    )
    min_probe_f1: float = Field(
        0.6, ge=0, le=1, description="Categories whose ground-truth probe F1 is lower are skipped."
    )
    min_categories: int = Field(
        3, gt=0, description="Fewer scored categories aborts (SAEBench: 20 of 26 letters; the world has 8 categories)."
    )
    full_absorption_cos_threshold: float = Field(0.025, description="Top latent's probe cosine for full absorption.")
    fraction_cos_threshold: float = Field(0.1, description="Probe cosine an absorbing latent needs (fraction).")
    projection_threshold: float = Field(0.4, description="Share of the probe projection absorbers must carry.")
    max_absorbing_latents: int = Field(3, gt=0, description="Absorbing latents summed per prompt (SAEBench 3).")
    seed: int = Field(42, description="Seed of the prompts and the split.")


class TPPSettings(FrozenConfig):
    """Targeted probe perturbation on the world's word categories."""

    n_values: list[int] = Field([2, 5, 10, 20], description="Latents ablated per class (SAEBench also 50, 100, 500).")
    contexts: int = Field(4, gt=0, description="Prompts per word, each after another corpus sentence.")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of each category's words held out for testing.")
    max_classes: int = Field(5, gt=1, description="Categories used, the most populous first (SAEBench: 5 classes).")
    seed: int = Field(42, description="Seed of the prompts, the split and the negative sampling.")

    @field_validator("n_values")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        return positive_counts(values, "n_values")


class SCRSettings(FrozenConfig):
    """Spurious correlation removal: gender and job stated in constructed prompts."""

    pairs: list[list[str]] = Field(
        [["doctor", "nurse"], ["pilot", "teacher"], ["lawyer", "cook"], ["farmer", "singer"]],
        description="Job pairs (P1, P2): the biased probe sees male names with P1 against female names with P2 "
        "(SAEBench: professor/nurse, architect/journalist, surgeon/psychologist, attorney/teacher).",
    )
    n_values: list[int] = Field([2, 5, 10, 20], description="Latents ablated (SAEBench also 50, 100, 500).")
    contexts: int = Field(2, gt=0, description="Prompts per (name, job), each after another corpus sentence.")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of each gender's names held out for testing.")
    seed: int = Field(42, description="Seed of the prompts and the name split.")

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, pairs: list[list[str]]) -> list[list[str]]:
        from organism.world import JOBS

        for p in pairs:
            if len(p) != 2 or p[0] == p[1] or not set(p) <= set(JOBS):
                raise ValueError(f"each pair is two different jobs of the world {list(JOBS)}; got {p}")
        if not pairs:
            raise ValueError("pairs must not be empty")
        return pairs

    @field_validator("n_values")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        return positive_counts(values, "n_values")


class RavelSettings(FrozenConfig):
    """RAVEL: a name's city, job and food, each patched through its own latents."""

    n_values: list[int] = Field(
        [1, 2, 5, 10, 20],
        description="Candidate latent counts per attribute; the one with the best train-name disentanglement is "
        "reported (SAEBench learns a mask instead, MDBM).",
    )
    n_pairs: int = Field(48, gt=0, description="Base/source pairs per attribute, for cause and for isolation each.")
    contexts: int = Field(2, gt=0, description="Corpus sentences each prompt may follow.")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of the names held out (pairs scored there).")
    position: Literal["entity", "last"] = Field(
        "entity", description="Where codes are patched: the name (SAEBench's entity position) or the last token."
    )
    seed: int = Field(42, description="Seed of the prompts, the name split and the pairs.")

    @field_validator("n_values")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        return positive_counts(values, "n_values")


class AutointerpSettings(FrozenConfig):
    """Autointerp: explanations of latents and their scores, delphi's and SAEBench's, both named."""

    explainer: Literal["statistical-baseline", "llm"] = Field(
        "statistical-baseline",
        description="Who explains a latent: 'llm' (the endpoint llm_url) or the offline 'statistical-baseline' "
        "(the tokens and world categories with the highest log-odds at activating positions).",
    )
    scorer: Literal["statistical-baseline", "llm"] = Field(
        "statistical-baseline",
        description="Who scores an explanation: 'llm' (the endpoint) or the offline 'statistical-baseline' "
        "(a rule: the explanation's tokens and categories are present, or are the marked ones).",
    )
    llm_url: str | None = Field(
        None,
        description="Base URL of an OpenAI-compatible endpoint (POST {url}/chat/completions), e.g. "
        "http://127.0.0.1:8000/v1; also `saelab eval --llm-url`.",
    )
    llm_model: str | None = Field(
        None, description="Model name sent to the endpoint (SAEBench: gpt-4o-mini); also `saelab eval --llm-model`."
    )
    api_key_env: list[str] = Field(
        ["SAELAB_LLM_API_KEY", "OPENAI_API_KEY"],
        description="Environment variables read, in order, for the endpoint's key (none set: no key sent).",
    )
    timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for one reply.")
    retries: int = Field(0, ge=0, description="Extra attempts after a failed request (off by default).")
    cache_dir: str | None = Field(
        None,
        description="Where every prompt and reply is cached (keyed by a hash of model and messages); default "
        "~/.cache/saelab/autointerp.",
    )
    n_latents: int = Field(30, gt=0, description="Latents scored per SAE (seeded sample of live ones; SAEBench 1000).")
    n_tokens: int = Field(
        32768, gt=0, description="Held-out tokens searched for contexts (the suite's text and seed; SAEBench 2M)."
    )
    context_size: int = Field(64, gt=0, description="Tokens per row of that text (SAEBench 128).")
    buffer: int = Field(10, ge=1, description="Window = ±buffer tokens around a centre (SAEBench 10).")
    min_examples: int = Field(
        25, gt=0, description="Fewer activating windows skips the latent (delphi min_examples 200)."
    )
    max_examples: int = Field(
        1000, gt=0, description="Activating windows kept per latent, strongest first (delphi's cache keeps all)."
    )
    n_examples_train: int = Field(20, gt=0, description="delphi: activating windows shown to the explainer (40).")
    n_examples_test: int = Field(20, gt=0, description="delphi: activating windows scored (50).")
    n_quantiles: int = Field(5, gt=0, description="delphi: activation quantiles the windows are drawn from (10).")
    n_non_activating: int = Field(20, gt=0, description="delphi: random non-activating windows scored (50).")
    examples_per_prompt: int = Field(5, gt=0, description="delphi: windows per scorer prompt (5).")
    n_top_ex_for_generation: int = Field(10, gt=0, description="SAEBench: top windows shown to the explainer.")
    n_iw_sampled_ex_for_generation: int = Field(
        5, ge=0, description="SAEBench: importance-weighted windows shown to the explainer."
    )
    n_top_ex_for_scoring: int = Field(2, ge=0, description="SAEBench: top windows scored.")
    n_iw_sampled_ex_for_scoring: int = Field(2, ge=0, description="SAEBench: importance-weighted windows scored.")
    n_random_ex_for_scoring: int = Field(10, ge=0, description="SAEBench: random windows scored.")
    act_threshold_frac: float = Field(
        0.01, ge=0, lt=1, description="SAEBench: a token is active above this fraction of the top windows' max."
    )
    max_terms: int = Field(3, gt=0, description="Statistical baseline: tokens/categories in one explanation.")
    min_log_odds: float = Field(
        1.0, description="Statistical baseline: smallest log-odds (activating vs not) a term needs."
    )
    seed: int = Field(42, description="Seed of the latent sample, the windows and the shuffles (SAEBench 42).")

    @model_validator(mode="after")
    def _consistent(self):
        if "llm" in (self.explainer, self.scorer) and not (self.llm_url and self.llm_model):
            raise ValueError("an 'llm' explainer or scorer needs llm_url and llm_model (or --llm-url, --llm-model)")
        if self.context_size < 2 * self.buffer + 2:
            raise ValueError(f"context_size {self.context_size} leaves no window centre for buffer {self.buffer}")
        if self.n_examples_train < self.n_quantiles or self.n_examples_test < self.n_quantiles:
            raise ValueError("n_examples_train and n_examples_test must be at least n_quantiles")
        return self


SPARSE_PROBING_HUB = (
    "LabHC/bias_in_bios_class_set1",
    "LabHC/bias_in_bios_class_set2",
    "LabHC/bias_in_bios_class_set3",
    "canrager/amazon_reviews_mcauley_1and5",
    "canrager/amazon_reviews_mcauley_1and5_sentiment",
    "codeparrot/github-code",
    "fancyzhx/ag_news",
    "Helsinki-NLP/europarl",
)


class HubSettings(FrozenConfig):
    """The hub path: SAEBench's own datasets (read through ``datasets``) for models with no known world."""

    data_dir: str | None = Field(
        None,
        description="Local copies of the datasets, read before the hub: DIR/<hub name>/[<config>/]<split>.parquet "
        "(or .jsonl/.json) with the hub's columns, e.g. DIR/LabHC/bias_in_bios/train.parquet; a dataset not "
        "there is loaded by name (the hub, or datasets' cache when HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set).",
    )
    sparse_probing_datasets: list[str] = Field(
        list(SPARSE_PROBING_HUB), description="Sparse-probing datasets (SAEBench's eight by default)."
    )
    tpp_datasets: list[str] = Field(
        ["LabHC/bias_in_bios_class_set1", "canrager/amazon_reviews_mcauley_1and5"],
        description="TPP datasets (SAEBench's); any sparse-probing dataset works.",
    )
    scr_pairs: dict[str, list[list[str]]] = Field(
        {
            "LabHC/bias_in_bios_class_set1": [
                ["professor", "nurse"],
                ["architect", "journalist"],
                ["surgeon", "psychologist"],
                ["attorney", "teacher"],
            ],
            "canrager/amazon_reviews_mcauley_1and5": [
                ["Books", "CDs_and_Vinyl"],
                ["Software", "Electronics"],
                ["Pet_Supplies", "Office_Products"],
                ["Industrial_and_Scientific", "Toys_and_Games"],
            ],
        },
        description="SCR datasets and their class pairs (P1, P2) (SAEBench's column1_vals_lookup): the biased probe "
        "sees P1 with the spurious column's first value (male; rating 1.0) against P2 with its second.",
    )
    train_size: int = Field(4000, gt=3, description="Probe train texts per task (SAEBench 4000).")
    test_size: int = Field(1000, gt=3, description="Probe test texts per task (SAEBench 1000).")
    context_length: int = Field(128, ge=2, description="Tokens per text, longer ones truncated (SAEBench 128).")
    batch_size: int = Field(32, gt=0, description="Texts per forward pass.")
    absorption_max_words: int | None = Field(
        None,
        gt=0,
        description="Absorption: at most this many of the vocabulary's alphabetic tokens (a seeded sample; None: "
        "all, as SAEBench).",
    )
    absorption_min_letters: int = Field(
        20,
        gt=0,
        description="Absorption: fewer letters with a ground-truth probe F1 >= min_probe_f1 skips the SAE "
        "(SAEBench min_feats_for_eval 20).",
    )
    core_dataset: str = Field(
        "Skylion007/openwebtext",
        description="Text of the core eval's held-out pass on the hub path (SAEBench's), when data.source is unset.",
    )
    autointerp_dataset: str = Field(
        "monology/pile-uncopyrighted", description="Text autointerp searches for contexts on the hub path (SAEBench's)."
    )

    @field_validator("sparse_probing_datasets", "tpp_datasets")
    @classmethod
    def _known_hub(cls, names: list[str]) -> list[str]:
        unknown = sorted(set(names) - set(SPARSE_PROBING_HUB))
        if unknown or not names:
            raise ValueError(f"unknown SAEBench datasets {unknown}; known: {list(SPARSE_PROBING_HUB)}")
        return names

    @field_validator("scr_pairs")
    @classmethod
    def _scr_classes(cls, lookup: dict[str, list[list[str]]]) -> dict[str, list[list[str]]]:
        from evals.saebench.hub_datasets import SCR_DATASETS

        for dataset, pairs in lookup.items():
            if dataset not in SCR_DATASETS:
                raise ValueError(f"SCR datasets are {list(SCR_DATASETS)}; got {dataset!r}")
            names = SCR_DATASETS[dataset][0]
            for p in pairs:
                if len(p) != 2 or p[0] == p[1] or not set(p) <= set(names):
                    raise ValueError(f"each {dataset} pair is two different classes of {list(names)}; got {p}")
        if not lookup or not all(lookup.values()):
            raise ValueError("scr_pairs must name at least one dataset with at least one pair")
        return lookup


class SAEBenchSuite(FrozenConfig):
    """SAEBench's evaluations on the organism (``evals.saebench``); none run unless listed."""

    evals: list[str] = Field(
        default_factory=list,
        description="Evaluations to run, in the registry's order: core, sparse_probing, absorption, scr, tpp, "
        "ravel, autointerp (empty: none).",
    )
    controls: bool = Field(
        True,
        description="Run every eval's controls too (a random-decoder SAE of the same width and measured L0, "
        "rank-L0 PCA, the raw activations where the eval probes); their headlines go to summary.json.",
    )
    controls_seed: int = Field(0, description="Seed of the random-decoder control.")
    source: Literal["auto", "organism", "hub"] = Field(
        "auto",
        description="Where the concepts come from: 'organism' (the world's facts, word-level prompts read at one "
        "position), 'hub' (SAEBench's datasets, mean-pooled texts; evals.saebench.hub_datasets), or 'auto': "
        "organism for a model provider's model, hub for any other (GPT-2, Pythia, a local model directory).",
    )
    hub: HubSettings = Field(default_factory=HubSettings, description="Hub-path settings (source 'hub').")
    sparse_probing: SparseProbingSettings = Field(
        default_factory=SparseProbingSettings, description="Sparse-probing settings."
    )
    absorption: AbsorptionSettings = Field(default_factory=AbsorptionSettings, description="Absorption settings.")
    tpp: TPPSettings = Field(default_factory=TPPSettings, description="Targeted-probe-perturbation settings.")
    scr: SCRSettings = Field(default_factory=SCRSettings, description="Spurious-correlation-removal settings.")
    ravel: RavelSettings = Field(default_factory=RavelSettings, description="RAVEL settings.")
    autointerp: AutointerpSettings = Field(default_factory=AutointerpSettings, description="Autointerp settings.")

    @field_validator("evals")
    @classmethod
    def _registered(cls, names: list[str]) -> list[str]:
        from evals.saebench import EVALS

        unknown = sorted(set(names) - set(EVALS))
        if unknown:
            raise ValueError(f"unknown SAEBench evals {unknown}; known: {list(EVALS)}")
        return [n for n in EVALS if n in names]
