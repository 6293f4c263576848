"""One pass over held-out text that measures every SAE: reconstruction and spliced-in metrics.

Per batch of token sequences: one clean forward pass caches every SAE's hook; per hook
point, one zero-ablated and one mean-ablated pass (shared by the SAEs reading it); per
SAE, one pass with x̂ spliced in and one with x̂ + (x_clean − x̂), x_clean the cached clean
activation (the splice check; see ``evals.core.splice``). Reconstruction statistics
are taken on the same rows the splice replaces (non-BOS, non-padding tokens). A gradient
SAE evaluated with its training rule at inference (``info["inference_rule"] == "gradient"``)
also costs one forward and backward pass per batch, for g = ∂CE/∂x at its hook.

A transcoder (``EvalTarget.out_spec``: the hook it predicts) is measured on its output:
FVU of the output rows predicted from the input rows, and CE with the output hook replaced
by the prediction made from the live input of the same pass, beside zero and mean ablation
of the output hook (for an MLP transcoder: the MLP deleted, or replaced by its mean output).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

import torch

from evals.core.metrics import ReconstructionStats, density_histogram
from evals.core.splice import (
    ce_loss_recovered,
    check_spliceable,
    kl_to_clean,
    scored_positions,
    splice_hook,
    token_losses,
    transcoder_hooks,
)
from sae.hooks import HookSpec
from sae.progress import progress_bar

SPLICE_DEFINITIONS = {
    "ce_loss_clean": "next-token cross-entropy of the unmodified model (nats), over scored positions",
    "ce_loss_with_sae": "the same with the hook replaced by the SAE reconstruction x_hat on non-BOS positions",
    "ce_loss_with_sae_and_error": "CE with x_hat + (x_clean - x_hat) spliced in, x_clean the activation cached "
    "by the clean run, on the first batches only: equals splice_check_ce_clean (the clean CE of those batches) "
    "only when the splice reads and writes the rows the cache and the SAE saw",
    "splice_check_max_abs_diff": "max |x_live - x_clean| over the spliced rows of the check batches: the "
    "activation the splice hook reads against the cached clean one (0 when the hook is aligned)",
    "ce_loss_zero_ablation": "the same with the hook set to zero on non-BOS positions",
    "ce_loss_mean_ablation": "the same with the hook set to its mean over non-BOS tokens of other held-out text",
    "ce_loss_recovered_zero": "(CE_zero - CE_sae) / (CE_zero - CE_clean)",
    "ce_loss_recovered_mean": "(CE_mean - CE_sae) / (CE_mean - CE_clean)",
    "delta_ce": "CE_sae - CE_clean (nats)",
    "kl_div": "E over scored positions of KL(p_clean || p_sae) (nats)",
    "kl_div_with_error": "KL(p_clean || p_{x_hat + (x_clean - x_hat)}): ~0 when the splice is right",
    "kl_div_zero_ablation": "KL(p_clean || p_zero)",
    "kl_div_mean_ablation": "KL(p_clean || p_mean)",
    "kl_score_zero": "(KL_zero - KL_sae) / KL_zero",
    "kl_score_mean": "(KL_mean - KL_sae) / KL_mean",
    "scored positions": "positions whose input token is not BOS or padding (the spliced ones) and whose next "
    "token is not padding; BOS positions are never spliced (SAEs are trained without them)",
}


@dataclass
class EvalTarget:
    """A loaded SAE under evaluation and the hook it reads (a saved one is found as a
    ``sae.run_dir.SAEEntry`` first)."""

    name: str
    sae: torch.nn.Module
    spec: HookSpec
    info: dict = field(default_factory=dict)
    out_spec: HookSpec | None = None  # a transcoder's output hook (None: an SAE, which writes where it reads)

    @property
    def written(self) -> HookSpec:
        """The hook the splice replaces: a transcoder's output hook, else the SAE's own."""
        return self.out_spec if self.out_spec is not None else self.spec


@dataclass
class _Sums:
    ce: float = 0.0
    kl: float = 0.0

    def add(self, ce: torch.Tensor, kl: torch.Tensor | None) -> None:
        self.ce += float(ce.double().sum())
        if kl is not None:
            self.kl += float(kl.double().sum())


def _run(model, tokens: torch.Tensor, hooks: list) -> torch.Tensor:
    return model.run_with_hooks(tokens, fwd_hooks=hooks)


def _capture(store: dict, name: str):
    def hook(act, hook=None):
        store[name] = act.detach()
        return act

    return hook


def mean_activations(
    model, tokenizer, specs: list[HookSpec], batches: Iterable[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per hook point, the mean row over non-BOS, non-padding tokens of ``batches``."""
    from sae.harvest import Harvester

    harvester = Harvester(model, tokenizer, list(dict.fromkeys(s.name for s in specs)))
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for tokens in batches:
        harvest = harvester(tokens)
        for hook, rows in harvest.acts.items():
            total = rows.double().sum(0)
            sums[hook] = sums[hook] + total if hook in sums else total
        n += next(iter(harvest.acts.values())).shape[0]
    if n == 0:
        raise ValueError("no tokens to take the mean over")
    return {h: (s / n).float() for h, s in sums.items()}


def splice_mask(tokens: torch.Tensor, tokenizer) -> torch.Tensor:
    keep = torch.ones_like(tokens, dtype=torch.bool)
    for t in {tokenizer.bos_token_id, tokenizer.pad_token_id} - {None}:
        keep &= tokens != t
    return keep


@torch.no_grad()
def _score_splice(
    model, tokens, keep, scored, logp_clean, sums: _Sums, spec: HookSpec, mode: str, replacement=None, **check
):
    """Add one splice's CE and KL-to-clean over the scored positions to ``sums`` (``check``:
    ``clean`` rows and a ``check`` dict for the ``sae_error`` splice, see ``splice_hook``)."""
    out = _run(model, tokens, [(spec.tl_name, splice_hook(spec, mode, keep, replacement, **check))])
    ce, logp = token_losses(out, tokens, scored)
    sums.add(ce, kl_to_clean(logp_clean, logp))


@torch.no_grad()
def _score_transcoder(model, tokens, keep, scored, logp_clean, sums: _Sums, e: EvalTarget):
    """Add the CE and KL of a run with ``e``'s output hook replaced by its live prediction."""
    predict = lambda x: e.sae.reconstruct(x)[1]  # noqa: E731
    out = _run(model, tokens, transcoder_hooks(e.spec, e.out_spec, predict, keep))
    ce, logp = token_losses(out, tokens, scored)
    sums.add(ce, kl_to_clean(logp_clean, logp))


@torch.no_grad()
def evaluate_saes(
    model,
    tokenizer,
    entries: list[EvalTarget],
    batches: Iterable[torch.Tensor],
    means: dict[str, torch.Tensor] | None,
    splice: bool = True,
    dense_threshold: float = 0.1,
    progress: bool = True,
    total: int | None = None,
    error_check_batches: int = 2,
    observe=None,
) -> dict[str, dict]:
    """Metrics of every SAE in ``entries`` on ``batches`` of ``[B, T]`` token ids (BOS-led rows).

    The x̂ + (x − x̂) pass is a check of the splice, not a metric, so it runs on the first
    ``error_check_batches`` batches only (against the clean CE of those batches).
    ``observe(name, x, selection, x_hat, sequence)``, if given, sees every batch's rows of every
    SAE and the index (in its batch) of the sequence each row belongs to (the SAEBench core evaluation
    accumulates its own formulas on the same rows).

    Returns name → metrics (keys as in ``DEFINITIONS`` and ``SPLICE_DEFINITIONS``) plus
    ``densities`` (per latent) and ``density_histogram``.
    """
    for e in entries:  # the SAE reads this model's activations only in its own processing
        check_spliceable(model, e.sae, e.spec, f"SAE {e.name}")
    device = next(model.parameters()).device
    specs = {s.name: s for e in entries for s in (e.spec, e.out_spec) if s is not None}  # rows read
    written = {e.written.name: e.written for e in entries}  # hooks spliced and ablated
    gradient = [e for e in entries if e.info.get("inference_rule") == "gradient"]
    harvester = None
    if gradient:  # gradient SAEs selecting with g = ∂CE/∂x at inference: one backward pass per batch
        from sae.harvest import Harvester

        # g at the hook the SAE writes: a gradient transcoder scores W_dec g in its output space
        harvester = Harvester(model, tokenizer, sorted({e.written.name for e in gradient}), with_grads=True)
    stats = {e.name: ReconstructionStats(e.sae.cfg.d_sae) for e in entries}
    clean, n_scored = _Sums(), 0
    check_clean, n_check = _Sums(), 0
    ablated = {(h, m): _Sums() for h in written for m in ("zero", "mean")} if splice else {}
    spliced = {(e.name, m): _Sums() for e in entries for m in ("sae", "sae_error")} if splice else {}
    misalignment = dict.fromkeys((e.name for e in entries), 0.0)
    bar = progress_bar(total=total, desc="eval", unit="seq", disable=not progress, dynamic_ncols=True, leave=False)
    for index, tokens in enumerate(batches):
        tokens = tokens.to(device)
        keep = splice_mask(tokens, tokenizer)
        cache: dict[str, torch.Tensor] = {}
        tl = sorted({s.tl_name for s in specs.values()})
        logits = _run(model, tokens, [(n, _capture(cache, n)) for n in tl])
        clean_rows = {h: s.read(cache[s.tl_name])[keep] for h, s in specs.items()}
        rows = {h: r.float() for h, r in clean_rows.items()}
        grads = harvester(tokens).grads if harvester is not None else {}
        x_hats = {}
        sequence = keep.nonzero(as_tuple=True)[0] if observe is not None else None
        for e in entries:
            x = rows[e.spec.name]
            if e.info.get("inference_rule") == "gradient":
                g = grads[e.written.name].to(x.device, x.dtype)
                selection, x_hat = e.sae.reconstruct_with_gradient(x, g)
            else:
                selection, x_hat = e.sae.reconstruct(x)
            stats[e.name].update(rows[e.written.name], selection, x_hat)
            if observe is not None:
                observe(e.name, rows[e.written.name], selection, x_hat, sequence)
            x_hats[e.name] = x_hat
        if splice:
            scored = scored_positions(tokens, keep, tokenizer.pad_token_id)
            ce_clean, logp_clean = token_losses(logits, tokens, scored)
            clean.add(ce_clean, None)
            n_scored += int(scored.sum())
            check = index < error_check_batches
            if check:
                check_clean.add(ce_clean, None)
                n_check += int(scored.sum())

            score = partial(_score_splice, model, tokens, keep, scored, logp_clean)
            for h, spec in written.items():
                score(ablated[(h, "zero")], spec, "zero")
                score(ablated[(h, "mean")], spec, "mean", means[h].to(device))
            for e in entries:
                if e.out_spec is not None:
                    _score_transcoder(model, tokens, keep, scored, logp_clean, spliced[(e.name, "sae")], e)
                else:
                    score(spliced[(e.name, "sae")], e.spec, "sae", x_hats[e.name])
                if check:
                    seen: dict = {}
                    err_sums, x_clean = spliced[(e.name, "sae_error")], clean_rows[e.written.name]
                    score(err_sums, e.written, "sae_error", x_hats[e.name], clean=x_clean, check=seen)
                    misalignment[e.name] = max(misalignment[e.name], seen.get("max_abs_diff", float("inf")))
        bar.update(tokens.shape[0])
    bar.close()

    out = {}
    for e in entries:
        st = stats[e.name]
        if st.rows == 0:
            raise ValueError("no evaluated tokens")
        metrics = st.result(dense_threshold)
        if splice:
            metrics.update(_splice_metrics(clean, ablated, spliced, e, n_scored))
            err, m = spliced[(e.name, "sae_error")], max(n_check, 1)
            metrics.update(
                {
                    "splice_check_positions": n_check,
                    "splice_check_ce_clean": check_clean.ce / m,
                    "ce_loss_with_sae_and_error": err.ce / m,
                    "kl_div_with_error": err.kl / m,
                    "splice_check_max_abs_diff": misalignment[e.name],
                }
            )
        densities = st.densities()
        metrics["density_histogram"] = density_histogram(densities)
        metrics["densities"] = [round(float(d), 8) for d in densities]
        out[e.name] = metrics
    return out


def _splice_metrics(clean: _Sums, ablated: dict, spliced: dict, e: EvalTarget, n: int) -> dict:
    n = max(n, 1)
    ce_clean = clean.ce / n
    zero, mean = ablated[(e.written.name, "zero")], ablated[(e.written.name, "mean")]
    sae = spliced[(e.name, "sae")]
    ce = {"zero": zero.ce / n, "mean": mean.ce / n, "sae": sae.ce / n}
    kl = {"zero": zero.kl / n, "mean": mean.kl / n, "sae": sae.kl / n}
    return {
        "scored_positions": n,
        "ce_loss_clean": ce_clean,
        "ce_loss_with_sae": ce["sae"],
        "ce_loss_zero_ablation": ce["zero"],
        "ce_loss_mean_ablation": ce["mean"],
        "ce_loss_recovered_zero": ce_loss_recovered(ce["sae"], ce_clean, ce["zero"]),
        "ce_loss_recovered_mean": ce_loss_recovered(ce["sae"], ce_clean, ce["mean"]),
        "delta_ce": ce["sae"] - ce_clean,
        "kl_div": kl["sae"],
        "kl_div_zero_ablation": kl["zero"],
        "kl_div_mean_ablation": kl["mean"],
        "kl_score_zero": (kl["zero"] - kl["sae"]) / kl["zero"] if kl["zero"] else float("nan"),
        "kl_score_mean": (kl["mean"] - kl["sae"]) / kl["mean"] if kl["mean"] else float("nan"),
    }
