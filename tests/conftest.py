"""Shared fixtures: expensive objects are built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures shared across the tiers (unit/, integration/, acceptance/), from support modules
# beside this file (on sys.path through pytest's `pythonpath`).
pytest_plugins = ["bad_files", "eval_fixtures", "supervised_fixtures"]


@pytest.fixture(scope="session")
def organism():
    """The shipped organism as ``(bridge, tokenizer)``."""
    from sae.model import load_model

    return load_model("organism")


@pytest.fixture(scope="session")
def hf_organism():
    """A separate plain Hugging Face copy of the organism: an independent reference, since
    the bridge wraps the modules of its own copy."""
    from transformers import GPT2LMHeadModel

    from sae import providers

    return GPT2LMHeadModel.from_pretrained(providers.get("organism").model_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def organism_tokenizer():
    from organism.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def random_gpt2(organism_tokenizer):
    """A randomly initialised GPT-2-shaped model (3 layers, 4 heads) on the organism vocabulary."""
    from transformers import GPT2Config

    from sae.model import random_model

    cfg = GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=64, vocab_size=len(organism_tokenizer))
    return random_model(cfg, organism_tokenizer, seed=0)


@pytest.fixture(scope="session")
def random_neox(organism_tokenizer):
    """A randomly initialised GPT-NeoX (Pythia-shaped, parallel attention) model."""
    from transformers import GPTNeoXConfig

    from sae.model import random_model

    cfg = GPTNeoXConfig(
        num_hidden_layers=2,
        num_attention_heads=4,
        hidden_size=64,
        intermediate_size=256,
        max_position_embeddings=64,
        vocab_size=len(organism_tokenizer),
        use_parallel_residual=True,
    )
    return random_model(cfg, organism_tokenizer, seed=0)
