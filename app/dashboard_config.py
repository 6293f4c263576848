"""Settings of the dashboard-record build (``saelab dashboard``)."""

from __future__ import annotations

from pydantic import Field

from sae.config import FrozenConfig
from sae.text import TextSource


class DashboardConfig(FrozenConfig):
    """What ``saelab dashboard`` computes for every feature of every SAE in a run directory."""

    source: TextSource | None = Field(
        None, description="Text the contexts come from (None: the SAE's training source, read from its cfg.json)."
    )
    seed: int = Field(20_003, description="Seed of the text stream (differs from the training seed 0).")
    n_tokens: int = Field(262_144, gt=0, description="Token positions run through the model.")
    context_size: int = Field(64, ge=2, description="Tokens per sequence, BOS included.")
    lm_batch_size: int = Field(64, gt=0, description="Sequences per forward pass.")
    n_top: int = Field(20, gt=0, description="Top-activating contexts kept per feature (exact).")
    n_intervals: int = Field(
        10,
        gt=0,
        description="Equal-width activation intervals over (0, max] for the "
        "interval contexts (intervals, not quantiles).",
    )
    per_interval: int = Field(5, gt=0, description="Contexts shown per interval.")
    sample_size: int = Field(
        128,
        gt=0,
        description="Uniform random sample of nonzero activations kept per "
        "feature; the interval contexts are drawn from it.",
    )
    left: int = Field(12, ge=0, description="Tokens shown before the activating token.")
    right: int = Field(4, ge=0, description="Tokens shown after the activating token.")
    hist_bins: int = Field(64, ge=4, description="Bins of the activation histogram (a power of two).")
    n_logits: int = Field(10, gt=0, description="Top and bottom logit-effect tokens kept.")
    n_neighbours: int = Field(10, gt=0, description="Decoder-cosine neighbours kept.")
    n_table_rows: int = Field(
        3, gt=0, description="Correlated features, correlated neurons and aligned neurons kept (SAEDashboard: 3)."
    )
    corr_tokens: int = Field(
        65_536,
        ge=0,
        description="Kept positions (the first of the build) whose sparse codes are stored for the "
        "correlations and the 50-bin activation histogram (0: none).",
    )
    plot_bins: int = Field(50, ge=2, description="Bins of the logit and activation histograms (SAEDashboard: 50).")
    token_index_features: int = Field(
        20, gt=0, description="Features kept per token in the token index of the Search page."
    )
    device: str = Field("cpu", description="Device of the model and SAE.")
