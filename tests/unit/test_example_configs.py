"""The example configs for public models parse and validate, with no download: the run
config, and every hook against the model's shape (GPT-2 small: 12 layers; Pythia-70m: 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sae.config import load_config
from sae.hooks import BLOCK_HOOKS
from sae.train_run import RunConfig

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"gpt2": ("gpt2", 12), "pythia": ("EleutherAI/pythia-70m", 6)}
CONFIGS = sorted(p for folder in MODELS for p in (ROOT / "configs" / folder).glob("*.yaml"))


def test_there_are_examples_for_each_model():
    assert {p.parent.name for p in CONFIGS} == set(MODELS)
    assert {p.stem for p in CONFIGS if p.parent.name == "gpt2"} >= {"resid", "mlp", "attn"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_config_is_valid(path):
    cfg = load_config(RunConfig, path)
    model, n_layers = MODELS[path.parent.name]
    assert cfg.data.model == model
    assert cfg.data.source.kind == "hub" and cfg.data.source.path
    for spec in cfg.saes:
        match = re.fullmatch(r"blocks\.(\d+)\.(.+?)(\[\d+\])?", spec.hook)
        assert match and int(match.group(1)) < n_layers, spec.hook
        assert match.group(2) in BLOCK_HOOKS, spec.hook
    assert f"saelab train configs/{path.parent.name}/{path.name}" in path.read_text()
