"""Every SAEBench evaluation on every trainable family (and a transcoder), through the suite on one tiny run:
each writes its document for each SAE it applies to, with finite headline metrics (the schema itself is
validated with sae-bench's own classes in ``tests/integration/test_saebench_schema.py``)."""

from __future__ import annotations

import json
import math

import pytest

from evals.saebench import EVALS
from evals.suite import run_suite
from evals.suite_config import SuiteConfig
from sae.architectures import trainable

pytestmark = pytest.mark.slow

#: a coefficient family gets a coefficient that keeps it alive on 12k tokens; k-families k = 8
COEFFICIENTS = {"relu": {"l1_coefficient": 1.0}, "gated": {"l1_coefficient": 1.0}, "jumprelu_ste": {}}
TRANSCODER = {"name": "transcoder", "hook": "blocks.1.mlp.hook_in", "hook_out": "blocks.1.hook_mlp_out"}
#: evaluations that do not apply to a transcoder (its decoder writes another hook than it reads)
NOT_FOR_TRANSCODERS = {"ravel", "scr", "tpp"}
#: evaluations that write a transcoder's document with null metrics and the reason (its decoder rows live in the
#: output space, the probe's in the input space)
NULL_FOR_TRANSCODERS = {"absorption"}

TINY_SUITE = {
    "data": {"n_tokens": 2048, "lm_batch_size": 32},
    "mean_ablation": {"n_tokens": 1024},
    "attention": {"enabled": False},
    "saebench": {
        "evals": list(EVALS),
        "controls": False,
        "sparse_probing": {"datasets": ["category", "gender"], "k_values": [1, 5], "contexts": 2},
        "absorption": {"contexts": 4},
        "tpp": {"contexts": 2, "n_values": [2, 20]},
        "scr": {"contexts": 2, "n_values": [2, 20]},
        "ravel": {"n_values": [1, 5], "n_pairs": 8},
        "autointerp": {"n_latents": 4, "n_tokens": 8192, "min_examples": 5},
    },
}


def _sae(arch: str) -> dict:
    extra = COEFFICIENTS.get(arch, {"k": 8})
    return {"name": arch, "hook": "blocks.1.hook_resid_post", "sae": {"architecture": arch, "d_sae": 64, **extra}}


@pytest.fixture(scope="session")
def every_family(tmp_path_factory, organism):
    from sae.train_run import RunConfig, train

    run = tmp_path_factory.mktemp("every_family_run")
    saes = [_sae(a) for a in trainable()] + [{**TRANSCODER, "sae": {"architecture": "topk", "d_sae": 64, "k": 8}}]
    cfg = {
        "data": {"model": "organism", "n_tokens": 12_000, "context_size": 32, "lm_batch_size": 64},
        "saes": saes,
        "trainer": {"batch_size": 256, "wandb_project": None, "checkpoint_every": 0},
        "heldout": None,
    }
    model, tok = organism
    train(RunConfig.model_validate(cfg), run, progress=False, model=model, tokenizer=tok)
    out = tmp_path_factory.mktemp("every_family_eval")
    run_suite(SuiteConfig.model_validate(TINY_SUITE), [run], out, progress=False)
    return [s["name"] for s in saes], out


def _numbers(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _numbers(v)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


def test_every_eval_writes_a_document_for_every_family(every_family):
    names, out = every_family
    for name in EVALS:
        lab = json.loads((out / f"saebench_{name}.json").read_text())
        expected = [n for n in names if not (n == "transcoder" and name in NOT_FOR_TRANSCODERS)]
        written = {s["name"]: s for s in lab["saes"]}
        assert sorted(written) == sorted(expected), (name, sorted(written))
        for sae, entry in written.items():
            doc = json.loads((out / entry["file"]).read_text())
            assert doc["eval_type_id"] == entry["document"]["eval_type_id"]
            values = list(_numbers(doc["eval_result_metrics"]))
            if sae == "transcoder" and name in NULL_FOR_TRANSCODERS:
                assert not values and doc["eval_result_unstructured"], (name, doc["eval_result_unstructured"])
                continue
            assert values and all(math.isfinite(v) for v in values), (name, sae, doc["eval_result_metrics"])
