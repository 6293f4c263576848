"""A fused forward for harvesting GPT-2-family models: the block hooks without the bridge.

The bridge runs Hugging Face's eager modules op by op behind its hook machinery: GELU as
five elementwise kernels, LayerNorm as mean/sub/pow/sqrt/div, attention with the score
matrix materialised, masked and soft-maxed. On a small model those per-op passes over
memory cost more than the GEMMs. This path computes the same activations from the same
weights (read from the bridge's modules on every call, never copied, so edits to the
weights are seen) with one kernel per step: ``F.layer_norm``, one QKV GEMM (GPT-2's
``c_attn`` is already fused), causal ``F.scaled_dot_product_attention`` (no score matrix),
``F.gelu(approximate="tanh")`` for ``gelu_new``, and ``addmm`` for every projection. It
stops after the last requested site of the deepest requested layer.

When it applies (``fused_forward_support`` says why not otherwise, and the caller falls
back to the bridge): a GPT-2 model (``model_type`` ``gpt2``), unprocessed (no TransformerLens
weight processing), every requested hook one of ``FUSED_SITES``, and, checked on every call
(``FusedForward.usable``), no hook on any module of the bridge (a user's hook or a spliced
SAE could change the computation). It never builds a graph: gradients take the bridge. The activations match the
bridge's to float rounding (tested at 1e-4 in float32 on the organism and on a
random-weight GPT-2); GELU's tanh form is the same formula as ``gelu_new`` evaluated in one
kernel. Other families (Pythia's GPT-NeoX, ...) use the bridge unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformer_lens.hook_points import HookPoint

#: the block sites this path computes, in the order a GPT-2 block produces them
FUSED_SITES = (
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_in",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
_MLP_FROM = FUSED_SITES.index("mlp.hook_in")


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


#: Hugging Face activation names with a one-kernel equivalent (gelu_new and gelu_fast are
#: the tanh approximation written out); any other activation runs the model's own module
_ACTIVATIONS = {
    "gelu_new": _tanh_gelu,
    "gelu_fast": _tanh_gelu,
    "gelu_pytorch_tanh": _tanh_gelu,
    "gelu": F.gelu,
    "relu": F.relu,
}


def _split(tl_name: str) -> tuple[int, str] | None:
    parts = tl_name.split(".", 2)
    if len(parts) != 3 or parts[0] != "blocks" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2]


def _inner(module):
    """The Hugging Face module a bridge component wraps."""
    return getattr(module, "_original_component", module)


def fused_forward_support(model, tl_names: Sequence[str]) -> str | None:
    """None when ``FusedForward`` can compute ``tl_names`` of ``model``; else why not, in one line."""
    from sae.processing import NONE, model_processing

    hf = getattr(model, "original_model", None)
    config = getattr(hf, "config", None)
    if getattr(config, "model_type", None) != "gpt2":
        return f"{type(hf).__name__}: the fused forward covers GPT-2 models only"
    if getattr(config, "add_cross_attention", False) or getattr(config, "reorder_and_upcast_attn", False):
        return "GPT-2 with cross-attention or reordered, upcast attention"
    if model_processing(model) != NONE:
        return "the model carries TransformerLens weight processing"
    if not tl_names:
        return "no hooks requested"
    for name in tl_names:
        split = _split(name)
        if split is None or split[1] not in FUSED_SITES or split[0] >= len(model.blocks):
            return f"hook {name!r} is not one the fused forward computes"
    return None


@dataclass
class _Block:
    ln1: torch.nn.LayerNorm
    qkv: torch.nn.Module  # Conv1D: weight [d_model, 3 d_model]
    o: torch.nn.Module
    ln2: torch.nn.LayerNorm
    fc: torch.nn.Module
    proj: torch.nn.Module
    act: object
    scale: float


def _conv1d(module, x: torch.Tensor) -> torch.Tensor:
    """GPT-2's ``Conv1D`` (``x @ W + b``, W stored ``[in, out]``) on ``[rows, in]``."""
    return torch.addmm(module.bias, x, module.weight)


def _layer_norm(module: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)


class FusedForward:
    """The requested block hooks of a GPT-2 bridge in TransformerLens shapes, from fused kernels.

    Build it with ``FusedForward.for_model`` (None when it does not apply); call it on
    ``[batch, pos]`` tokens to get ``{tl_name: activation}``.
    """

    def __init__(self, model, tl_names: Sequence[str]):
        hf_config = model.original_model.config
        self.model = model
        self._points = [m for m in model.modules() if isinstance(m, HookPoint)]
        self.n_heads = int(hf_config.n_head)
        self.d_model = int(hf_config.n_embd)
        self.d_head = self.d_model // self.n_heads
        self.wanted: dict[int, set[str]] = {}
        for name in tl_names:
            layer, site = _split(name)
            self.wanted.setdefault(layer, set()).add(site)
        self.last = max(self.wanted)
        last_sites = self.wanted[self.last]
        self.last_needs_mlp = any(FUSED_SITES.index(s) >= _MLP_FROM for s in last_sites)
        self.wte = _inner(model.embed)
        self.wpe = _inner(model.pos_embed)
        act_name = getattr(hf_config, "activation_function", None)
        self.blocks: list[_Block] = []
        for i in range(self.last + 1):
            b = model.blocks[i]
            attn = _inner(b.attn)
            scale = 1.0 / math.sqrt(self.d_head) if getattr(attn, "scale_attn_weights", True) else 1.0
            if getattr(attn, "scale_attn_by_inverse_layer_idx", False):
                scale /= float(i + 1)
            act = _ACTIVATIONS.get(act_name, _inner(b.mlp).act)
            self.blocks.append(
                _Block(
                    _inner(b.ln1),
                    _inner(b.attn.qkv),
                    _inner(b.attn.o),
                    _inner(b.ln2),
                    _inner(getattr(b.mlp, "in")),
                    _inner(b.mlp.out),
                    act,
                    scale,
                )
            )

    @classmethod
    def for_model(cls, model, tl_names: Sequence[str]) -> FusedForward | None:
        if fused_forward_support(model, tl_names) is not None:
            return None
        return cls(model, tl_names)

    def usable(self) -> bool:
        """Whether a call now computes what the bridge would: no hook on any of the bridge's
        hook points (a user's hook, a spliced SAE's) and no global module hook.

        Plain module hooks elsewhere are not a reason: the bridge wires its own (capture
        hooks on the LayerNorms) after its first forward pass.
        """
        if getattr(self.model, "_saelab_splices", None):
            return False
        from torch.nn.modules import module as nn_module

        if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
            return False
        return not any(p._forward_hooks or p._forward_pre_hooks for p in self._points)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        n_batch, n_pos = tokens.shape
        d, h, dh = self.d_model, self.n_heads, self.d_head
        out: dict[str, torch.Tensor] = {}
        x = F.embedding(tokens, self.wte.weight) + self.wpe.weight[:n_pos]
        for i, blk in enumerate(self.blocks):
            want = self.wanted.get(i, set())

            def keep(site: str, value: torch.Tensor, want=want, i=i) -> None:
                if site in want:
                    out[f"blocks.{i}.{site}"] = value

            keep("hook_resid_pre", x)
            flat = _layer_norm(blk.ln1, x).view(-1, d)
            qkv = _conv1d(blk.qkv, flat).view(n_batch, n_pos, 3, h, dh)
            q, k, v = qkv.unbind(2)  # [batch, pos, head, d_head] each
            keep("attn.hook_q", q)
            keep("attn.hook_k", k)
            keep("attn.hook_v", v)
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=blk.scale
            )  # [batch, head, pos, d_head]
            z = z.transpose(1, 2).reshape(-1, d)  # one copy, heads concatenated: what W_O and hook readers take
            keep("attn.hook_z", z.view(n_batch, n_pos, h, dh))
            attn_out = _conv1d(blk.o, z).view(n_batch, n_pos, d)
            keep("hook_attn_out", attn_out)
            x = x + attn_out
            keep("hook_resid_mid", x)
            if i == self.last and not self.last_needs_mlp:
                break
            mlp_in = _layer_norm(blk.ln2, x)
            keep("mlp.hook_in", mlp_in)
            pre = _conv1d(blk.fc, mlp_in.view(-1, d))
            keep("mlp.hook_pre", pre.view(n_batch, n_pos, -1))
            post = blk.act(pre)
            keep("mlp.hook_post", post.view(n_batch, n_pos, -1))
            mlp_out = _conv1d(blk.proj, post).view(n_batch, n_pos, d)
            keep("hook_mlp_out", mlp_out)
            x = x + mlp_out
            keep("hook_resid_post", x)
        return out
