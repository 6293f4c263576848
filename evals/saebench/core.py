"""SAEBench's core evaluation (``eval_type_id: core``) from the suite's held-out pass.

The lab's pass (``evals.core.evaluate``) already splices every SAE into the model on
held-out text; CE, KL, L0 and densities are taken from it where SAEBench computes the same
thing (CE/KL scores against **zero** ablation, as SAEBench). What SAEBench computes
differently is accumulated here, batch by batch, on the same rows (``CoreStats``):

- ``explained_variance`` (SAEBench 0.6 formula, named ``explained_variance_saebench`` in the
  details): 1 − mean_b E‖x−x̂‖² / (mean_b E‖x‖² − (mean_b mean_d E[x_d²])²). SAEBench meant
  the variance about the mean but squares the mean of x² (SAELens #659), so the
  denominator is about the variance around zero;
- ``explained_variance_legacy`` (the SAEBench paper's): mean over tokens of
  1 − ‖x−x̂‖² / ‖x − x̄_batch‖², x̄_batch the batch's mean row;
- ``explained_variance_saelab``: the lab's 1 − E‖x−x̂‖² / (E‖x‖² − ‖E x‖²) (``fvu_saelab`` = 1 − it);
- ``mse`` as SAEBench 0.6 writes it: per token ‖x−x̂‖² divided by the batch's token count,
  averaged over tokens; ``relative_reconstruction_bias`` per batch, averaged over batches;
- feature density counts codes > 0 (SAEBench), the lab's dead/dense fractions count ≠ 0.

Deviations: SAEBench splices the SAE on every position and masks BOS from the averages;
the lab never splices BOS (SAEs are trained without it), so CE/KL are over the lab's
scored positions. SAEBench takes the variance metrics on one batch and CE/KL on ten;
here both come from every evaluated batch. ``consistent_activation_heuristic`` of a latent
that never fires is null (SAEBench writes NaN, which JSON lacks). The feature-density
histogram (the lab's log10 bins) goes to ``eval_result_unstructured`` because SAEBench's
metrics must be flat numbers.
"""

from __future__ import annotations

import torch

from evals.core.metrics import DEFINITIONS as LAB
from evals.saebench.output import document

EVAL_TYPE_ID = "core"
DEFINITIONS = {
    "kl_div_score": "(KL_zero - KL_sae) / KL_zero, KL(p_clean || p) over scored positions (SAEBench; = kl_score_zero)",
    "ce_loss_score": "(CE_zero - CE_sae) / (CE_zero - CE_clean) (SAEBench; = ce_loss_recovered_zero)",
    "explained_variance": "SAEBench 0.6: 1 - mean_b E||x - x_hat||^2 / (mean_b E||x||^2 - (mean_b mean_d E[x_d^2])^2), "
    "b over batches (its total variance subtracts the squared mean of x^2, not ||E x||^2; SAELens #659)",
    "explained_variance_legacy": "SAEBench paper: mean over tokens of 1 - ||x - x_hat||^2 / ||x - mean_batch(x)||^2",
    "explained_variance_saelab": LAB["explained_variance"],
    "fvu_saelab": LAB["fvu"],
    "mse": "SAEBench 0.6: mean over tokens of ||x - x_hat||^2 / (tokens in the token's batch)",
    "cossim": "mean over tokens of cos(x, x_hat)",
    "l2_norm_in": "mean over tokens of ||x||",
    "l2_norm_out": "mean over tokens of ||x_hat||",
    "l2_ratio": "mean over tokens of ||x_hat|| / ||x|| (||x|| < 1e-4 counted as 1, SAEBench)",
    "relative_reconstruction_bias": "mean over batches of E||x_hat||^2 / E<x, x_hat> (SAEBench)",
    "l0": LAB["l0"],
    "l1": "mean over tokens of sum_i f_i (SAEBench sums signed codes)",
    "feature_density": "per latent: fraction of evaluated tokens with f_i > 0 (SAEBench)",
    "frac_alive": "fraction of latents with feature_density > 0",
    "freq_over_1_percent": "fraction of latents with feature_density > 0.01",
    "freq_over_10_percent": "fraction of latents with feature_density > 0.1",
    "normalized_freq_over_1_percent": "sum of densities above 0.01 / sum of all densities",
    "normalized_freq_over_10_percent": "sum of densities above 0.1 / sum of all densities",
    "average_max_encoder_cosine_sim": "mean over latents of the largest cosine of its encoder column with another's",
    "average_max_decoder_cosine_sim": "mean over latents of the largest cosine of its decoder row with another's",
    "dead_fraction_saelab": LAB["dead_fraction"],
    "dense_fraction_saelab": LAB["dense_fraction"],
    "feature_density_histogram": "latents per log10-density bin (the lab's bins), dead latents apart",
}


class CoreStats:
    """SAEBench's per-batch reconstruction statistics for one SAE (float64)."""

    def __init__(self, d_sae: int):
        self.d_sae = d_sae
        self.tokens = 0
        self.batches = 0
        self.sums = dict.fromkeys(("legacy", "mse", "cos", "norm_in", "norm_out", "ratio", "l0", "l1"), 0.0)
        self.batch_sums = dict.fromkeys(("sum_sq", "mean_sq_dim", "resid", "rrb"), 0.0)
        self.fired = torch.zeros(d_sae, dtype=torch.float64)
        self.fired_sequences = torch.zeros(d_sae, dtype=torch.float64)

    @torch.no_grad()
    def update(self, x: torch.Tensor, selection, x_hat: torch.Tensor, sequence: torch.Tensor | None = None) -> None:
        """Add one batch: rows ``x``, codes ``selection``, ``x_hat``, and each row's sequence index
        (for the consistent-activation heuristic; None: every row its own sequence)."""
        x, x_hat = x.double().cpu(), x_hat.double().cpu()
        n = x.shape[0]
        if n == 0:
            return
        resid = (x - x_hat).pow(2).sum(-1)
        centred = (x - x.mean(0)).pow(2).sum(-1)
        norm_in, norm_out = x.norm(dim=-1), x_hat.norm(dim=-1)
        safe_in = torch.where(norm_in.abs() < 1e-4, torch.ones_like(norm_in), norm_in)
        cos = (x / norm_in[:, None] * (x_hat / norm_out[:, None])).sum(-1)
        s = self.sums
        s["legacy"] += float((1 - resid / centred).sum())
        s["mse"] += float((resid / n).sum())
        s["cos"] += float(torch.nan_to_num(cos).sum())
        s["norm_in"] += float(norm_in.sum())
        s["norm_out"] += float(norm_out.sum())
        s["ratio"] += float((norm_out / safe_in).sum())
        values = selection.values.double().cpu()
        s["l0"] += float((values != 0).sum())
        s["l1"] += float(values.sum())
        b = self.batch_sums
        b["sum_sq"] += float(x.pow(2).sum(-1).mean())
        b["mean_sq_dim"] += float(x.pow(2).mean(0).mean())
        b["resid"] += float(resid.mean())
        b["rrb"] += float(norm_out.pow(2).mean() / (x * x_hat).sum(-1).mean())
        positive = selection.values > 0
        latents = selection.latents[positive].cpu()
        self.fired += torch.bincount(latents, minlength=self.d_sae).double()
        rows = selection.rows[positive].cpu()
        seq = sequence.cpu()[rows] if sequence is not None else rows + self.tokens
        pairs = torch.unique(seq.long() * self.d_sae + latents.long())  # (sequence, latent) pairs that fire
        self.fired_sequences += torch.bincount(pairs % self.d_sae, minlength=self.d_sae).double()
        self.tokens += n
        self.batches += 1

    def result(self) -> dict:
        n, m = max(self.tokens, 1), max(self.batches, 1)
        s, b = self.sums, self.batch_sums
        total = b["sum_sq"] / m - (b["mean_sq_dim"] / m) ** 2
        return {
            "explained_variance": 1 - (b["resid"] / m) / total,
            "explained_variance_legacy": s["legacy"] / n,
            "mse": s["mse"] / n,
            "cossim": s["cos"] / n,
            "l2_norm_in": s["norm_in"] / n,
            "l2_norm_out": s["norm_out"] / n,
            "l2_ratio": s["ratio"] / n,
            "relative_reconstruction_bias": b["rrb"] / m,
            "l0": s["l0"] / n,
            "l1": s["l1"] / n,
            "tokens": self.tokens,
        }

    def densities(self) -> torch.Tensor:
        return self.fired / max(self.tokens, 1)

    def consistent_activation(self) -> torch.Tensor:
        """SAEBench's consistent_activation_heuristic: tokens a latent fires on / sequences it fires in
        (NaN for a latent that never fires, written as null)."""
        return self.fired / self.fired_sequences


def observers(entries: list) -> dict[str, CoreStats]:
    return {e.name: CoreStats(e.sae.cfg.d_sae) for e in entries}


def misc_metrics(density: torch.Tensor, max_enc: torch.Tensor, max_dec: torch.Tensor) -> dict:
    """SAEBench's ``calculate_misc_metrics`` on per-latent densities and max cosines."""
    total = float(density.sum())

    def share(threshold: float) -> float:
        return float(density[density > threshold].sum()) / total if total > 0 else 0.0

    return {
        "freq_over_1_percent": float((density > 0.01).double().mean()),
        "freq_over_10_percent": float((density > 0.1).double().mean()),
        "normalized_freq_over_1_percent": share(0.01),
        "normalized_freq_over_10_percent": share(0.1),
        "average_max_encoder_cosine_sim": float(max_enc.mean()),
        "average_max_decoder_cosine_sim": float(max_dec.mean()),
        "frac_alive": float((density > 0).double().mean()),
    }


def max_cosine(vectors: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per row of ``[n, d]``, the largest cosine with any other row."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=-1)
    out = torch.empty(unit.shape[0], dtype=torch.float64)
    for lo in range(0, unit.shape[0], chunk):
        sims = unit[lo : lo + chunk] @ unit.T
        idx = torch.arange(lo, min(lo + chunk, unit.shape[0]))
        sims[idx - lo, idx] = float("-inf")
        out[lo : lo + chunk] = sims.max(-1).values
    return out


@torch.no_grad()
def weight_stats(sae) -> dict[str, torch.Tensor]:
    """Per-latent weight statistics of SAEBench's core details. A Gated SAE has no ``b_enc``: its encoder bias is
    the gate's ``b_gate``, the bias that decides whether the latent fires, as ``b_enc`` does for the others."""
    bias = sae.b_enc if hasattr(sae, "b_enc") else sae.b_gate
    enc = sae.W_enc.detach().double().cpu().T  # [d_sae, d_in]
    dec = sae.W_dec.detach().double().cpu()
    if dec.shape[1] != enc.shape[1]:  # a transcoder: decoder rows live in the output space
        enc_dec = torch.full((enc.shape[0],), float("nan"), dtype=torch.float64)
    else:
        enc_dec = torch.nn.functional.cosine_similarity(enc, dec, dim=-1)
    return {
        "encoder_bias": bias.detach().double().cpu(),
        "encoder_norm": enc.norm(dim=-1),
        "encoder_decoder_cosine_sim": enc_dec,
        "max_decoder_cosine_sim": max_cosine(dec),
        "max_encoder_cosine_sim": max_cosine(enc),
    }


def core_document(entry, stats: CoreStats, suite) -> dict:
    """The SAEBench core document of one SAE (``entry.info`` holds the lab's metrics)."""
    lab = entry.info["metrics"]
    ours = stats.result()
    density = stats.densities()
    w = weight_stats(entry.sae)
    metrics: dict[str, dict] = {}
    if "ce_loss_clean" in lab:
        metrics["model_behavior_preservation"] = {
            "kl_div_score": lab["kl_score_zero"],
            "kl_div_with_ablation": lab["kl_div_zero_ablation"],
            "kl_div_with_sae": lab["kl_div"],
        }
        metrics["model_performance_preservation"] = {
            "ce_loss_score": lab["ce_loss_recovered_zero"],
            "ce_loss_with_ablation": lab["ce_loss_zero_ablation"],
            "ce_loss_with_sae": lab["ce_loss_with_sae"],
            "ce_loss_without_sae": lab["ce_loss_clean"],
        }
    metrics["reconstruction_quality"] = {
        "explained_variance": ours["explained_variance"],
        "explained_variance_legacy": ours["explained_variance_legacy"],
        "explained_variance_saelab": lab["explained_variance"],
        "fvu_saelab": lab["fvu"],
        "mse": ours["mse"],
        "cossim": ours["cossim"],
    }
    metrics["shrinkage"] = {
        k: ours[k] for k in ("l2_norm_in", "l2_norm_out", "l2_ratio", "relative_reconstruction_bias")
    }
    metrics["sparsity"] = {"l0": ours["l0"], "l1": ours["l1"]}
    metrics["token_stats"] = {
        "total_tokens_eval_reconstruction": int(lab.get("scored_positions", ours["tokens"])),
        "total_tokens_eval_sparsity_variance": ours["tokens"],
    }
    metrics["misc_metrics"] = {
        **misc_metrics(density, w["max_encoder_cosine_sim"], w["max_decoder_cosine_sim"]),
        "dead_fraction_saelab": lab["dead_fraction"],
        "dense_fraction_saelab": lab["dense_fraction"],
    }
    cah = stats.consistent_activation()
    details = [
        {
            "index": i,
            "feature_density": round(float(density[i]), 8),
            "consistent_activation_heuristic": float(cah[i]),
            **{k: round(float(v[i]), 6) for k, v in w.items()},
        }
        for i in range(density.numel())
    ]
    config = {
        "model_name": entry.info["model"],
        "dataset": f"{suite.data.source.kind} (held-out seed {suite.data.seed})",
        "text_source": suite.data.source.model_dump(),
        "seed": suite.data.seed,
        "n_tokens": suite.data.n_tokens,
        "context_size": entry.info.get("_data", {}).get("context_size"),
        "compute_kl": "ce_loss_clean" in lab,
        "compute_ce_loss": "ce_loss_clean" in lab,
        "exclude_special_tokens_from_reconstruction": True,
        "ablation": "zero",
    }
    unstructured = {"feature_density_histogram": entry.info.get("density_histogram")}
    return document(EVAL_TYPE_ID, config, metrics, details, entry.info, unstructured)


def run(group, _settings) -> list[tuple[dict, dict]]:
    stats = group.observed["core"]
    return [(e.info, core_document(e, stats[e.name], group.suite)) for e in group.entries]
