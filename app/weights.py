"""Weight-only feature properties: logit effects, decoder neighbours, head attribution.

A decoder direction lives at the SAE's hook; to read it in vocabulary space it is first
mapped into the residual stream, as sae_vis's ``to_resid_dir`` does: residual-stream,
``attn_out`` and ``mlp_out`` hooks as they are, ``attn.hook_z`` through ``W_O`` (summed over
heads; one head's ``W_O`` for ``hook_z[h]``), ``mlp.hook_post`` through ``W_out``. The
residual direction then goes through ``W_U`` directly (the final LayerNorm is left out,
as in sae_vis and Neuronpedia: it rescales but does not rotate a single direction much).
Hooks with no linear path to the residual (``q/k/v``, ``mlp.hook_pre``) have no logit effects.
"""

from __future__ import annotations

import torch
from einops import rearrange

from sae.hooks import HookSpec

DIRECT_SITES = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out")


def residual_directions(W_dec: torch.Tensor, spec: HookSpec, model) -> torch.Tensor | None:
    """``[d_sae, d_model]`` residual-stream image of each decoder row, or None if there is none."""
    W_dec = W_dec.detach().float()
    if spec.site in DIRECT_SITES:
        return W_dec
    if spec.site == "attn.hook_z":
        W_O = model.W_O[spec.layer].detach().float().cpu()  # [n_heads, d_head, d_model]
        if spec.head is not None:
            return W_dec @ W_O[spec.head]
        return W_dec @ rearrange(W_O, "head d_head d_model -> (head d_head) d_model")
    if spec.site == "mlp.hook_post":
        return W_dec @ model.W_out[spec.layer].detach().float().cpu()
    return None


def logit_effects(resid: torch.Tensor, W_U: torch.Tensor, n: int, chunk: int = 512) -> tuple:
    """``(top_ids, top_values, bottom_ids, bottom_values)``, each ``[d_sae, n]``, of ``resid @ W_U``."""
    W_U = W_U.detach().float().cpu()
    n = min(n, W_U.shape[1])
    out = [[], [], [], []]
    for lo in range(0, resid.shape[0], chunk):
        logits = resid[lo : lo + chunk] @ W_U
        top, bottom = logits.topk(n, dim=1), logits.topk(n, dim=1, largest=False)
        for lst, t in zip(out, (top.indices, top.values, bottom.indices, bottom.values), strict=True):
            lst.append(t)
    return tuple(torch.cat(x) for x in out)


def decoder_neighbours(W_dec: torch.Tensor, n: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, cosines)``, each ``[d_sae, n]``: the other features whose decoder rows are most similar."""
    unit = torch.nn.functional.normalize(W_dec.detach().float(), dim=1)
    n = min(n, unit.shape[0] - 1)
    ids, sims = [], []
    for lo in range(0, unit.shape[0], chunk):
        cos = unit[lo : lo + chunk] @ unit.T
        rows = torch.arange(lo, min(lo + chunk, unit.shape[0]))
        cos[torch.arange(len(rows)), rows] = -torch.inf  # never its own neighbour
        top = cos.topk(n, dim=1)
        ids.append(top.indices)
        sims.append(top.values)
    return torch.cat(ids), torch.cat(sims)


def head_shares(W_dec: torch.Tensor, spec: HookSpec) -> torch.Tensor | None:
    """``[d_sae, n_heads]`` decoder-norm share of each head, for SAEs on all heads of ``hook_z``."""
    if spec.site != "attn.hook_z" or spec.head is not None:
        return None
    from circuits.attn_sae import head_attribution

    return head_attribution(W_dec.detach().float(), spec.shape[0])
