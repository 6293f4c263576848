"""The trained JumpReLU family: methods-2.md §A's numeric cases, gradients (threshold included)
against a hand-written dense reference, the √d_in scale of ε and θ₀, and the saved form."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sae.architectures import family
from sae.architectures.jumprelu import JumpReLUSAE
from sae.architectures.jumprelu_ste import JumpReLUSTEConfig, JumpReLUSTESAE, jumprelu, jumprelu_count, step
from sae.saving import load_sae, save_sae


def test_forward_on_the_reference_case():
    theta = torch.tensor([1.0, 1.0, 1.0])
    z = torch.tensor([[0.5, 1.0, 1.5]])
    assert jumprelu(z, theta, 0.1).tolist() == [[0.0, 0.0, 1.5]]  # strict: z = θ is off
    assert step(z, theta, 0.1).tolist() == [[0.0, 0.0, 1.0]]  # the L0 term counts the active latents


@pytest.mark.parametrize(("z", "expected"), [(1.2, -2.0), (1.3, 0.0), (0.8, -2.0), (0.7, 0.0)])
def test_threshold_pseudo_derivatives_on_the_reference_case(z, expected):
    """ε = 0.5, θ = 1: (z − θ)/ε = ±0.4 is inside the kernel, ∂J/∂θ = −(θ/ε) = −2 = ∂H/∂θ; ±0.6 is outside."""
    for fn in (jumprelu, step):
        theta = torch.tensor([1.0], requires_grad=True)
        fn(torch.tensor([[z]]), theta, 0.5).sum().backward()
        assert float(theta.grad) == pytest.approx(expected)


def test_the_log_threshold_chain_rule_and_the_z_derivatives():
    """θ = 2, ε = 0.5, z = 2.2: ∂J/∂θ = −θ/ε = −4, ∂H/∂θ = −1/ε = −2; through log θ both ×θ."""
    log_theta = torch.tensor([math.log(2.0)], requires_grad=True)
    z = torch.tensor([[2.2]], requires_grad=True)
    jumprelu(z, log_theta.exp(), 0.5).sum().backward()
    assert float(log_theta.grad) == pytest.approx(-8.0)
    assert float(z.grad) == 1.0  # ∂J/∂z = H(z − θ)
    log_theta.grad, z.grad = None, None
    step(z, log_theta.exp(), 0.5).sum().backward()
    assert float(log_theta.grad) == pytest.approx(-4.0)
    assert z.grad is None or float(z.grad) == 0.0  # ∂H/∂z = 0


@pytest.mark.parametrize("terms", ["both", "codes", "count"])
def test_the_one_pass_codes_and_count_match_the_two_functions(terms):
    """``jumprelu_count`` (the step loss's forward) = (jumprelu, step.sum(-1)) in values and in
    the gradients of z and θ, whichever of its two outputs the loss uses."""
    g = torch.Generator().manual_seed(1)
    z0, theta0 = torch.randn(9, 5, generator=g), torch.rand(5, generator=g) * 0.5
    weight_codes, weight_count = torch.randn(9, 5, generator=g), torch.randn(9, generator=g)

    def run(fused: bool):
        z, theta = z0.clone().requires_grad_(), theta0.clone().requires_grad_()
        if fused:
            codes, count = jumprelu_count(z, theta, 0.8)
        else:
            codes, count = jumprelu(z, theta, 0.8), step(z, theta, 0.8).sum(-1)
        loss = {"both": (codes * weight_codes).sum() + (count * weight_count).sum()}.get(terms)
        if loss is None:
            loss = (codes * weight_codes).sum() if terms == "codes" else (count * weight_count).sum()
        loss.backward()
        return codes.detach(), count.detach(), z.grad, theta.grad

    fused, split = run(True), run(False)
    assert torch.equal(fused[0], split[0]) and torch.equal(fused[1], split[1])
    assert float(split[3].abs().sum()) > 0  # some entries fall inside the kernel window
    torch.testing.assert_close(fused[3], split[3])
    if terms == "count":
        assert fused[2] is None or float(fused[2].abs().sum()) == 0.0
    else:
        torch.testing.assert_close(fused[2], split[2])


def make(**kw) -> JumpReLUSTESAE:
    torch.manual_seed(0)
    return JumpReLUSTESAE(JumpReLUSTEConfig(**{"d_in": 4, "d_sae": 6, **kw}))


def test_bandwidth_and_initial_threshold_are_stated_on_the_unit_scale():
    sae = make(d_in=16, bandwidth=0.002, threshold_init=0.01)
    assert sae.bandwidth == pytest.approx(0.002 * 4)  # √16 = 4
    torch.testing.assert_close(sae.threshold, torch.full((6,), 0.04))
    torch.testing.assert_close(sae.log_threshold.detach(), torch.full((6,), math.log(0.04)))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((6,), 0.1))  # SAELens' decoder_init_norm
    assert not sae.cfg.apply_b_dec_to_input and float(sae.b_enc.detach().abs().sum()) == 0


def reference_gradients(sae: JumpReLUSTESAE, x: torch.Tensor, lam: float) -> dict[str, torch.Tensor]:
    """Loss mean_b ‖x − x̂‖² + λ mean_b Σ_i H(π_i − θ_i), differentiated by hand with the
    paper's pseudo-derivatives, row by row and latent by latent."""
    W_enc, b_enc, W_dec, b_dec = (p.detach().double() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    theta = sae.threshold.detach().double()
    eps = sae.bandwidth
    x = x.double()
    B, _d_in = x.shape
    d_sae = theta.shape[0]
    g = {n: torch.zeros_like(t) for n, t in (("W_enc", W_enc), ("b_enc", b_enc), ("W_dec", W_dec), ("b_dec", b_dec))}
    g_theta = torch.zeros(d_sae, dtype=torch.float64)
    for b in range(B):
        pi = [float(x[b] @ W_enc[:, i] + b_enc[i]) for i in range(d_sae)]
        f = [pi[i] if pi[i] > float(theta[i]) else 0.0 for i in range(d_sae)]
        x_hat = b_dec + sum(f[i] * W_dec[i] for i in range(d_sae))
        d_xhat = 2 * (x_hat - x[b]) / B
        g["b_dec"] += d_xhat
        for i in range(d_sae):
            g["W_dec"][i] += f[i] * d_xhat
            d_f = float(d_xhat @ W_dec[i])
            inside = 1.0 if abs((pi[i] - float(theta[i])) / eps) < 0.5 else 0.0
            g_theta[i] += d_f * (-float(theta[i]) / eps) * inside + lam / B * (-1.0 / eps) * inside
            d_pi = d_f * (1.0 if pi[i] > float(theta[i]) else 0.0)
            g["W_enc"][:, i] += x[b] * d_pi
            g["b_enc"][i] += d_pi
    g["log_threshold"] = g_theta * theta
    return g


def test_gradients_match_the_hand_written_reference_including_the_threshold():
    sae = make(d_in=4, bandwidth=0.25, threshold_init=0.2, l0_coefficient=0.3).train()  # ε = 0.5, θ₀ = 0.4
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 4, generator=g)
    with torch.no_grad():
        sae.b_dec.normal_(generator=g)
        sae.log_threshold.copy_(torch.log(torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 1.1])))
    out = sae(x)
    loss = sum(out.losses.values())
    loss.backward()
    ref = reference_gradients(sae, x, 0.3)
    assert float(ref["log_threshold"].abs().sum()) > 0  # some pre-activations fall inside the kernel
    for name, expected in ref.items():
        torch.testing.assert_close(getattr(sae, name).grad.double(), expected, atol=1e-5, rtol=1e-5, msg=name)
    # the loss itself: MSE + λ·(active count per row)
    pre = sae.pre_acts(x).detach()
    active = (pre > sae.threshold.detach()).double().sum(-1).mean()
    assert float(out.losses["l0"]) == pytest.approx(0.3 * float(active))
    assert float(out.losses["mse"]) == pytest.approx(float((out.x_hat - x).pow(2).sum(-1).mean()))


def test_the_tanh_variant_and_the_coefficient_schedule():
    sae = make(sparsity_loss="tanh", tanh_scale=2.0, l0_coefficient=0.5, threshold_init=0.01)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, 6)[:, None])
    x = torch.randn(5, 4)
    out = sae(x)
    pre = sae.pre_acts(x)
    f = pre * (pre > sae.threshold)
    expected = 0.5 * torch.tanh(2.0 * f * sae.W_dec.norm(dim=1)).sum(-1).mean()
    torch.testing.assert_close(out.losses["tanh"], expected)
    entry = family("jumprelu_ste")
    assert entry.coefficient.field == "l0_coefficient" and entry.coefficient.warmup_field == "l0_warmup_fraction"
    assert entry.config_at_l0(16, 64, (0.1,)) == [("jumprelu_ste_l0=0.1", {"l0_coefficient": 0.1})]
    assert entry.form == "jumprelu" and entry.saelens_architecture == "jumprelu"


def test_saved_form_is_jumprelu_with_threshold_exp_log_threshold(tmp_path):
    sae = make(d_in=4, threshold_init=0.3)
    with torch.no_grad():
        sae.log_threshold.add_(torch.linspace(-0.5, 0.5, 6))
        sae.b_enc.normal_()
    sae.eval()
    save_sae(sae, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["apply_b_dec_to_input"] is False
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "s" / "sae_weights.safetensors"))
    assert sorted(weights) == ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]
    torch.testing.assert_close(weights["threshold"], sae.log_threshold.detach().exp())
    x = torch.randn(20, 4) * 2
    loaded, _ = load_sae(tmp_path / "s")
    assert type(loaded) is JumpReLUSTESAE
    assert torch.equal(loaded.log_threshold, sae.log_threshold)
    assert torch.equal(loaded.encode(x), sae.encode(x))
    assert torch.equal(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)))
    # what SAELens (or any reader without our section) sees: the inference-only JumpReLU, same codes
    del cfg["saelab"]
    (tmp_path / "s" / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "s" / "saelab_state.safetensors").unlink()
    foreign, _ = load_sae(tmp_path / "s")
    assert type(foreign) is JumpReLUSAE
    assert torch.equal(foreign.encode(x), sae.encode(x))
    assert torch.equal(foreign.decode(foreign.encode(x)), sae.decode(sae.encode(x)))
