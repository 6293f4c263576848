"""The SAE family behind one interface; ``sae_class(cfg["architecture"])`` finds a class.

Training families: relu, topk, mutual_choice, feature_choice, gsae, vsae. Inference
form: jumprelu (what batch-level rules save as, and what SAELens JumpReLU SAEs load as).
"""

from sae.architectures import feature_choice, gsae, jumprelu, mutual_choice, relu, topk, vsae  # noqa: F401
from sae.architectures.base import Output, SAEConfig, Selection, SparseAutoencoder
from sae.architectures.registry import REGISTRY, config_class, sae_class

TRAINABLE = ("relu", "topk", "mutual_choice", "feature_choice", "gsae", "vsae")

__all__ = [
    "REGISTRY",
    "TRAINABLE",
    "Output",
    "SAEConfig",
    "Selection",
    "SparseAutoencoder",
    "config_class",
    "sae_class",
]
