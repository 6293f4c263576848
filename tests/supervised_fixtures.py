"""Session fixtures of the supervised-dictionary tests: a small run on the organism's IOI circuit."""

from __future__ import annotations

import contextlib

import pytest
import torch

from evals.supervised.config import SupervisedConfig
from evals.supervised.locations import PRIMARY

SMALL = {
    "prompts": {"n_fit": 640, "n_eval": 120, "n_heldout_template": 40, "seed": 3},
    "saes": {
        "architectures": ["relu", "topk"],
        "relu_l1_grid": [2.0, 4.0],
        "task_epochs": 15,
        "task_batch_size": 128,
        "full_tokens": 16384,
        "full_batch_size": 1024,
    },
    "eval": {"cross_sections": [PRIMARY], "ks": [2], "batch_size": 120},
}


@contextlib.contextmanager
def one_thread():
    """The expensive fixture runs single-threaded: on a shared 2-core machine two torch
    threads per process oversubscribe the CPU and run several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def supervised_prep(organism):
    from evals.supervised.runner import prepare

    model, tok = organism
    with one_thread():
        return prepare(SupervisedConfig.model_validate(SMALL), model, tok, progress=False)


@pytest.fixture(scope="session")
def supervised_run(organism, supervised_prep, tmp_path_factory):
    from evals.supervised.runner import run

    model, tok = organism
    out = tmp_path_factory.mktemp("supervised")
    with one_thread():
        doc = run(
            SupervisedConfig.model_validate(SMALL),
            out,
            progress=False,
            model=model,
            tokenizer=tok,
            prepared=supervised_prep,
        )
    return doc, out
