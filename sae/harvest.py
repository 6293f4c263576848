"""Harvesting: many hook points from one forward pass, as flat rows of real tokens.

One pass through the model serves every requested hook. Without gradients the pass
stops after the deepest requested layer (``stop_at_layer``). With gradients it runs to
the logits and takes g = ∂L/∂x at each hook, where L = Σ_t CE_t is the frozen model's
next-token loss *summed* over the batch's tokens, so g's scale (and a gradient SAE's β)
does not depend on the batch size. Rows at BOS and padding positions are dropped: they
say nothing about the text and would dominate norms (attention sinks).

Without gradients a GPT-2 model is run by ``sae.fused_forward`` (fused kernels under
``torch.inference_mode``, no hook machinery) whenever it applies, and by the bridge
otherwise; ``fused=False`` always uses the bridge (the reference the fused path is tested
against). ``Harvester.fused_reason`` says why a harvester runs the bridge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sae.fused_forward import FusedForward, fused_forward_support
from sae.hooks import HookSpec, resolve_hook
from sae.model import parse_dtype

EMBED_HOOK = "hook_embed"


@dataclass
class Harvest:
    """Rows from one batch: ``acts[hook]`` is ``[n_rows, d_in]``; rows align across hooks."""

    acts: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor] | None
    tokens: torch.Tensor  # [n_rows] the token at each row's position
    positions: torch.Tensor  # [n_rows, 2] (row in batch, position in sequence)

    def block(self) -> dict[str, torch.Tensor]:
        """Activations and gradients (under ``"<hook>.grad"``) as one aligned block of rows."""
        out = dict(self.acts)
        if self.grads is not None:
            out.update({f"{h}.grad": g for h, g in self.grads.items()})
        return out


def _saver(store: dict, name: str):
    """A hook that keeps the activation under the requested name (TransformerLens may call
    the hook by its canonical alias)."""

    def hook(act, hook):
        store[name] = act
        return act

    return hook


class Harvester:
    """Reads ``hooks`` of ``model`` in one pass; ``dtype`` is the storage dtype of the rows;
    ``fused`` allows ``sae.fused_forward`` where it applies."""

    def __init__(
        self,
        model,
        tokenizer,
        hooks: Sequence[str],
        with_grads: bool = False,
        dtype: str | torch.dtype = torch.float32,
        fused: bool = True,
    ):
        self.model = model
        self.specs: list[HookSpec] = [resolve_hook(model, h) for h in hooks]
        if len({s.name for s in self.specs}) != len(self.specs):
            raise ValueError("duplicate hook names")
        self.with_grads = with_grads
        self.dtype = parse_dtype(dtype)
        self.excluded = {t for t in (tokenizer.bos_token_id, tokenizer.pad_token_id) if t is not None}
        self.pad_id = tokenizer.pad_token_id
        self.tl_names = sorted({s.tl_name for s in self.specs})
        self.stop_at_layer = None if with_grads else max(s.layer for s in self.specs) + 1
        if self.stop_at_layer is not None and self.stop_at_layer >= model.cfg.n_layers:
            self.stop_at_layer = None
        if with_grads:
            self.fused_reason: str | None = "gradients run through the bridge"
        elif not fused:
            self.fused_reason = "fused=False"
        else:
            self.fused_reason = fused_forward_support(model, self.tl_names)
        self._fused = FusedForward(model, self.tl_names) if self.fused_reason is None else None

    def uses_fused(self) -> bool:
        """Whether the next pass runs the fused forward (it applies, and no hook is on the model now)."""
        return self._fused is not None and self._fused.usable()

    @property
    def hooks(self) -> list[str]:
        return [s.name for s in self.specs]

    def d_in(self, hook: str) -> int:
        return next(s.d_in for s in self.specs if s.name == hook)

    def mask(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = torch.ones_like(tokens, dtype=torch.bool)
        for t in self.excluded:
            keep &= tokens != t
        return keep

    def __call__(self, tokens: torch.Tensor) -> Harvest:
        device = next(self.model.parameters()).device
        tokens = tokens.to(device)
        keep = self.mask(tokens)
        where = keep.flatten().nonzero().squeeze(1)  # flat indices of the kept positions
        # inference mode is safe here: every row below is a fresh tensor (index_select) made outside it
        raw = self._grad_pass(tokens) if self.with_grads else (self._forward_pass(tokens, inference=True), None)
        cache, grad_cache = raw

        def rows(spec: HookSpec, act: torch.Tensor) -> torch.Tensor:
            flat = spec.read(act).reshape(-1, spec.d_in)
            return flat.index_select(0, where).to(self.dtype)  # index_select: faster than a mask

        acts = {s.name: rows(s, cache[s.tl_name]) for s in self.specs}
        grads = None
        if grad_cache is not None:
            grads = {s.name: rows(s, grad_cache[s.tl_name]) for s in self.specs}
        return Harvest(acts=acts, grads=grads, tokens=tokens.flatten()[where].cpu(), positions=keep.nonzero().cpu())

    def full(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, seq, d_in]`` activations at every position (no masking), by hook name."""
        device = next(self.model.parameters()).device
        cache = self._forward_pass(tokens.to(device))
        return {s.name: s.read(cache[s.tl_name]).to(self.dtype) for s in self.specs}

    @torch.no_grad()
    def _forward_pass(self, tokens: torch.Tensor, inference: bool = False) -> dict[str, torch.Tensor]:
        if self.uses_fused():
            with torch.inference_mode(inference):
                return self._fused(tokens)
        store: dict[str, torch.Tensor] = {}
        kwargs = {} if self.stop_at_layer is None else {"stop_at_layer": self.stop_at_layer}
        self.model.run_with_hooks(tokens, fwd_hooks=[(n, _saver(store, n)) for n in self.tl_names], **kwargs)
        return store

    def _grad_pass(self, tokens: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        store: dict[str, torch.Tensor] = {}

        def track(act, hook):
            return act.detach().requires_grad_(True)

        with torch.enable_grad():
            logits = self.model.run_with_hooks(
                tokens, fwd_hooks=[(EMBED_HOOK, track)] + [(n, _saver(store, n)) for n in self.tl_names]
            )
            targets = tokens[:, 1:]
            valid = targets != (self.pad_id if self.pad_id is not None else -1)
            ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
            loss = (ce * valid.flatten()).sum()
            grads = torch.autograd.grad(loss, [store[n] for n in self.tl_names], allow_unused=True)
        acts = {n: store[n].detach() for n in self.tl_names}
        grad_cache = {
            n: (g if g is not None else torch.zeros_like(acts[n])) for n, g in zip(self.tl_names, grads, strict=True)
        }
        return acts, grad_cache
