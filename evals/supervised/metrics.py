"""The formulas of Makelov, Lange & Nanda (2024), as pure functions on tensors.

- feature weight (§4.3): with â − b = Σ_j f_j d_j, weight(i) = (f_i d_i)ᵀ(â − b) / ‖â − b‖²;
  the weights of a row sum to one, and the *edit magnitude* is the summed weight of the
  features an edit removes;
- necessity score: 1 − |LD_meanabl − LD_int| / |LD_meanabl − LD_clean|;
- SAE edit (§4.3): greedily choose features i, each moving its coefficient from the
  source code to the target code, i.e. adding (f_t,i − f_s,i) d_i, so that a removal
  (R ⊂ active(a_s)) and an addition (A ⊂ active(a_t)) of the same latent count once in
  |R ∪ A| ≤ k; each step takes the feature that most reduces ‖a_s + Σ − a_t‖₂. A
  step that would not reduce it is not taken (the budget is "at most k"), a choice the
  paper's code does not make (it always takes k steps, possibly a useless one).
"""

from __future__ import annotations

import torch


def feature_weights(codes: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` weight of each feature in its row's reconstruction (0 for an empty row)."""
    recon = codes @ decoder  # â − b
    norm2 = recon.pow(2).sum(-1, keepdim=True)
    weights = codes * (recon @ decoder.T) / norm2.clamp_min(1e-12)
    return torch.where(norm2 > 0, weights, torch.zeros_like(weights))


def edit_magnitude(codes: torch.Tensor, decoder: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """``[n]`` summed weight of the ``removed`` features (``[n, m]`` bool) in each row."""
    return (feature_weights(codes, decoder) * removed.float()).sum(-1)


def necessity_score(ld_mean_ablation: float, ld_intervened: float, ld_clean: float) -> float:
    gap = abs(ld_mean_ablation - ld_clean)
    if gap == 0:
        return float("nan")
    return 1.0 - abs(ld_mean_ablation - ld_intervened) / gap


@torch.no_grad()
def greedy_edit(
    a_s: torch.Tensor, a_t: torch.Tensor, f_s: torch.Tensor, f_t: torch.Tensor, decoder: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited activations ``[n, d]`` and the ``[n, m]`` mask of the features changed.

    ‖r + c_i d_i‖² = ‖r‖² + 2 c_i (r · d_i) + c_i² ‖d_i‖² with r = current − target and
    c_i = f_t,i − f_s,i, so a step costs one ``[n, d] × [d, m]`` product.
    """
    n, m = f_s.shape
    coef = f_t - f_s
    dnorm2 = decoder.pow(2).sum(-1)  # [m]
    available = (f_s > 0) | (f_t > 0)
    chosen = torch.zeros(n, m, dtype=torch.bool)
    shift = torch.zeros_like(a_s)
    rows = torch.arange(n)
    for _ in range(k):
        r = a_s + shift - a_t
        base = r.pow(2).sum(-1)  # [n]
        gain = 2 * coef * (r @ decoder.T) + coef.pow(2) * dnorm2  # change of the squared distance
        gain = gain.masked_fill(~available, float("inf"))
        best_gain, best = gain.min(-1)
        take = best_gain < -1e-9 * base.clamp_min(1e-12)
        if not take.any():
            break
        r_idx, f_idx = rows[take], best[take]
        shift[r_idx] += coef[r_idx, f_idx, None] * decoder[f_idx]
        available[r_idx, f_idx] = False
        chosen[r_idx, f_idx] = True
    return a_s + shift, chosen


def f1_from_counts(intersection: torch.Tensor, active: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """F1 = 2PR/(P+R) = 2|A∩P| / (|A| + |P|), with P = |A∩P|/|A| and R = |A∩P|/|P|."""
    return 2 * intersection / (active + support).clamp_min(1e-12)


def f1_scores(active: torch.Tensor, predicates: torch.Tensor) -> torch.Tensor:
    """``[m, p]`` F1 of each feature's active set (``[n, m]`` bool) against each predicate (``[n, p]`` bool)."""
    a, p = active.float(), predicates.float()
    return f1_from_counts(a.T @ p, a.sum(0)[:, None], p.sum(0)[None, :])


def name_set_f1(
    active: torch.Tensor, values: torch.Tensor, n_values: int, max_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy name sets (the paper's groups): per feature, the union of its top-j values by
    single-value F1, j = 1..max_size. ``values`` is ``[n]`` (one value per prompt, so the
    unions' counts add up). Returns ``[m, J]`` F1 of each union and ``[m, J]`` the value
    added at each step."""
    a = active.float()
    onehot = torch.nn.functional.one_hot(values, n_values).float()  # [n, V]
    inter, support = a.T @ onehot, onehot.sum(0)  # [m, V], [V]
    single = f1_from_counts(inter, a.sum(0)[:, None], support[None, :])
    j = min(max_size, n_values)
    order = single.topk(j, dim=-1).indices  # [m, J]
    cum_inter = inter.gather(1, order).cumsum(-1)
    cum_support = support[order].cumsum(-1)
    return f1_from_counts(cum_inter, a.sum(0)[:, None], cum_support), order
