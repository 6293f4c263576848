"""``HookedSAETransformer``: a ``TransformerBridge`` with SAEs spliced in, as in SAELens.

``add_sae(sae)`` makes the model compute the SAE's reconstruction at the SAE's hook point
instead of the activation there; the SAE's internals are hook points of the model,
named ``f"{sae.hook_name}.{point}"`` (``blocks.1.hook_resid_post.hook_sae_acts_post``), so
``run_with_cache`` caches them and ``run_with_hooks`` patches or steers features with
plain hooks. Per spliced SAE, in the order they fire (SAELens's order):

- ``hook_sae_input``: the rows the SAE reads, ``[batch, pos, d_in]`` (``hook_z``: heads
  concatenated, or the one head of ``hook_z[h]``);
- ``hook_sae_acts_pre``: pre-activations ``[batch, pos, d_sae]``;
- ``hook_sae_acts_post``: the codes (what a feature ablation or steering edits);
- ``hook_sae_recons``: the decoder's output (plus a skip transcoder's linear path);
- ``hook_sae_error`` (with the error term only): x − x̂, x̂ recomputed from the unedited
  input with the SAE's own hooks bypassed, so an edit of the codes moves the output by
  exactly its change of x̂;
- ``hook_sae_output``: what the model receives, ``[batch, pos, d_out]``.

Differences from SAELens, each deliberate: ``hook_sae_error`` and ``hook_sae_output`` of
an ``attn.hook_z`` SAE are in the SAE's row space (heads concatenated) rather than
reshaped to ``[.., n_heads, d_head]``, which keeps one shape for a head-specific SAE too;
``hook_head_index`` is honoured (SAELens splices the whole hook); a skip transcoder's skip
path is part of the splice; the error term may carry gradients
(``differentiable_error=True``: the error is x − x̂ with autograd on, so ∂output/∂x is the
identity and gradients reach the error hook; SAELens computes it under ``no_grad``).

**Positions.** SAELens splices every position (``exclude_special_tokens=False``, the
default here too); the lab's splice-in CE (``evals.core.splice``) leaves BOS and padding
untouched because SAEs are trained without BOS rows. ``exclude_special_tokens=True``
bypasses the tokenizer's BOS/EOS/PAD positions (SAELens's rule), and a list of token ids
bypasses exactly those (``lab_positions(tokenizer)`` gives the lab's BOS + padding).
Bypassed positions pass the activation through unchanged and have a zero error.

The bridge stays a ``TransformerBridge``: ``from_bridge`` re-classes a loaded bridge in
place (no copy of the weights), so every lab function that takes a bridge takes this too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformer_lens.hook_points import HookPoint
from transformer_lens.model_bridge import TransformerBridge

from sae.errors import ConfigError
from sae.hooks import HookSpec, resolve_hook
from sae.processing import check_processing
from sae.spliceable import SAE

#: the hook points of one spliced SAE, in the order they fire
SAE_HOOKS = (
    "hook_sae_input",
    "hook_sae_acts_pre",
    "hook_sae_acts_post",
    "hook_sae_recons",
    "hook_sae_error",
    "hook_sae_output",
)

Exclude = bool | Sequence[int]


def lab_positions(tokenizer) -> list[int]:
    """The token ids the lab's splice leaves untouched (BOS and padding), for ``exclude_special_tokens``."""
    return sorted({tokenizer.bos_token_id, tokenizer.pad_token_id} - {None})


def special_token_ids(tokenizer) -> list[int]:
    """SAELens's structural special tokens: BOS, EOS, PAD, SEP, decoder start."""
    ids = {getattr(tokenizer, a, None) for a in ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id")}
    ids.add(getattr(tokenizer, "decoder_start_token_id", None))
    return sorted(ids - {None})


@dataclass
class _Splice:
    """One spliced SAE: its hook points, where it reads and writes, and its options."""

    sae: SAE
    spec_in: HookSpec
    spec_out: HookSpec
    points: dict[str, HookPoint]
    use_error_term: bool
    exclude: Exclude
    differentiable_error: bool
    handles: list = field(default_factory=list)  # (HookPoint, LensHandle) on the model's hooks
    captured: torch.Tensor | None = None  # a transcoder's input rows of the current pass
    mask: torch.Tensor | None = None  # [batch, pos] True = bypass, for the current pass

    @property
    def transcoder(self) -> bool:
        return self.sae.hook_name_out is not None

    def edited(self) -> bool:
        """Whether a hook on the SAE's encode/decode points could have changed x̂."""
        return any(self.points[n].fwd_hooks for n in SAE_HOOKS[:4])


class HookedSAETransformer(TransformerBridge):
    """A ``TransformerBridge`` that splices SAEs and transcoders in (SAELens's API)."""

    _saelab_splices: dict[str, _Splice]

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float32",
        **processing,
    ) -> HookedSAETransformer:
        """A provider's model by name (the default provider's when None), a local Hugging Face
        directory or a hub name, loaded by ``sae.model.load_model``; the tokenizer is
        ``model.tokenizer``.

        The model is unprocessed (``from_pretrained_no_processing`` in TransformerLens
        terms); processing flags set to False are accepted as no-ops and any other keyword
        is refused, so a processed model is never assumed silently.
        """
        from sae.model import load_model

        asked = sorted(k for k, v in processing.items() if v is not False)
        if asked:
            raise ConfigError(
                f"HookedSAETransformer.from_pretrained: {', '.join(asked)} not supported here; the model is "
                "loaded unprocessed (load it with the processing its SAE needs, then HookedSAETransformer.from_bridge)"
            )
        bridge, _tokenizer = load_model(name, device=device, dtype=dtype)
        return cls.from_bridge(bridge)

    @classmethod
    def from_bridge(cls, bridge: TransformerBridge) -> HookedSAETransformer:
        """Turn a loaded bridge into a ``HookedSAETransformer`` in place (same modules and weights)."""
        if not isinstance(bridge, TransformerBridge):
            raise TypeError(f"expected a TransformerBridge, got {type(bridge).__name__}")
        if not isinstance(bridge, cls):
            bridge.__class__ = cls
        if "_saelab_splices" not in bridge.__dict__:
            bridge._saelab_splices = {}
        return bridge

    # -- attaching SAEs ----------------------------------------------------------------

    @property
    def acts_to_saes(self) -> dict[str, SAE]:
        """Hook name → spliced SAE."""
        return {name: s.sae for name, s in self._saelab_splices.items()}

    def add_sae(
        self,
        sae: SAE | tuple,
        use_error_term: bool | None = None,
        exclude_special_tokens: Exclude = False,
        differentiable_error: bool = False,
    ) -> None:
        """Splice ``sae`` in at its hook (replacing an SAE already there) until ``reset_saes``.

        ``use_error_term`` None keeps ``sae.use_error_term``; True adds x − x̂ back so the
        model computes what it computes without the SAE (up to float rounding) while every
        SAE hook still fires. ``exclude_special_tokens``: see the module docstring.
        ``differentiable_error``: the error term carries gradients.
        """
        sae = as_sae(sae)
        key = sae.hook_name
        # an SAE trained on a processed model (fold_ln, ...) never splices silently into another
        check_processing(self, sae.module, f"SAE for {key}")
        if key in self._saelab_splices:
            self._remove(key)
        spec_in = self._spec(sae.hook_name, sae)
        spec_out = self._spec(sae.hook_name_out, sae) if sae.hook_name_out else spec_in
        d_in, d_out = int(sae.W_enc.shape[0]), int(sae.W_dec.shape[1])
        if spec_in.d_in != d_in or spec_out.d_in != d_out:
            raise ConfigError(
                f"SAE for {key}: its width (d_in {d_in}, d_out {d_out}) does not fit the model's hooks "
                f"({spec_in.name}: {spec_in.d_in}, {spec_out.name}: {spec_out.d_in})"
            )
        points = {}
        for name in SAE_HOOKS:
            hp = HookPoint()
            hp.name = f"{key}.{name}"
            points[name] = hp
        splice = _Splice(
            sae,
            spec_in,
            spec_out,
            points,
            sae.use_error_term if use_error_term is None else bool(use_error_term),
            exclude_special_tokens,
            differentiable_error,
        )
        hook_dict = self.hook_dict
        if splice.transcoder:
            point = hook_dict[spec_in.tl_name]
            splice.handles.append((point, point.add_hook(self._capture_fn(splice), is_permanent=True)))
        point = hook_dict[spec_out.tl_name]
        splice.handles.append((point, point.add_hook(self._splice_fn(splice), is_permanent=True, prepend=True)))
        self._saelab_splices[key] = splice
        self._register_sae_points()

    def reset_saes(self, act_names: str | Sequence[str] | None = None) -> None:
        """Remove the SAEs at ``act_names`` (all when None); the model computes as before."""
        names = [act_names] if isinstance(act_names, str) else list(act_names or self._saelab_splices)
        for name in names:
            if name in self._saelab_splices:
                self._remove(name)

    @contextmanager
    def saes(
        self,
        saes: SAE | Sequence[SAE] = (),
        reset_saes_end: bool = True,
        use_error_term: bool | None = None,
        exclude_special_tokens: Exclude = False,
        differentiable_error: bool = False,
    ) -> Iterator[HookedSAETransformer]:
        """Splice ``saes`` in for the block; on exit the SAEs that were at those hooks before
        are restored (with their options) and the others removed."""
        saes = [saes] if isinstance(saes, SAE) or _is_loaded_pair(saes) else list(saes)
        previous = []
        try:
            for sae in saes:
                sae = as_sae(sae)
                previous.append((sae.hook_name, self._saelab_splices.get(sae.hook_name)))
                self.add_sae(sae, use_error_term, exclude_special_tokens, differentiable_error)
            yield self
        finally:
            if reset_saes_end:
                for name, before in reversed(previous):
                    self.reset_saes(name)
                    if before is not None:
                        self.add_sae(before.sae, before.use_error_term, before.exclude, before.differentiable_error)

    def run_with_saes(
        self,
        *args,
        saes=(),
        reset_saes_end: bool = True,
        use_error_term: bool | None = None,
        exclude_special_tokens: Exclude = False,
        differentiable_error: bool = False,
        **kwargs,
    ):
        """One forward pass with ``saes`` spliced in (removed afterwards)."""
        with self.saes(saes, reset_saes_end, use_error_term, exclude_special_tokens, differentiable_error):
            return self(*args, **kwargs)

    def run_with_cache_with_saes(
        self,
        *args,
        saes=(),
        reset_saes_end: bool = True,
        use_error_term: bool | None = None,
        exclude_special_tokens: Exclude = False,
        differentiable_error: bool = False,
        **kwargs,
    ):
        """``run_with_cache`` with ``saes`` spliced in: the cache holds their hook points
        (``"{hook}.hook_sae_acts_post"``, ...) too; ``names_filter`` as in ``run_with_cache``."""
        with self.saes(saes, reset_saes_end, use_error_term, exclude_special_tokens, differentiable_error):
            return self.run_with_cache(*args, **kwargs)

    def run_with_hooks_with_saes(
        self,
        *args,
        saes=(),
        reset_saes_end: bool = True,
        use_error_term: bool | None = None,
        exclude_special_tokens: Exclude = False,
        differentiable_error: bool = False,
        **kwargs,
    ):
        """``run_with_hooks`` (``fwd_hooks`` may name SAE hook points) with ``saes`` spliced in."""
        with self.saes(saes, reset_saes_end, use_error_term, exclude_special_tokens, differentiable_error):
            return self.run_with_hooks(*args, **kwargs)

    def forward(self, input, *args, **kwargs):
        """The bridge's forward, after telling each spliced SAE which positions to bypass."""
        splices = list(self.__dict__.get("_saelab_splices", {}).values())
        masked = [s for s in splices if s.exclude is not False]
        if masked:
            tokens = input if isinstance(input, torch.Tensor) else self.to_tokens(input)
            for s in masked:
                ids = special_token_ids(self.tokenizer) if s.exclude is True else list(s.exclude)
                mask = torch.zeros(tokens.shape, dtype=torch.bool, device=tokens.device)
                for t in ids:
                    mask |= tokens == t
                s.mask = mask
        if splices:
            self._register_sae_points()
        try:
            return super().forward(input, *args, **kwargs)
        finally:
            for s in splices:
                s.mask, s.captured = None, None

    # -- internals ---------------------------------------------------------------------

    def _spec(self, name: str, sae: SAE) -> HookSpec:
        """The hook ``name`` (lab notation); a bridge hook outside ``sae.hooks.BLOCK_HOOKS``
        (``blocks.L.mlp.hook_in``, a transcoder's input) is taken as it is, probed for its width."""
        try:
            return resolve_hook(self, name)
        except Exception as e:  # SaelabError: unknown hook; name it as the SAE's
            if name in self.hook_dict:
                return self._plain_spec(name)
            raise ConfigError(f"SAE {name!r}: {e}") from None

    def _plain_spec(self, name: str) -> HookSpec:
        tokens = torch.zeros((1, 2), dtype=torch.long, device=next(self.parameters()).device)
        splices, self._saelab_splices = self._saelab_splices, {}
        try:
            with torch.no_grad():
                _, cache = self.run_with_cache(tokens, names_filter=[name])
        finally:
            self._saelab_splices = splices
        parts = name.split(".")
        layer = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        shape = tuple(cache[name].shape[2:])
        return HookSpec(name=name, tl_name=name, layer=layer, site=".".join(parts[2:]), head=None, shape=shape)

    def _register_sae_points(self) -> None:
        """Put the SAE hook points in the bridge's registry (a re-scan of the modules drops them)."""
        registry = self._hook_registry
        for splice in self._saelab_splices.values():
            for point in splice.points.values():
                registry[point.name] = point

    def _remove(self, key: str) -> None:
        splice = self._saelab_splices.pop(key)
        for point, handle in splice.handles:
            handle.hook.remove()
            point.fwd_hooks[:] = [h for h in point.fwd_hooks if h is not handle]
        for point in splice.points.values():
            point.remove_hooks("both", including_permanent=True)
            if self._hook_registry.get(point.name) is point:
                del self._hook_registry[point.name]

    @staticmethod
    def _capture_fn(splice: _Splice):
        def capture(act, hook=None):
            splice.captured = splice.spec_in.read(act)
            return None

        return capture

    def _splice_fn(self, splice: _Splice):
        sae, p = splice.sae, splice.points

        def reconstruct(x: torch.Tensor, hooked: bool) -> torch.Tensor:
            hp = p if hooked else dict.fromkeys(p, lambda t: t)
            x = hp["hook_sae_input"](x)
            if sae.staged:
                pre = hp["hook_sae_acts_pre"](sae.pre_acts(x))
                codes = hp["hook_sae_acts_post"](sae.activate(pre))
            else:
                pre = sae.pre_acts(x)
                if pre is not None:
                    hp["hook_sae_acts_pre"](pre)
                codes = hp["hook_sae_acts_post"](sae.encode(x))
            out = sae.decode(codes)
            skip = sae.skip(x)
            return hp["hook_sae_recons"](out if skip is None else out + skip)

        def splice_hook(act, hook=None):
            rows = splice.spec_out.read(act)
            if splice.transcoder:
                if splice.captured is None:
                    raise RuntimeError(
                        f"transcoder {sae.hook_name}: its input hook did not fire before its output hook"
                    )
                x = splice.captured
            else:
                x = rows
            x = x.to(sae.dtype)
            recons = reconstruct(x, hooked=True)
            out = recons
            if splice.use_error_term:
                out = self._with_error(splice, rows.to(recons.dtype), recons, lambda: reconstruct(x, hooked=False))
            out = out.to(rows.dtype)
            if splice.mask is not None:
                out = torch.where(splice.mask[..., None], rows, out)
            out = p["hook_sae_output"](out)
            return splice.spec_out.write(act, out)

        return splice_hook

    @staticmethod
    def _with_error(splice: _Splice, rows: torch.Tensor, recons: torch.Tensor, clean_recons) -> torch.Tensor:
        """x̂_hooked + (x − x̂_clean), x̂_clean recomputed with the SAE's hooks bypassed when a
        hook could have edited x̂.

        Without edits the value is computed as x + (x̂ − x̂), which is x to the bit (x̂ + (x − x̂)
        rounds); an edit of the codes moves it by exactly its change of x̂. Gradients: by
        default the error is a constant (SAELens), so ∂output/∂x = ∂x̂/∂x; with
        ``differentiable_error`` it is x − x̂_clean with autograd on, and the output is
        x̂ + error so that gradients pass through ``hook_sae_error``.
        """
        grad = torch.is_grad_enabled()
        with torch.set_grad_enabled(grad and splice.differentiable_error):
            clean = clean_recons() if splice.edited() else recons
            error = rows - clean
        if not splice.differentiable_error:
            error = error.detach()
        if splice.mask is not None:
            error = error.masked_fill(splice.mask[..., None], 0)
        hooked = splice.points["hook_sae_error"](error)
        if splice.differentiable_error or hooked is not error:
            return recons + hooked
        value = rows + (recons.detach() - clean.detach())
        if splice.mask is not None:  # x there, whatever x̂ is
            value = torch.where(splice.mask[..., None], rows, value)
        return value.detach() + (recons - recons.detach()) if grad else value


def _is_loaded_pair(obj) -> bool:
    return isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], dict)


def as_sae(sae) -> SAE:
    """An ``SAE`` from an ``SAE`` or ``load_sae``'s ``(module, cfg_json)``."""
    if isinstance(sae, SAE):
        return sae
    if _is_loaded_pair(sae):
        return SAE.from_cfg(sae[0], sae[1])
    raise TypeError(f"expected an SAE (sae.spliceable.SAE) or load_sae's (module, cfg), got {type(sae).__name__}")
