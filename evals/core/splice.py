"""Splicing an SAE into the language model, and the per-token losses that compare runs.

A spliced run replaces the activation at one hook point by something else on every
position whose token is not BOS or padding, and leaves those positions untouched:

- ``sae``: the SAE's reconstruction x̂ (x̂ is computed from the clean activation, which is
  also what the hook sees, since nothing upstream changes);
- ``sae_error``: x̂ + (x_clean − x̂) with x_clean the activation the clean run cached at
  this hook (the rows the SAE encoded), not the live one: its CE equals the clean CE only
  when the splice hook sees and writes the very rows the cache and the SAE saw (same
  hook, same head, same positions, same order). It is the check that reading and writing
  the hook (per head for ``hook_z``) is right; it also records max |x_live − x_clean|
  over the spliced rows, which is 0 when the hook is aligned. (With the live activation
  in place of x_clean, x̂ + (x − x̂) = x whatever the hook reads, and the check could not
  fail.);
- ``zero``: zeros (zero ablation);
- ``mean``: the mean activation over non-BOS tokens of other held-out text.

A transcoder (input hook → output hook) is spliced at its **output** hook: a hook at the
input keeps the live input rows of the same forward pass, and the output hook replaces
the output by the transcoder's prediction from them (``transcoder_hooks``). Zero and mean
ablation are then of the output hook: for an MLP transcoder, CE recovered measures the
transcoder against deleting the MLP (zero) or replacing it by its mean output (mean).

BOS positions are not spliced because SAEs are trained without BOS rows (attention sinks
with outsized norms); zero- and mean-ablation spare them for the same reason, so all
conditions differ from the clean run on the same positions. Losses are scored on the same
positions: those whose input token is spliced (not BOS or padding) and whose next token
is not padding.

An SAE is spliced only into a model in the weight processing it was trained on
(``check_spliceable``): a GPT-2 SAE trained on a centred model reads other activations on
a raw one, and that must fail loudly rather than give a quietly worse CE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sae.hooks import HookSpec
from sae.processing import check_splice

MODES = ("sae", "sae_error", "zero", "mean")


def check_spliceable(model, sae, spec: HookSpec, what: str = "the SAE") -> None:
    """Refuse (one line) an SAE whose processing or width does not fit ``model`` at ``spec``."""
    check_splice(model, sae, spec.name, what)


def splice_hook(
    spec: HookSpec,
    mode: str,
    keep: torch.Tensor,
    replacement: torch.Tensor | None = None,
    clean: torch.Tensor | None = None,
    check: dict | None = None,
):
    """A TransformerLens forward hook for ``spec``.

    ``keep``: ``[B, T]`` bool, the positions to replace (non-BOS, non-pad). ``replacement``:
    for ``sae``/``sae_error`` the ``[n_keep, d_in]`` reconstruction rows in ``keep`` order;
    for ``mean`` the ``[d_in]`` mean; unused for ``zero``. ``clean`` (``sae_error`` only,
    required): the ``[n_keep, d_in]`` rows of the cached clean activation the
    reconstruction was made from; the hook writes x̂ + (clean − x̂) and, when ``check`` is
    a dict, sets ``check["max_abs_diff"]`` to max |live − clean| over the spliced rows.
    """
    if mode not in MODES:
        raise ValueError(f"unknown splice mode {mode!r}")
    if mode == "sae_error" and clean is None:
        raise ValueError("the sae_error splice needs the cached clean rows (clean=...)")

    def hook(act, hook=None):
        rows = spec.read(act)
        new = rows.clone()
        if mode == "zero":
            new[keep] = 0
        elif mode == "mean" or mode == "sae":
            new[keep] = replacement.to(new.dtype)
        else:
            live = rows[keep]
            x_clean = clean.to(live.dtype)
            if live.shape != x_clean.shape:
                raise ValueError(f"the hook sees {tuple(live.shape)} rows, the cache holds {tuple(x_clean.shape)}")
            if check is not None:
                diff = (live - x_clean).abs()
                check["max_abs_diff"] = float(diff.max()) if diff.numel() else 0.0
            x_hat = replacement.to(live.dtype)
            new[keep] = x_hat + (x_clean - x_hat)
        return spec.write(act, new)

    return hook


def scored_positions(tokens: torch.Tensor, keep: torch.Tensor, pad_id: int | None) -> torch.Tensor:
    """``[B, T-1]`` bool: positions t whose activation is spliced and whose target t+1 is real."""
    scored = keep[:, :-1].clone()
    if pad_id is not None:
        scored &= tokens[:, 1:] != pad_id
    return scored


def token_losses(logits: torch.Tensor, tokens: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-token CE at scored positions, log-probabilities there) in float32."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)[scored]
    ce = -logp.gather(-1, tokens[:, 1:][scored][:, None])[:, 0]
    return ce, logp


def kl_to_clean(clean_logp: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Per position KL(p_clean ‖ p_run) = Σ p_clean (log p_clean − log p_run)."""
    return (clean_logp.exp() * (clean_logp - logp)).sum(-1).clamp_min(0)


def ce_loss_recovered(ce_run: float, ce_clean: float, ce_ablated: float) -> float:
    """(CE_ablated − CE_run) / (CE_ablated − CE_clean): 1 = as good as clean, 0 = as bad as
    the ablation."""
    denom = ce_ablated - ce_clean
    return (ce_ablated - ce_run) / denom if denom != 0 else float("nan")


def transcoder_hooks(spec_in: HookSpec, spec_out: HookSpec, predict, keep: torch.Tensor) -> list:
    """Forward hooks splicing a transcoder in: read ``spec_in``'s live rows at ``keep``, write
    ``predict(rows)`` (``[n_keep, d_out]``) over ``spec_out``'s rows there, in one forward pass.

    The input must run first (``sae.hooks.resolve_pair`` checks the order when a run is
    configured); an output hook that fires with no input read is an error, not a silent
    use of stale rows.
    """
    live: dict[str, torch.Tensor] = {}

    def read(act, hook=None):
        live["x"] = spec_in.read(act)[keep]
        return act

    def write(act, hook=None):
        if "x" not in live:
            raise ValueError(f"{spec_out.name} ran before {spec_in.name}: the transcoder has no input to read")
        x = live.pop("x")
        rows = spec_out.read(act)
        new = rows.clone()
        new[keep] = predict(x.float()).to(new.dtype)
        return spec_out.write(act, new)

    return [(spec_in.tl_name, read), (spec_out.tl_name, write)]
