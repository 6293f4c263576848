"""The gated family: its loss and gradients against a hand-written dense reference (the
auxiliary loss's stop-gradients included), the ReLU special case, and the saved form."""

from __future__ import annotations

import json

import pytest
import torch

from sae.architectures import family
from sae.architectures.gated import GatedConfig, GatedSAE
from sae.architectures.registry import from_saelens
from sae.saving import load_sae, save_sae

PARAMS = ("W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag")


def grad(p: torch.Tensor) -> float:
    return 0.0 if p.grad is None else float(p.grad.abs().sum())


def make(**kw) -> GatedSAE:
    torch.manual_seed(0)
    sae = GatedSAE(GatedConfig(**{"d_in": 5, "d_sae": 7, "l1_coefficient": 0.3, **kw}))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the initialisation's symmetries
        for p in (sae.b_dec, sae.b_gate, sae.b_mag, sae.r_mag):
            p.normal_(0, 0.5, generator=g)
        sae.W_dec.mul_(torch.linspace(0.5, 1.5, 7)[:, None])
    return sae.train()


def reference_losses(p: dict[str, torch.Tensor], x: torch.Tensor, lam: float, detach: bool) -> dict:
    """The paper's loss written out: x̃ = x − b_dec, π_gate = x̃W_enc + b_gate,
    π_mag = x̃(W_enc ⊙ exp(r_mag)) + b_mag, f = 1[π_gate > 0]·ReLU(π_mag); the auxiliary
    reconstruction goes through a frozen copy of the decoder (cloned tensors, no graph)."""
    xt = x - p["b_dec"]
    pi_gate = xt @ p["W_enc"] + p["b_gate"]
    pi_mag = xt @ (p["W_enc"] * torch.exp(p["r_mag"])[None, :]) + p["b_mag"]
    f = (pi_gate > 0).float() * torch.relu(pi_mag)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    norms = torch.sqrt((p["W_dec"] ** 2).sum(1))
    W_frozen = p["W_dec"].detach().clone() if detach else p["W_dec"]
    b_frozen = p["b_dec"].detach().clone() if detach else p["b_dec"]
    return {
        "mse": ((x - x_hat) ** 2).sum(1).mean(),
        "l1": lam * (torch.relu(pi_gate) * norms).sum(1).mean(),
        "aux_gate": ((x - (torch.relu(pi_gate) @ W_frozen + b_frozen)) ** 2).sum(1).mean(),
    }


@pytest.mark.parametrize("detach", [True, False])
def test_loss_and_gradients_match_the_dense_reference(detach):
    sae = make(aux_detach=detach)
    x = torch.randn(9, 5)
    out = sae(x)
    params = {n: getattr(sae, n).detach().clone().requires_grad_(True) for n in PARAMS}
    ref = reference_losses(params, x, 0.3, detach)
    assert set(out.losses) == set(ref)
    for name in ref:
        torch.testing.assert_close(out.losses[name], ref[name])
    sum(out.losses.values()).backward()
    sum(ref.values()).backward()
    for n in PARAMS:
        torch.testing.assert_close(getattr(sae, n).grad, params[n].grad, msg=n)
    torch.testing.assert_close(out.codes, sae.encode(x))


def test_the_stop_gradients():
    """MSE gives the gate no gradient; the frozen-decoder auxiliary loss gives the decoder none."""
    sae = make()
    x = torch.randn(9, 5)
    out = sae(x)
    out.losses["mse"].backward()
    assert grad(sae.b_gate) == 0  # ∂MSE/∂b_gate = 0
    assert grad(sae.b_mag) > 0
    sae.zero_grad()
    sae(x).losses["aux_gate"].backward()
    assert grad(sae.W_dec) == 0  # ∂aux/∂W_dec = 0
    assert grad(sae.b_gate) > 0  # the auxiliary loss is what trains the gate
    assert grad(sae.b_dec) > 0  # b_dec only through the encoder's input x − b_dec
    assert grad(sae.b_mag) == 0 and grad(sae.r_mag) == 0
    live = make(aux_detach=False)  # SAELens' variant: the decoder learns from the auxiliary loss
    live(x).losses["aux_gate"].backward()
    assert grad(live.W_dec) > 0


def test_with_shared_biases_and_no_rescaling_it_is_a_relu_sae():
    sae = make()
    with torch.no_grad():
        sae.r_mag.zero_()
        sae.b_mag.copy_(sae.b_gate)
    x = torch.randn(11, 5)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_gate
    torch.testing.assert_close(sae.encode(x), pre.relu())


def test_registry_entry_and_initialisation():
    entry = family("gated")
    assert entry.saelens_architecture == "gated" and entry.form == "gated" and from_saelens("gated") is entry
    assert entry.coefficient.field == "l1_coefficient"
    torch.manual_seed(0)
    sae = GatedSAE(GatedConfig(d_in=5, d_sae=7))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    # decoder rows start at SAELens' decoder_init_norm 0.1 (not 1: see GatedConfig)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((7,), 0.1))
    assert all(float(getattr(sae, n).detach().abs().sum()) == 0 for n in ("b_gate", "b_mag", "r_mag"))
    assert "b_enc" not in dict(sae.named_parameters())


def test_saved_form_round_trips_in_saelab_and_as_saelens_gated(tmp_path):
    sae = make().eval()
    save_sae(sae, tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "cfg.json").read_text())
    assert cfg["architecture"] == "gated"
    from safetensors.torch import load_file

    assert sorted(load_file(str(tmp_path / "g" / "sae_weights.safetensors"))) == sorted(PARAMS)
    x = torch.randn(13, 5)
    for strip in (False, True):
        if strip:  # what a reader without our section sees (SAELens' own cfg.json)
            del cfg["saelab"]
            (tmp_path / "g" / "cfg.json").write_text(json.dumps(cfg))
        loaded, _ = load_sae(tmp_path / "g")
        assert type(loaded) is GatedSAE
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))
        _, x_hat = loaded.reconstruct(x)
        torch.testing.assert_close(x_hat, sae.decode(sae.encode(x)))


@pytest.mark.parametrize("skip", [False, True], ids=["transcoder", "skip_transcoder"])
def test_transcoder_losses_and_gradients_match_the_dense_reference(skip):
    """As a transcoder (x → y) every term is towards the target y: ŷ = f W_dec + b_dec (+ x W_skipᵀ),
    MSE ‖y − ŷ‖², and the auxiliary loss ‖y − (ReLU(π_gate) W_dec^sg + b_dec^sg)‖² through the frozen
    decoder (a skip transcoder: the frozen path holds W_skip too, (y − x W_skip^sgᵀ) is its target)."""
    torch.manual_seed(0)
    cfg = GatedConfig(d_in=5, d_out=4, d_sae=7, l1_coefficient=0.3, apply_b_dec_to_input=False, skip=skip)
    sae = GatedSAE(cfg).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (sae.b_dec, sae.b_gate, sae.b_mag, sae.r_mag) + ((sae.W_skip,) if skip else ()):
            p.normal_(0, 0.5, generator=g)
    assert sae.W_dec.shape == (7, 4) and sae.b_dec.shape == (4,) and sae.W_enc.shape == (5, 7)
    x, y = torch.randn(9, 5), torch.randn(9, 4)
    out = sae.training_pass(x, target=y)

    names = PARAMS + (("W_skip",) if skip else ())
    p = {n: getattr(sae, n).detach().clone().requires_grad_(True) for n in names}
    pi_gate = x @ p["W_enc"] + p["b_gate"]  # no centring: b_dec lives in the output space
    pi_mag = x @ (p["W_enc"] * torch.exp(p["r_mag"])[None, :]) + p["b_mag"]
    f = (pi_gate > 0).float() * torch.relu(pi_mag)
    linear = x @ p["W_skip"].T if skip else torch.zeros(9, 4)
    y_hat = f @ p["W_dec"] + p["b_dec"] + linear
    frozen = torch.relu(pi_gate) @ p["W_dec"].detach().clone() + p["b_dec"].detach().clone()
    ref = {
        "mse": ((y - y_hat) ** 2).sum(1).mean(),
        "l1": 0.3 * (torch.relu(pi_gate) * torch.sqrt((p["W_dec"] ** 2).sum(1))).sum(1).mean(),
        "aux_gate": ((y - linear.detach().clone() - frozen) ** 2).sum(1).mean(),
    }
    assert set(out.losses) == set(ref)
    torch.testing.assert_close(out.x_hat, y_hat.detach())
    for name in ref:
        torch.testing.assert_close(out.losses[name], ref[name], msg=name)
    sum(out.losses.values()).backward()
    sum(ref.values()).backward()
    for n in names:
        torch.testing.assert_close(getattr(sae, n).grad, p[n].grad, msg=n)
    sae.zero_grad()
    sae.training_pass(x, target=y).losses["aux_gate"].backward()
    assert grad(sae.W_dec) == 0 and grad(sae.b_dec) == 0 and (not skip or grad(sae.W_skip) == 0)
    assert grad(sae.b_gate) > 0
    # inference: the same prediction from the saved form's path
    torch.testing.assert_close(sae.eval().reconstruct(x)[1], y_hat.detach())
