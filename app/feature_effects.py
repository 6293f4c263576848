"""What a feature does, computed on demand for its page: the per-token loss effect of
ablating it on its top contexts (SAEDashboard's / Neuronpedia's loss effect).

The SAE is spliced into the model with its error term (``sae.hooked.HookedSAETransformer``,
``use_error_term=True``, BOS and padding bypassed as in the lab's splice), so the spliced
model computes what the model computes; ablating the feature sets its code to zero at every
position (``hook_sae_acts_post``), which moves the hook's output by exactly −a·W_dec[f].
The effect at token t (t ≥ 1) is the change of the next-token loss of predicting t:
``Δloss[t] = CE_ablated(t) − CE_spliced(t)``; negative where the feature helped predict t.

Deviation from SAEDashboard: the model reads the context window stored in the dashboard
(``left`` tokens before the peak, ``right`` after, BOS prepended when the window does not
start the sequence), not the whole dashboard sequence, so tokens far back are missing.
"""

from __future__ import annotations

import numpy as np
import torch

from sae.hooked import HookedSAETransformer, lab_positions


def context_ids(tokenizer, tokens: list[str]) -> list[int]:
    """A stored window's token strings back to ids, BOS first."""
    ids = [int(i) for i in tokenizer.convert_tokens_to_ids(list(tokens))]
    return ids if ids and ids[0] == tokenizer.bos_token_id else [tokenizer.bos_token_id, *ids]


@torch.no_grad()
def ablation_loss_effects(model, tokenizer, sae, feature: int, windows: list[list[int]]) -> list[np.ndarray]:
    """Per window (token ids, BOS first), ``Δloss`` at each position: NaN at 0 (nothing
    predicts BOS), else CE with ``feature`` ablated minus CE with the SAE spliced."""
    if not windows:
        return []
    hooked = HookedSAETransformer.from_bridge(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.bos_token_id
    width = max(len(w) for w in windows)
    device = next(hooked.parameters()).device
    tokens = torch.full((len(windows), width), pad, dtype=torch.long, device=device)
    for i, w in enumerate(windows):  # right padding: a causal model's earlier positions are unaffected
        tokens[i, : len(w)] = torch.tensor(w, dtype=torch.long)

    def ablate(acts, hook=None):
        acts = acts.clone()
        acts[..., feature] = 0
        return acts

    exclude = lab_positions(tokenizer)
    with hooked.saes([sae], use_error_term=True, exclude_special_tokens=exclude):
        spliced = hooked(tokens)
        ablated = hooked.run_with_hooks(tokens, fwd_hooks=[(f"{sae.hook_name}.hook_sae_acts_post", ablate)])
    target = tokens[:, 1:, None]

    def ce(logits):
        return -logits[:, :-1].float().log_softmax(-1).gather(-1, target)[..., 0]

    delta = (ce(ablated) - ce(spliced)).cpu().numpy()
    return [np.r_[np.nan, delta[i, : len(w) - 1]] for i, w in enumerate(windows)]
