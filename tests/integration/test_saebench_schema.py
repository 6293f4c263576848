"""Every SAEBench evaluation's JSON on the tiny run, validated by sae-bench's own output classes
(``bench/peers/saebench_validate.py`` in the ``sae_bench`` peer venv; skipped when it is missing)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.peers import SCRIPTS
from evals.saebench import EVALS
from evals.suite import run_suite
from evals.suite_config import SuiteConfig

#: every registered evaluation, each as small as it goes (unknown ones: their defaults)
TINY = {
    "data": {"n_tokens": 2048, "lm_batch_size": 32},
    "mean_ablation": {"n_tokens": 1024},
    "attention": {"enabled": False},
    "saebench": {
        "evals": list(EVALS),
        "sparse_probing": {"datasets": ["category", "gender"], "k_values": [1, 5], "contexts": 2},
        "absorption": {"contexts": 4},
        "tpp": {"contexts": 2, "n_values": [2, 20]},
        "autointerp": {"n_latents": 4, "n_tokens": 8192, "min_examples": 5},
    },
}


@pytest.fixture(scope="session")
def sae_bench_python():
    from bench.peers import peer_python
    from sae.errors import SaelabError

    try:
        return peer_python(build=os.environ.get("SAELAB_BUILD_PEERS") == "1", peer="sae_bench")
    except SaelabError as e:
        pytest.skip(f"the sae_bench peer venv is unavailable ({e}); set SAELAB_BUILD_PEERS=1 to build it")


def _validate(python, files) -> dict:
    done = subprocess.run(
        [str(python), str(SCRIPTS / "saebench_validate.py")],
        input=json.dumps({"files": [str(f) for f in files]}),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_eval_validates_with_sae_bench_classes(sae_bench_python, tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("saebench_schema")
    run_suite(SuiteConfig.model_validate(TINY), [tiny_run], out, progress=False)
    files = sorted((out / "saebench").glob("*/*_eval_results.json"))
    type_ids = {json.loads(f.read_text())["eval_type_id"] for f in files}
    assert len(type_ids) == len(EVALS), type_ids  # one eval_type_id per registered evaluation
    report = _validate(sae_bench_python, files)
    assert report["sae_bench_version"] == "0.6.0"
    bad = [(r["file"], r["errors"]) for r in report["results"] if r["ok"] is False]
    assert not bad, bad
    for r in report["results"]:  # a document SAEBench would not write says why (null metrics)
        assert r["ok"] or (r["skipped"] and json.loads(Path(r["file"]).read_text())["eval_result_unstructured"])
    by_id = {r["eval_type_id"]: r for r in report["results"] if r["ok"]}
    assert set(by_id) == type_ids  # every evaluation has documents that validate
    assert by_id["absorption_category"]["class"] == "AbsorptionEvalOutput"
    assert by_id["absorption_category"]["adapted"]  # the category stands in for SAEBench's first letter
    assert by_id["core"]["class"] == "CoreEvalOutput" and not by_id["core"]["adapted"]
    # the lab's extra core metrics are named, the rest are SAEBench's own fields
    assert all(k.endswith("_saelab") for k in by_id["core"]["undeclared"]), by_id["core"]["undeclared"]

    # the validator can fail: a metric of the wrong type and a missing required field are caught
    doc = json.loads(next(f for f in files if "/core/" in str(f)).read_text())
    broken = tmp_path_factory.mktemp("broken")
    wrong = json.loads(json.dumps(doc))
    wrong["eval_result_metrics"]["sparsity"]["l0"] = "sixteen"
    missing = {k: v for k, v in doc.items() if k != "sae_bench_commit_hash"}
    dead = json.loads(json.dumps(doc))  # a never-firing latent: SAEBench's NaN, our null
    dead["eval_result_details"][0]["consistent_activation_heuristic"] = None
    (broken / "wrong.json").write_text(json.dumps(wrong))
    (broken / "missing.json").write_text(json.dumps(missing))
    (broken / "dead.json").write_text(json.dumps(dead))
    files = [broken / "wrong.json", broken / "missing.json", broken / "dead.json"]
    rows = _validate(sae_bench_python, files)["results"]
    assert [r["ok"] for r in rows] == [False, False, True]
    assert rows[2]["adapted"] == ["eval_result_details.*.consistent_activation_heuristic: 1 null -> NaN (dead latents)"]
    assert any("sparsity.l0" in e for e in rows[0]["errors"])
    assert any("sae_bench_commit_hash" in e for e in rows[1]["errors"])
