"""Slow tier: configs/feature_circuit.yaml trained as shipped, then the IOI and greater-than
feature circuits on the organism, scored against its ground truth. The head ROC AUC is
reported (printed), never tuned to; what is asserted is what holds by construction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def feature_run(tmp_path_factory, organism):
    from sae.config import read_yaml
    from sae.train_run import RunConfig, train

    cfg = RunConfig.model_validate(read_yaml(ROOT / "configs" / "feature_circuit.yaml"))
    out = tmp_path_factory.mktemp("feature_circuit_run")
    model, tokenizer = organism
    train(cfg, out, progress=False, model=model, tokenizer=tokenizer)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ioi", "greater-than"])
def test_feature_circuit_on_the_organism(feature_run, task, tmp_path, capsys):
    from saelab.cli import main

    out = tmp_path / "fc.json"
    argv = ["circuit", task, "--method", "feature-circuit", "--saes", str(feature_run), "--n-prompts", "40"]
    assert main([*argv, "--node-threshold", "0.5", "--quiet", "--out", str(out)]) == 0
    print(capsys.readouterr().out)
    doc = json.loads(out.read_text())
    assert 0 <= doc["roc_auc"] <= 1 and doc["details"]["splice_max_abs_logit_diff"] < 1e-3
    curve = doc["details"]["curves"]["errors_as_nodes"]
    assert curve[0]["faithfulness"] == pytest.approx(0, abs=1e-6)
    assert curve[-1]["faithfulness"] == pytest.approx(1, abs=1e-3)
    print(f"{task}: head ROC AUC {doc['roc_auc']:.3f}, faithfulness {doc['faithfulness']:.3f}")
