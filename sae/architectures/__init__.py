"""The SAE families behind one interface; ``family(cfg["architecture"])`` finds one.

Each family is one file that defines its config and module and registers a ``Family``
entry (``registry.py``). Importing this package imports the built-in family files in the
order below, which is the registry's order: relu, topk, mutual_choice, feature_choice,
gsae, vsae (trainable), then jumprelu (the inference form batch-level rules save as, and
what SAELens JumpReLU SAEs load as), then jumprelu_ste, gated, matryoshka (trainable).
A new family file is added to this import line.
"""

from sae.architectures import relu, topk, mutual_choice, feature_choice, gsae, vsae, jumprelu  # noqa: F401, I001
from sae.architectures import jumprelu_ste, gated, matryoshka  # noqa: F401
from sae.architectures.base import Output, SAEConfig, Selection, SparseAutoencoder
from sae.architectures.registry import (
    REGISTRY,
    Coefficient,
    Family,
    config_class,
    families,
    family,
    register,
    sae_class,
    trainable,
    trainable_family,
    unregister,
)

__all__ = [
    "REGISTRY",
    "Coefficient",
    "Family",
    "Output",
    "SAEConfig",
    "Selection",
    "SparseAutoencoder",
    "config_class",
    "families",
    "family",
    "register",
    "sae_class",
    "trainable",
    "trainable_family",
    "unregister",
]
