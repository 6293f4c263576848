"""HookedSAETransformer on the organism: splicing, the error term, cache names, feature
edits against a dense reference, the context manager, hook_z and transcoders."""

from __future__ import annotations

import pytest
import torch

from evals.core.evaluate import splice_mask
from evals.core.splice import scored_positions, splice_hook, token_losses
from sae.errors import ConfigError
from sae.hooked import SAE_HOOKS, HookedSAETransformer, lab_positions
from sae.hooks import resolve_hook
from sae.run_dir import find_saes
from sae.spliceable import SAE

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The war lasted from the year 1732 to the year 17",
]


@pytest.fixture(scope="module")
def hooked():
    return HookedSAETransformer.from_pretrained("organism")


@pytest.fixture(scope="module")
def tokens(hooked):
    return hooked.to_tokens(PROMPTS)


@pytest.fixture(scope="module")
def tiny_saes(tiny_run):
    return {e.name: SAE.load_from_disk(e.path) for e in find_saes(tiny_run)}


@pytest.fixture(scope="module")
def clean(hooked, tokens):
    with torch.no_grad():
        return hooked(tokens)


def _capture(hooked, tokens, name):
    _, cache = hooked.run_with_cache(tokens, names_filter=[name])
    return cache[name]


@pytest.mark.parametrize("name", ["topk", "attn", "head5"])
def test_error_term_reproduces_clean_logits(hooked, tokens, clean, tiny_saes, name):
    sae = tiny_saes[name]
    with torch.no_grad():
        spliced = hooked.run_with_saes(tokens, saes=[sae], use_error_term=True)
        without = hooked.run_with_saes(tokens, saes=[sae])
        # every SAE hook cached (hooks present force the hook-free recomputation of x̂)
        cached, cache = hooked.run_with_cache_with_saes(tokens, saes=[sae], use_error_term=True)
    assert (spliced - clean).abs().max() <= 1e-5
    assert (cached - clean).abs().max() <= 1e-5
    assert (without - clean).abs().max() > 1e-2, "the SAE changed nothing: it is not spliced"
    error = cache[f"{sae.hook_name}.hook_sae_error"]
    x = cache[f"{sae.hook_name}.hook_sae_input"]
    assert torch.allclose(error, x - cache[f"{sae.hook_name}.hook_sae_recons"], atol=1e-5)


def test_ce_equals_the_labs_splice_in_ce(hooked, tokens, tiny_saes):
    """Same SAE, same positions (the lab's policy: BOS and padding not spliced, passed as
    exclude_special_tokens=lab_positions(tokenizer)): the same CE as evals.core.splice."""
    sae, tok = tiny_saes["topk"], hooked.tokenizer
    spec = resolve_hook(hooked, sae.hook_name)
    keep = splice_mask(tokens, tok)
    scored = scored_positions(tokens, keep, tok.pad_token_id)
    with torch.no_grad():
        x = spec.read(_capture(hooked, tokens, spec.tl_name))[keep]
        x_hat = sae.module.decode(sae.module.encode(x))
        lab = hooked.run_with_hooks(tokens, fwd_hooks=[(spec.tl_name, splice_hook(spec, "sae", keep, x_hat))])
        ours = hooked.run_with_saes(tokens, saes=[sae], exclude_special_tokens=lab_positions(tok))
        every = hooked.run_with_saes(tokens, saes=[sae])  # SAELens's policy: BOS spliced too
    ce_lab, _ = token_losses(lab, tokens, scored)
    ce_ours, _ = token_losses(ours, tokens, scored)
    assert abs(float(ce_lab.mean()) - float(ce_ours.mean())) <= 1e-5
    assert (ours - lab).abs().max() <= 1e-4
    assert (every - lab).abs().max() > 1e-3, "splicing BOS too should change the later positions"


def test_cache_names_and_shapes(hooked, tokens, tiny_saes):
    saes = [tiny_saes["topk"], tiny_saes["attn"], tiny_saes["head5"]]
    with torch.no_grad():
        _, cache = hooked.run_with_cache_with_saes(tokens, saes=saes, use_error_term=True)
    b, t = tokens.shape
    for sae in saes:
        d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
        shapes = {
            "hook_sae_input": (b, t, d_in),
            "hook_sae_acts_pre": (b, t, d_sae),
            "hook_sae_acts_post": (b, t, d_sae),
            "hook_sae_recons": (b, t, d_in),
            "hook_sae_error": (b, t, d_in),
            "hook_sae_output": (b, t, d_in),
        }
        for point in SAE_HOOKS:
            assert tuple(cache[f"{sae.hook_name}.{point}"].shape) == shapes[point], (sae.hook_name, point)
    assert "blocks.1.hook_resid_post.hook_sae_acts_post" in cache
    assert "blocks.2.attn.hook_z[5].hook_sae_acts_post" in cache
    assert tiny_saes["head5"].cfg.metadata.hook_head_index == 5
    # names_filter reaches SAE hooks alone
    with torch.no_grad():
        _, only = hooked.run_with_cache_with_saes(
            tokens, saes=saes[:1], names_filter=lambda n: n.endswith("hook_sae_acts_post")
        )
    assert list(only.keys()) == ["blocks.1.hook_resid_post.hook_sae_acts_post"]
    codes = only["blocks.1.hook_resid_post.hook_sae_acts_post"]
    assert ((codes > 0).sum(-1) <= 8).all()  # a k = 8 TopK SAE


def _active_feature(hooked, tokens, sae) -> int:
    with torch.no_grad():
        _, cache = hooked.run_with_cache_with_saes(tokens, saes=[sae], names_filter=lambda n: "acts_post" in n)
    return int(cache[f"{sae.hook_name}.hook_sae_acts_post"][:, 1:].sum((0, 1)).argmax())


@pytest.mark.parametrize("error_term", [False, True])
def test_feature_ablation_matches_decoding_the_edited_code(hooked, tokens, clean, tiny_saes, error_term):
    sae = tiny_saes["topk"]
    f = _active_feature(hooked, tokens, sae)
    spec = resolve_hook(hooked, sae.hook_name)

    def ablate(acts, hook):
        acts = acts.clone()
        acts[..., f] = 0
        return acts

    with torch.no_grad():
        with hooked.saes([sae], use_error_term=error_term):
            edited = hooked.run_with_hooks(tokens, fwd_hooks=[(f"{sae.hook_name}.hook_sae_acts_post", ablate)])
        # dense reference: encode the clean activation, zero the feature, decode, write it in
        x = spec.read(_capture(hooked, tokens, spec.tl_name))
        codes = sae.module.encode(x)
        assert (codes[..., f] > 0).any()
        cut = codes.clone()
        cut[..., f] = 0
        rows = sae.module.decode(cut)
        if error_term:  # x + (x̂_edited − x̂)
            rows = x + (rows - sae.module.decode(codes))
        reference = hooked.run_with_hooks(tokens, fwd_hooks=[(spec.tl_name, lambda act, hook: spec.write(act, rows))])
    assert (edited - reference).abs().max() <= 1e-4
    assert (edited - clean).abs().max() > 1e-3


def test_steering_through_acts_post_adds_the_decoder_direction(hooked, tokens, clean, tiny_saes):
    """With the error term, adding c to feature f at every position adds c·W_dec[f] to the hook."""
    sae, c = tiny_saes["topk"], 3.0
    f = _active_feature(hooked, tokens, sae)
    spec = resolve_hook(hooked, sae.hook_name)

    def steer(acts, hook):
        acts = acts.clone()
        acts[..., f] += c
        return acts

    with torch.no_grad():
        steered = hooked.run_with_hooks_with_saes(
            tokens, saes=[sae], use_error_term=True, fwd_hooks=[(f"{sae.hook_name}.hook_sae_acts_post", steer)]
        )
        direction = c * sae.W_dec[f]
        reference = hooked.run_with_hooks(tokens, fwd_hooks=[(spec.tl_name, lambda act, hook: act + direction)])
    assert (steered - reference).abs().max() <= 1e-4


def test_context_manager_restores_the_model(hooked, tokens, clean, tiny_saes):
    a, b = tiny_saes["topk"], tiny_saes["attn"]
    hooked.add_sae(a)
    with torch.no_grad():
        with_a = hooked(tokens)
        with hooked.saes([b, a], use_error_term=True):
            inside = hooked(tokens)
            assert set(hooked.acts_to_saes) == {a.hook_name, b.hook_name}
        after = hooked(tokens)
    assert (inside - clean).abs().max() <= 1e-5  # both with the error term
    assert set(hooked.acts_to_saes) == {a.hook_name}  # a restored as it was (no error term), b removed
    assert torch.equal(after, with_a)
    hooked.reset_saes()
    with torch.no_grad():
        assert torch.equal(hooked(tokens), clean)
    assert not [n for n in hooked.hook_dict if "hook_sae" in n]
    with pytest.raises(RuntimeError), hooked.saes([b]):
        raise RuntimeError("boom")
    assert hooked.acts_to_saes == {}


@pytest.mark.parametrize("name", ["attn", "head5"])
def test_hook_z_sae_splices(hooked, tokens, clean, tiny_saes, name):
    """hook_z SAEs (heads concatenated; one head with hook_head_index): the model gets the
    reconstruction in the SAE's heads and the clean activation in the others."""
    sae = tiny_saes[name]
    spec = resolve_hook(hooked, sae.hook_name)
    with torch.no_grad():
        z = _capture(hooked, tokens, spec.tl_name)
        rows = sae.module.decode(sae.module.encode(spec.read(z)))
        reference = hooked.run_with_hooks(tokens, fwd_hooks=[(spec.tl_name, lambda act, hook: spec.write(act, rows))])
        spliced, cache = hooked.run_with_cache_with_saes(tokens, saes=[sae], names_filter=[spec.tl_name])
    assert (spliced - reference).abs().max() <= 1e-4
    assert (spliced - clean).abs().max() > 1e-3
    seen = cache[spec.tl_name]
    if spec.head is not None:
        others = [h for h in range(spec.shape[0]) if h != spec.head]
        assert torch.equal(seen[:, :, others], z[:, :, others])
    assert torch.allclose(spec.read(seen), rows, atol=1e-5)


def _tiny_transcoder(d: int, seed: int = 0):
    from sae.architectures import sae_class

    cls = sae_class("topk")
    torch.manual_seed(seed)
    module = cls(cls.config_class(architecture="topk", d_in=d, d_sae=32, k=4, apply_b_dec_to_input=False))
    with torch.no_grad():
        module.b_dec.normal_(0, 0.1)
    return SAE.from_module(module, "blocks.1.mlp.hook_in", hook_name_out="blocks.1.hook_mlp_out").eval()


def test_transcoder_reads_its_input_hook_and_replaces_its_output_hook(hooked, tokens, clean):
    tc = _tiny_transcoder(hooked.cfg.d_model)
    with torch.no_grad():
        x_in = _capture(hooked, tokens, "blocks.1.mlp.hook_in")
        prediction = tc.module.decode(tc.module.encode(x_in))
        reference = hooked.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_mlp_out", lambda act, hook: prediction)])
        spliced, cache = hooked.run_with_cache_with_saes(tokens, saes=[tc], names_filter=lambda n: "hook_sae" in n)
        exact = hooked.run_with_saes(tokens, saes=[tc], use_error_term=True)
    assert (spliced - reference).abs().max() <= 1e-4
    assert (spliced - clean).abs().max() > 1e-3
    assert torch.allclose(cache["blocks.1.mlp.hook_in.hook_sae_input"], x_in)
    assert (exact - clean).abs().max() <= 1e-5


def test_differentiable_error_passes_the_models_gradient(hooked, tokens, tiny_saes):
    """With differentiable_error the spliced model's gradient at an upstream activation is
    the clean model's; with the constant error (SAELens) it goes through the SAE only."""
    sae = tiny_saes["topk"]

    def grad_at_resid0(**splice):
        leaf = {}

        def make_leaf(act, hook):
            leaf["x"] = act.detach().clone().requires_grad_(True)
            return leaf["x"]

        seen = {}

        def error_grad(grad, hook):
            seen["error"] = grad

        ctx = hooked.saes([sae], **splice) if splice else hooked.saes([])
        with ctx:
            logits = hooked.run_with_hooks(
                tokens,
                fwd_hooks=[("blocks.0.hook_resid_post", make_leaf)],
                bwd_hooks=[(f"{sae.hook_name}.hook_sae_error", error_grad)] if splice else [],
            )
            logits[:, -1].logsumexp(-1).sum().backward()
        return leaf["x"].grad, seen

    clean_grad, _ = grad_at_resid0()
    diff_grad, seen = grad_at_resid0(use_error_term=True, differentiable_error=True)
    const_grad, _ = grad_at_resid0(use_error_term=True)
    assert torch.allclose(diff_grad, clean_grad, atol=1e-5, rtol=1e-4)
    assert "error" in seen and seen["error"].abs().sum() > 0
    assert not torch.allclose(const_grad, clean_grad, atol=1e-3)


def test_exclude_special_tokens_leaves_bos_untouched(hooked, tokens, tiny_saes):
    sae = tiny_saes["topk"]
    with torch.no_grad():
        _, cache = hooked.run_with_cache_with_saes(
            tokens, saes=[sae], exclude_special_tokens=True, names_filter=lambda n: "hook_resid_post" in n
        )
    out, x = cache[f"{sae.hook_name}.hook_sae_output"], cache[f"{sae.hook_name}.hook_sae_input"]
    bos = tokens == hooked.tokenizer.bos_token_id
    assert bos[:, 0].all()
    assert torch.equal(out[bos], x[bos])
    assert not torch.allclose(out[~bos], x[~bos])


def test_bad_saes_are_one_line(hooked, tiny_saes):
    wrong = SAE.from_module(tiny_saes["topk"].module, "blocks.1.attn.hook_z[0]")
    with pytest.raises(ConfigError, match="does not fit"):
        hooked.add_sae(wrong)
    with pytest.raises(ConfigError, match="unknown hook point"):
        hooked.add_sae(SAE.from_module(tiny_saes["topk"].module, "blocks.9.hook_resid_post"))
    assert hooked.acts_to_saes == {}


def test_an_sae_of_another_processing_is_refused(hooked, tiny_saes):
    """A GPT-2-style SAE (trained with fold_ln) never splices silently into an unprocessed model."""
    import copy

    from sae.processing import Processing

    module = copy.deepcopy(tiny_saes["topk"].module)
    module.processing = Processing(fold_ln=True)
    with pytest.raises(ConfigError, match=r"trained on a model with"):
        hooked.add_sae(SAE.from_module(module, "blocks.1.hook_resid_post"))
    assert hooked.acts_to_saes == {}
