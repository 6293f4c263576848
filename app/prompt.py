"""Live per-prompt work for the explorer: features at each token, and additive steering.

Steering is Neuronpedia's ``SIMPLE_ADDITIVE``: ``α · W_dec[i]`` is added to the SAE's hook
activation at every position (for ``hook_z`` through the hook's row layout, so one head or
all heads concatenated), and the model runs on from there.

Several features at once (the steering panel, ``steer_many``) go through the spliced model
(``sae.hooked.HookedSAETransformer``): the SAE is spliced with its error term, so with no
edit the model computes exactly what it computes without the SAE, and each feature's code
is raised by its coefficient at every position (``hook_sae_acts_post``). For a decoder that
is linear in the codes (every lab family) that adds ``Σ c_i · W_dec[i]`` to the hook's
output: the same edit as ``SIMPLE_ADDITIVE``, for all features together. BOS and padding
are left untouched (the lab's splice positions), unlike Neuronpedia which steers every
position. Generations are greedy (argmax at every step) so the comparison is reproducible.
"""

from __future__ import annotations

import torch

from sae.hooks import HookSpec, resolve_hook


def prompt_tokens(tokenizer, text: str) -> torch.Tensor:
    """``[1, seq]`` ids with BOS first, as the model saw text in training."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    return torch.tensor([[tokenizer.bos_token_id, *ids]], dtype=torch.long)


@torch.no_grad()
def token_codes(model, tokenizer, sae, hook: str, tokens: torch.Tensor) -> torch.Tensor:
    """``[seq, d_sae]`` SAE codes at each prompt position (BOS zeroed)."""
    from sae.harvest import Harvester

    h = Harvester(model, tokenizer, [hook])
    codes = sae.encode(h.full(tokens)[hook][0].to(sae.W_enc.dtype)).float()
    codes[~h.mask(tokens)[0]] = 0
    return codes


def top_features(codes: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """Per position, the ``k`` most active features as ``(id, activation)`` (active ones only)."""
    vals, ids = codes.topk(min(k, codes.shape[1]), dim=1)
    return [
        [(int(i), float(v)) for i, v in zip(ri, rv, strict=True) if v > 0] for ri, rv in zip(ids, vals, strict=True)
    ]


def steering_hook(spec: HookSpec, direction: torch.Tensor, alpha: float):
    def hook(act, hook):
        return spec.write(act, spec.read(act) + alpha * direction.to(act.dtype))

    return hook


@torch.no_grad()
def next_token_probs(model, tokens: torch.Tensor, hooks=()) -> torch.Tensor:
    logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
    return logits[0, -1].float().softmax(-1)


def steer(model, sae, hook: str, tokens: torch.Tensor, feature: int, alpha: float) -> tuple:
    """``(clean_probs, steered_probs)`` of the next token, and the steering hook used."""
    spec = resolve_hook(model, hook)
    fwd = (spec.tl_name, steering_hook(spec, sae.W_dec[feature].detach(), alpha))
    return next_token_probs(model, tokens), next_token_probs(model, tokens, [fwd]), fwd


@torch.no_grad()
def sample(model, tokens: torch.Tensor, n: int, seed: int, hooks=(), temperature: float = 1.0) -> list[int]:
    """``n`` tokens sampled one by one (seeded), with ``hooks`` active at every step."""
    g = torch.Generator().manual_seed(seed)
    out = tokens
    n_ctx = getattr(model.cfg, "n_ctx", 10**9)
    for _ in range(n):
        probs = next_token_probs(model, out[:, -n_ctx:], hooks) if temperature > 0 else None
        nxt = torch.multinomial(
            probs.cpu() ** (1 / temperature) / (probs.cpu() ** (1 / temperature)).sum(), 1, generator=g
        )
        out = torch.cat([out, nxt.view(1, 1).to(out.device)], dim=1)
    return out[0, tokens.shape[1] :].tolist()


def _steer_codes(coefficients: dict[int, float]):
    feats = sorted(int(f) for f in coefficients)
    values = [float(coefficients[f]) for f in feats]

    def hook(acts, hook=None):
        add = torch.zeros(acts.shape[-1], dtype=acts.dtype, device=acts.device)
        add[feats] = torch.tensor(values, dtype=acts.dtype, device=acts.device)
        return acts + add

    return hook


@torch.no_grad()
def steered_logits(model, tokenizer, sae, tokens: torch.Tensor, coefficients: dict[int, float]) -> torch.Tensor:
    """Logits ``[batch, pos, vocab]`` of the spliced model (error term on) with each feature's
    code raised by its coefficient; ``sae`` is a ``sae.spliceable.SAE``."""
    from sae.hooked import HookedSAETransformer, lab_positions

    hooked = HookedSAETransformer.from_bridge(model)
    with hooked.saes([sae], use_error_term=True, exclude_special_tokens=lab_positions(tokenizer)):
        if not coefficients:
            return hooked(tokens)
        return hooked.run_with_hooks(
            tokens, fwd_hooks=[(f"{sae.hook_name}.hook_sae_acts_post", _steer_codes(coefficients))]
        )


@torch.no_grad()
def greedy(model, tokenizer, sae, tokens: torch.Tensor, n: int, coefficients: dict[int, float]) -> list[int]:
    """``n`` greedy tokens of the spliced model steered by ``coefficients``."""
    out = tokens
    n_ctx = getattr(model.cfg, "n_ctx", 10**9)
    for _ in range(n):
        nxt = steered_logits(model, tokenizer, sae, out[:, -n_ctx:], coefficients)[0, -1].argmax()
        out = torch.cat([out, nxt.view(1, 1).to(out.device)], dim=1)
    return out[0, tokens.shape[1] :].tolist()


def steer_many(model, tokenizer, sae, tokens: torch.Tensor, coefficients: dict[int, float], n: int) -> dict:
    """Without and with steering: next-token probabilities ``[vocab]`` and ``n`` greedy tokens."""
    clean = steered_logits(model, tokenizer, sae, tokens, {})[0, -1].float().softmax(-1)
    steered = steered_logits(model, tokenizer, sae, tokens, coefficients)[0, -1].float().softmax(-1)
    return {
        "clean_probs": clean,
        "steered_probs": steered,
        "clean_ids": greedy(model, tokenizer, sae, tokens, n, {}),
        "steered_ids": greedy(model, tokenizer, sae, tokens, n, coefficients),
    }


def top_token_union(clean: torch.Tensor, steered: torch.Tensor, k: int) -> list[int]:
    """The ``k`` most probable tokens of each distribution, in one list (clean's first)."""
    ids = clean.topk(k).indices.tolist()
    return ids + [i for i in steered.topk(k).indices.tolist() if i not in ids]
