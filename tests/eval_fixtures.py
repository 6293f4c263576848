"""Session fixtures shared by the eval tests: a tiny trained run and its evaluation."""

from __future__ import annotations

import pytest

from evals.suite import run_suite
from evals.suite_config import SuiteConfig

TINY_RUN = {
    "data": {"model": "organism", "n_tokens": 12_000, "context_size": 32, "lm_batch_size": 64},
    "saes": [
        {"name": "topk", "hook": "blocks.1.hook_resid_post", "sae": {"architecture": "topk", "d_sae": 128, "k": 8}},
        {"name": "attn", "hook": "blocks.1.attn.hook_z", "sae": {"architecture": "topk", "d_sae": 128, "k": 8}},
        {
            "name": "head5",
            "hook": "blocks.2.attn.hook_z[5]",
            "sae": {"architecture": "relu", "d_sae": 32, "l1_coefficient": 1.0},
        },
    ],
    "trainer": {"batch_size": 256, "wandb_project": None, "checkpoint_every": 0},
    "heldout": None,
}
SMALL = {
    "data": {"n_tokens": 2048, "lm_batch_size": 32},
    "mean_ablation": {"n_tokens": 1024},
    "attention": {"dfa_prompts": 2},
    "synthetic": {"enabled": False},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, organism):
    from sae.train_run import RunConfig, train

    out = tmp_path_factory.mktemp("tiny_run")
    model, tok = organism
    train(RunConfig.model_validate(TINY_RUN), out, progress=False, model=model, tokenizer=tok)
    return out


@pytest.fixture(scope="session")
def tiny_results(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_eval")
    return run_suite(SuiteConfig.model_validate(SMALL), [tiny_run], out, progress=False), out
