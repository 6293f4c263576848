"""Attention-output SAE analyses (Kissane et al., 2024) for SAEs on ``attn.hook_z``.

- **Head attribution** (weight-based): feature i's decoder row, cut into per-head blocks,
  gives h_{i,k} = ‖W_dec[i, head k]‖ / Σ_j ‖W_dec[i, head j]‖ (``circuits.attn_sae``).
- **Direct feature attribution (DFA)**: with attention patterns A taken from the run,
  z_h[dst] = Σ_src A_h[dst, src] v_h[src] exactly (v includes its bias, and each pattern
  row sums to 1), so a feature's pre-activation splits by head and source position:
  DFA_i[h, src] = A_h[dst, src] · (v_h[src] · W[head-h block, i]), with (W, b_eff) the
  family's pre-activation as one affine map of the input (``SparseAutoencoder.linear_encoder``:
  W_enc and b_enc − b_dec·W_enc when the SAE subtracts b_dec from its input, b_enc otherwise;
  a Gated SAE's magnitude path W_enc ⊙ exp(r_mag), b_mag). Summed over heads and sources it
  equals pre_i − b_eff,i. For a one-head SAE (``hook_z[h]``) the sum runs over that head only.
"""

from __future__ import annotations

import torch
from einops import rearrange

from circuits.attn_sae import head_attribution
from sae.hooks import HookSpec


def is_attention_sae(spec: HookSpec) -> bool:
    return spec.site == "attn.hook_z"


@torch.no_grad()
def effective_bias(sae) -> torch.Tensor:
    """``[d_sae]`` the part of the pre-activation that does not depend on the input."""
    return sae.linear_encoder()[1].detach().clone()


@torch.no_grad()
def attention_parts(model, spec: HookSpec, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pattern ``[B, H, dst, src]``, values ``[B, T, H, d_head]`` and z ``[B, T, H, d_head]`` at
    ``spec``'s layer, from one forward pass."""
    names = {part: f"blocks.{spec.layer}.attn.hook_{part}" for part in ("pattern", "v", "z")}
    store: dict[str, torch.Tensor] = {}

    def keep(part):
        def hook(act, hook=None):
            store[part] = act.detach()
            return act

        return hook

    model.run_with_hooks(
        tokens,
        fwd_hooks=[(name, keep(part)) for part, name in names.items()],
        stop_at_layer=spec.layer + 1 if spec.layer + 1 < model.cfg.n_layers else None,
    )
    return store


def dfa(parts: dict[str, torch.Tensor], sae, spec: HookSpec, feature: int, dst: int, batch: int = 0) -> torch.Tensor:
    """``[n_heads_read, src]`` DFA of ``feature`` at position ``dst`` (sources after ``dst`` get 0)."""
    pattern = parts["pattern"][batch, :, dst, :]  # [H, src]
    v = parts["v"][batch]  # [src, H, d_head]
    n_heads, d_head = v.shape[1], v.shape[2]
    heads = [spec.head] if spec.head is not None else list(range(n_heads))
    column = sae.linear_encoder()[0][:, feature]
    w = rearrange(column, "(head d_head) -> head d_head", d_head=d_head)  # heads read
    per_source = torch.einsum("shd,hd->hs", v[:, heads, :].float(), w.float())  # v_h[src] · W block
    return pattern[heads].float() * per_source


def head_summary(sae, spec: HookSpec, n_heads: int, densities: list[float] | None, top: int = 10) -> dict:
    """Per-head decoder-norm attribution summarised over live features."""
    if spec.head is not None:
        return {"single_head": spec.head}
    share = head_attribution(sae.W_dec.detach().float(), n_heads)  # [d_sae, H]
    live = torch.ones(share.shape[0], dtype=torch.bool)
    if densities is not None:
        live = torch.tensor(densities) > 0
    s = share[live]
    dominant = s.argmax(1)
    top_share = s.max(1).values
    top_features = {}
    for h in range(n_heads):
        values, idx = share[:, h].masked_fill(~live, -1).topk(min(top, share.shape[0]))
        top_features[str(h)] = [[int(i), round(float(v), 4)] for v, i in zip(values, idx, strict=True) if v >= 0]
    hist = torch.histc(top_share, bins=10, min=0.0, max=1.0) if s.numel() else torch.zeros(10)
    return {
        "n_heads": n_heads,
        "live_features": int(live.sum()),
        "mean_share": [round(float(v), 5) for v in s.mean(0)] if s.numel() else [0.0] * n_heads,
        "dominant_head_counts": torch.bincount(dominant, minlength=n_heads).tolist(),
        "single_head_fraction": float((top_share > 0.5).double().mean()) if s.numel() else 0.0,
        "top_share_histogram": {"edges": [i / 10 for i in range(11)], "counts": [int(c) for c in hist]},
        "top_features": top_features,
    }


@torch.no_grad()
def dfa_examples(model, tokenizer, sae, spec: HookSpec, tokens: torch.Tensor, n: int) -> list[dict]:
    """For each of the first ``n`` sequences: the (position, feature) with the largest
    activation (BOS excluded), and its DFA by head and source position."""
    out = []
    if n == 0:
        return out
    tokens = tokens[:n]
    parts = attention_parts(model, spec, tokens)
    rows = spec.read(parts["z"]).float()  # [B, T, d_in]
    codes = sae.encode(rows)  # [B, T, d_sae]
    pre = sae.pre_acts(rows.reshape(-1, rows.shape[-1])).reshape(*rows.shape[:2], -1)
    bias = effective_bias(sae)
    bos = {tokenizer.bos_token_id, tokenizer.pad_token_id} - {None}
    for b in range(tokens.shape[0]):
        c = codes[b].clone()
        for t in bos:
            c[tokens[b] == t] = 0
        if float(c.max()) <= 0:
            continue
        flat = int(c.argmax())
        dst, feature = divmod(flat, c.shape[1])
        attribution = dfa(parts, sae, spec, feature, dst, batch=b)
        heads = [spec.head] if spec.head is not None else list(range(parts["v"].shape[2]))
        out.append(
            {
                "tokens": [tokenizer.decode([int(t)]) for t in tokens[b, : dst + 1]],
                "dst": dst,
                "feature": feature,
                "activation": float(c[dst, feature]),
                "pre_activation": float(pre[b, dst, feature]),
                "effective_bias": float(bias[feature]),
                "dfa_sum": float(attribution.sum()),
                "heads": heads,
                "dfa": [[round(float(v), 5) for v in row[: dst + 1]] for row in attribution],
            }
        )
    return out
