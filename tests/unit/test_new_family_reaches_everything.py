"""Adding a family is one file plus one registry entry: a family registered here, and nowhere
else, appears in every list of families the lab keeps (the circuit sweep, the eval suite's
synthetic benchmark and loading, the explorer's listing, ``--sae-arch``, the supervised
evaluation's families, the train config's schema and the config reference)."""

from __future__ import annotations

import argparse
import json
from typing import Literal

import pytest
import torch
from pydantic import Field

from sae.architectures import Family, register, unregister
from sae.architectures.base import KConfig
from sae.architectures.topk import TopKSAE


class DummyConfig(KConfig):
    """TopK under another name: the test's own family."""

    architecture: Literal["dummy"] = Field("dummy", description="Family name, the registry key in cfg.json.")


class DummySAE(TopKSAE):
    config_class = DummyConfig


@pytest.fixture
def dummy():
    entry = register(Family("dummy", DummySAE, saelens_architecture="topk", inference_form="topk"))
    try:
        yield entry
    finally:
        unregister("dummy")


def test_the_circuit_sweep_and_sae_arch_take_it(dummy):
    from circuits.cli import check_args
    from circuits.sweeps import point_config, sweep_values
    from sae.errors import ConfigError

    assert sweep_values("family")[-1] == "dummy"
    base = argparse.Namespace(
        sae_arch="dummy", method="discrete-sae", sweep=None, seeds=1, device="cpu", ground_truth_model=None
    )
    cfg = argparse.Namespace(n_train=10, n_prompts=250)
    check_args(base, cfg)  # accepted
    with pytest.raises(ConfigError, match=r"'dumy' is not a trainable family \(.*, dummy\)"):
        check_args(argparse.Namespace(**{**vars(base), "sae_arch": "dumy"}), cfg)
    from circuits.methods import MethodConfig

    assert point_config(MethodConfig(), "family", "dummy").family == "dummy"


def test_the_codebook_trains_it_at_the_k_budget(dummy):
    from circuits.codebook import train_family

    torch.manual_seed(0)
    encode = train_family(torch.randn(30, 8), "dummy", n_codes=16, k=3, epochs=3)
    assert int((encode(torch.randn(5, 8)) > 0).sum(-1).max()) <= 3


def test_the_eval_suite_trains_and_loads_it(dummy, tmp_path):
    from evals.synthetic.bench import default_families
    from sae.saving import load_sae, save_sae

    names = {f.name: f.sae for f in default_families(3)}
    assert names["dummy"] == {"architecture": "dummy", "k": 3}
    sae = DummySAE(DummyConfig(d_in=8, d_sae=16, k=2))
    save_sae(sae, tmp_path / "run" / "dummy", metadata={"hook": "blocks.0.hook_resid_post", "name": "dummy"})
    loaded, cfg = load_sae(tmp_path / "run" / "dummy")
    assert type(loaded) is DummySAE and cfg["architecture"] == "topk" and cfg["saelab"]["architecture"] == "dummy"

    from app.run_dir import find_saes  # the explorer's listing

    assert [(e.name, e.architecture) for e in find_saes(tmp_path / "run")] == [("dummy", "dummy")]


def test_the_supervised_evaluation_trains_it(dummy):
    from evals.supervised.config import SAEsConfig
    from evals.supervised.full_saes import full_run_config
    from evals.supervised.locations import Location
    from evals.supervised.task_saes import task_architectures, variant_specs

    cfg = SAEsConfig(relu_l1_grid=(2.0,))
    assert cfg.architectures == (
        "relu",
        "topk",
        "mutual_choice",
        "feature_choice",
        "vsae",
        "jumprelu_ste",
        "gated",
        "matryoshka_batchtopk",
        "dummy",
        "gsae",
    )
    assert task_architectures(cfg)[-1] == "dummy"  # gsae, supervised by gradients, is corpus-only
    assert ("dummy", "dummy", {"architecture": "dummy", "d_sae": 64, "k": 4}) in variant_specs(cfg, 4)
    run = full_run_config([Location(3, 1, "z", "END")], cfg, "organism", lambda hook: 4)
    assert {"name": "dummy/3.1.z", "hook": "blocks.3.attn.hook_z[1]", "sae": variant_specs(cfg, 4)[-2][2]} in run[
        "saes"
    ]


def test_train_configs_and_the_reference_name_it(dummy):
    from sae.train_run import RunConfig
    from saelab.config_docs import reference

    run = RunConfig.model_validate(
        {"saes": [{"hook": "blocks.0.hook_resid_post", "sae": {"architecture": "dummy", "d_sae": 8, "k": 2}}]}
    )
    assert type(run.saes[0].sae) is DummyConfig and run.saes[0].resolved_name() == "dummy"
    assert '"const": "dummy"' in json.dumps(RunConfig.model_json_schema())
    assert "### `dummy`" in reference()


@pytest.mark.parametrize("name", ["jumprelu_ste", "gated", "matryoshka_batchtopk"])
def test_the_registered_families_of_issue_20_reach_the_same_places(name):
    """The trained JumpReLU, Gated and Matryoshka families through the same registry paths."""
    from circuits.cli import check_args
    from circuits.codebook import train_family
    from circuits.sweeps import sweep_values
    from evals.synthetic.bench import default_families
    from sae.train_run import RunConfig

    assert name in sweep_values("family")
    check_args(
        argparse.Namespace(
            sae_arch=name, method="discrete-sae", sweep=None, seeds=1, device="cpu", ground_truth_model=None
        ),
        argparse.Namespace(n_train=10, n_prompts=250),
    )
    torch.manual_seed(0)
    codes = train_family(torch.randn(30, 8), name, n_codes=16, k=3, epochs=3)(torch.randn(5, 8))
    assert codes.shape == (5, 16) and torch.isfinite(codes).all()
    assert name in {f.name for f in default_families(3)}
    assert f'"const": "{name}"' in json.dumps(RunConfig.model_json_schema())
