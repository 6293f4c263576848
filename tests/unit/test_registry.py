"""The family registry: its entries agree with one another, it refuses bad registrations, and
what it says about a family (coefficient schedule, L0 aim, saved form) is what happens."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import Field

from sae.architectures import REGISTRY, Family, families, family, register, trainable, unregister
from sae.architectures.registry import Coefficient, from_saelens
from sae.architectures.topk import TopKConfig, TopKSAE
from sae.errors import SaelabError
from sae.saving import load_sae, save_sae
from sae.trainer import Member, Trainer, TrainerConfig


def test_the_built_in_families_in_their_order():
    assert trainable() == (
        "relu",
        "topk",
        "mutual_choice",
        "feature_choice",
        "gsae",
        "vsae",
        "jumprelu_ste",
        "gated",
        "matryoshka_batchtopk",
    )
    assert [f.name for f in families(trainable=False)] == ["jumprelu"]


@pytest.mark.parametrize("entry", families(), ids=lambda f: f.name)
def test_each_entry_is_consistent(entry):
    form = family(entry.form)
    assert form.form == form.name  # an inference form is its own form
    assert form.saelens_architecture == entry.saelens_architecture
    assert from_saelens(entry.saelens_architecture) is form
    assert entry.sae_class.family is entry and entry.sae_class.architecture == entry.name
    assert entry.config_class.model_fields["architecture"].default == entry.name
    assert entry.sae_class.needs_gradients == entry.needs_gradients
    if entry.trainable:  # L0 can be aimed at: by k or by a coefficient
        assert entry.has_k != (entry.coefficient is not None)


def test_a_name_registered_twice_is_refused():
    with pytest.raises(SaelabError, match="'topk' is already registered"):
        register(Family("topk", TopKSAE, saelens_architecture="topk", inference_form="topk"))
    assert REGISTRY["topk"].sae_class is TopKSAE


def test_a_config_for_another_name_and_a_second_loader_of_one_saelens_form_are_refused():
    with pytest.raises(SaelabError, match="defaults to 'topk'"):
        register(Family("topk2", TopKSAE, saelens_architecture="topk", inference_form="topk"))
    assert "topk2" not in REGISTRY

    class Other(TopKConfig):
        architecture: str = Field("other", description="Family name.")

    class OtherSAE(TopKSAE):
        config_class = Other

    with pytest.raises(SaelabError, match="SAELens 'topk' already loads as 'topk'"):
        register(Family("other", OtherSAE, saelens_architecture="topk"))
    assert "other" not in REGISTRY


def test_unknown_names():
    with pytest.raises(SaelabError, match="unknown SAE architecture 'gatd'"):
        family("gatd")
    assert from_saelens("gatd") is None


def test_the_coefficient_warms_up_linearly_as_a_fraction_of_training():
    relu = family("relu")
    cfg = relu.config_class(d_in=4, d_sae=8, l1_warmup_fraction=0.1)
    c = relu.coefficient
    # 10 warm-up steps out of 100: (step + 1) / 10, then 1
    assert [c.scale(cfg, s, 100) for s in (0, 4, 9, 10, 99)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    assert c.scale(relu.config_class(d_in=4, d_sae=8, l1_warmup_fraction=0.0), 0, 100) == 1.0
    assert Coefficient("l1_coefficient", "l1").scale(cfg, 0, 100) == 1.0  # no warm-up field: full weight


def test_the_trainer_applies_the_registry_schedule(tmp_path):
    relu = family("relu")
    torch.manual_seed(0)
    sae = relu.sae_class(relu.config_class(d_in=8, d_sae=16, l1_warmup_fraction=0.5))
    seen = []
    forward = sae.forward

    def spy(*args, **kwargs):
        seen.append(sae.coefficient_scale)
        return forward(*args, **kwargs)

    sae.forward = spy
    cfg = TrainerConfig(batch_size=32, wandb_project=None, checkpoint_every=0, log_every=100)
    batches = [torch.randn(32, 8) for _ in range(8)]
    Trainer([Member.reading("relu", sae)], cfg, tmp_path, progress=False).fit(lambda skip: iter(batches), 8)
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0])  # 4 warm-up steps of 8


def test_config_at_l0():
    assert family("topk").config_at_l0(16, 2048) == [("topk", {"k": 16})]
    assert family("mutual_choice").config_at_l0(16, 8) == [("mutual_choice", {"k": 8})]  # k ≤ d_sae
    assert family("relu").config_at_l0(4, 64, (2.0, 3.5)) == [
        ("relu_l1=2", {"l1_coefficient": 2.0}),
        ("relu_l1=3.5", {"l1_coefficient": 3.5}),
    ]
    assert family("relu").config_at_l0(4, 64) == [("relu", {})]  # no grid: the family default
    with pytest.raises(SaelabError, match="cannot be aimed"):
        family("jumprelu").config_at_l0(4, 64)


@pytest.mark.parametrize("name", trainable())
def test_every_trainable_family_trains_saves_and_loads(name, tmp_path):
    """Picks up a new family with no edit: a few steps through the trainer, aimed at L0 4."""
    entry = family(name)
    _, aim = entry.config_at_l0(4, 32, (0.05,))[0]
    torch.manual_seed(0)
    sae = entry.sae_class(entry.config_class(d_in=8, d_sae=32, **aim))
    before = sae.W_dec.detach().clone()
    g = torch.Generator().manual_seed(1)
    batches = [{"x": torch.randn(64, 8, generator=g), "x.grad": torch.randn(64, 8, generator=g)} for _ in range(6)]
    cfg = TrainerConfig(batch_size=64, wandb_project=None, checkpoint_every=0, log_every=100, warmup_steps=1)
    trainer = Trainer([Member.reading(name, sae)], cfg, tmp_path / "run", progress=False)
    trainer.fit(lambda skip: iter(batches), 6)
    assert trainer.step == 6 and not torch.equal(sae.W_dec, before)
    with torch.no_grad():
        assert all(math.isfinite(float(v)) for v in sae.eval()(batches[0]["x"]).losses.values())
    save_sae(sae, tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "cfg.json").read_text())["architecture"] == entry.saelens_architecture
    loaded, _ = load_sae(tmp_path / "saved")
    assert type(loaded) is entry.sae_class
    torch.testing.assert_close(loaded.encode(batches[0]["x"]), sae.encode(batches[0]["x"]), atol=0, rtol=0)


def test_unregister_removes_a_family():
    class Tmp(TopKConfig):
        architecture: str = Field("tmp_family", description="Family name.")

    class TmpSAE(TopKSAE):
        config_class = Tmp

    register(Family("tmp_family", TmpSAE, saelens_architecture="topk", inference_form="topk"))
    try:
        assert "tmp_family" in trainable()
    finally:
        unregister("tmp_family")
    assert "tmp_family" not in trainable()
