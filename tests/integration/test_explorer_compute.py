"""What the explorer computes on demand, on the organism: steering through the spliced model
(zero coefficients change nothing; a large one raises the feature's top logit tokens) and
the loss effect of ablating a feature (against a dense reference edit)."""

from __future__ import annotations

import pytest
import torch

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def resid_sae():
    from sae.architectures import sae_class
    from sae.spliceable import SAE

    cls = sae_class("topk")
    torch.manual_seed(3)
    module = cls(cls.config_class(d_in=128, d_sae=64, k=4))
    return SAE.from_module(module, "blocks.3.hook_resid_post", model_name="organism")


def test_zero_coefficients_leave_the_distribution_unchanged(organism, resid_sae):
    from app.prompt import prompt_tokens, steer_many

    model, tok = organism
    tokens = prompt_tokens(tok, PROMPT)
    with torch.no_grad():
        plain = model(tokens)[0, -1].float().softmax(-1)
    out = steer_many(model, tok, resid_sae, tokens, {5: 0.0, 9: 0.0}, 3)
    assert torch.allclose(out["steered_probs"], plain, atol=1e-6)
    assert torch.allclose(out["clean_probs"], plain, atol=1e-6)
    assert out["steered_ids"] == out["clean_ids"]


def test_a_large_coefficient_raises_the_features_top_logit_tokens(organism, resid_sae):
    from app.prompt import prompt_tokens, steered_logits
    from app.weights import logit_effects

    model, tok = organism
    tokens = prompt_tokens(tok, PROMPT)
    feature = 7
    top_ids = logit_effects(resid_sae.W_dec[feature : feature + 1].detach(), model.W_U, 5)[0][0].tolist()
    clean = steered_logits(model, tok, resid_sae, tokens, {})[0, -1]
    steered = steered_logits(model, tok, resid_sae, tokens, {feature: 200.0})[0, -1]
    lp_clean, lp_steered = clean.log_softmax(-1), steered.log_softmax(-1)
    assert all(lp_steered[i] > lp_clean[i] for i in top_ids)
    # and the steered top token is among the feature's top logit tokens (it dominates the residual)
    assert (
        int(steered.argmax())
        in logit_effects(resid_sae.W_dec[feature : feature + 1].detach(), model.W_U, 20)[0][0].tolist()
    )


def _ce(logits, target):
    return -logits[0, :-1].log_softmax(-1).gather(-1, target)[:, 0]


def test_ablation_loss_effect_matches_a_dense_edit(organism, resid_sae):
    from app.feature_effects import ablation_loss_effects
    from sae.hooks import resolve_hook

    model, tok = organism
    windows = [
        [tok.bos_token_id, *tok.encode("When Mary and John went to the store", add_special_tokens=False)],
        [tok.bos_token_id, *tok.encode("The war lasted from the year 17", add_special_tokens=False)],
    ]
    sae = resid_sae
    with torch.no_grad():
        spec = resolve_hook(model, sae.hook_name)
        t0 = torch.tensor([windows[0]])
        _, cache = model.run_with_cache(t0, names_filter=[spec.tl_name])
        x = spec.read(cache[spec.tl_name])[0]
        codes = sae.module.encode(x)
    codes[0] = 0  # BOS is not spliced
    feature = int(codes.sum(0).argmax())
    effects = ablation_loss_effects(model, tok, sae, feature, windows)
    assert [len(e) for e in effects] == [len(w) for w in windows]

    # reference: the plain model with −a_f(t)·W_dec[f] added at the hook wherever the feature fires (not BOS)
    for w, eff in zip(windows, effects, strict=True):
        t = torch.tensor([w])
        with torch.no_grad():
            _, cache = model.run_with_cache(t, names_filter=[spec.tl_name])
            a = sae.module.encode(spec.read(cache[spec.tl_name])[0])[:, feature]
            a[0] = 0

            def edit(act, hook=None, a=a):
                return spec.write(act, spec.read(act) - a[None, :, None] * sae.W_dec[feature])

            ablated = model.run_with_hooks(t, fwd_hooks=[(spec.tl_name, edit)])
            clean = model(t)
        target = t[0, 1:, None]
        ref = (_ce(ablated, target) - _ce(clean, target)).numpy()
        assert abs(eff[1:] - ref).max() < 1e-4
    assert abs(effects[0][1:]).max() > 0  # the feature is active there: ablating it moves the loss
