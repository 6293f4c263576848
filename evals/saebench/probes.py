"""Logistic probes in torch (sklearn is no dependency of the lab) and SAEBench's latent selection.

``fit_logistic`` minimises sklearn's ``LogisticRegression(penalty="l2", C)`` objective,
0.5‖w‖² + C Σ log(1 + exp(−y_i (x_i·w + b))) with an unpenalised intercept, by L-BFGS in
float64 (SAEBench fits sklearn's lbfgs solver with C = 1). ``fit_l1_ranking`` is the
L1-regularised probe SAEBench's absorption uses only to rank latents (mean BCE +
λ‖w‖₁, here by proximal gradient descent: deterministic, no minibatches).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Probe:
    w: torch.Tensor  # [d] float64
    b: float

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.w + self.b

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scores(x) > 0).long()


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, C: float = 1.0, max_iter: int = 200, balanced: bool = False
) -> Probe:
    """sklearn's L2 logistic regression (labels 0/1); ``balanced``: sklearn's ``class_weight="balanced"``,
    each row weighted n / (2 n_its_class)."""
    x, t = x.double(), y.double() * 2 - 1
    weight = torch.ones_like(t)
    if balanced:
        n_pos = float((y == 1).sum())
        counts = torch.where(y == 1, n_pos, len(y) - n_pos).double()
        weight = len(y) / (2 * counts)
    w = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w], lr=1, max_iter=max_iter, tolerance_grad=1e-8, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        margin = t * (x @ w[:-1] + w[-1])
        loss = 0.5 * w[:-1].pow(2).sum() + C * (weight * torch.nn.functional.softplus(-margin)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w = w.detach()
    return Probe(w[:-1].clone(), float(w[-1]))


def fit_multinomial(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1.0, max_iter: int = 200):
    """(W [d, classes], b [classes]) minimising the summed cross-entropy + 0.5·l2·‖W‖² (L-BFGS, float64);
    the multi-class form of ``probes.fit_logistic``."""
    x = x.double()
    params = torch.zeros(x.shape[1] + 1, classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [params], lr=1, max_iter=max_iter, tolerance_grad=1e-8, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        logits = x @ params[:-1] + params[-1]
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum") + 0.5 * l2 * params[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    params = params.detach()
    return params[:-1], params[-1]


def fit_l1_ranking(x: torch.Tensor, y: torch.Tensor, l1: float = 0.01, steps: int = 300) -> torch.Tensor:
    """Weights of mean BCE + l1·‖w‖₁ (ISTA, step 1/L from the data's spectral norm); used to rank inputs."""
    x, t = x.double(), y.double()
    n = x.shape[0]
    scale = x.abs().max().clamp_min(1e-12)
    xs = x / scale  # a scale-free step; weights are mapped back below
    lipschitz = float(torch.linalg.matrix_norm(xs, ord=2)) ** 2 / (4 * n) + 1e-12
    step = 1 / lipschitz
    w = torch.zeros(x.shape[1], dtype=torch.float64)
    b = torch.zeros((), dtype=torch.float64)
    for _ in range(steps):
        p = torch.sigmoid(xs @ w + b)
        grad_w, grad_b = xs.T @ (p - t) / n, (p - t).mean()
        w = w - step * grad_w
        w = torch.sign(w) * (w.abs() - step * l1).clamp_min(0)
        b = b - step * grad_b
    return w / scale


def accuracy(probe: Probe, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((probe.predict(x) == y.long()).double().mean())


def f1(pred: torch.Tensor, y: torch.Tensor) -> float:
    tp = float(((pred == 1) & (y == 1)).sum())
    fp = float(((pred == 1) & (y == 0)).sum())
    fn = float(((pred == 0) & (y == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def top_k_mean_diff(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """SAEBench's ``get_top_k_mean_diff_mask``: the k inputs with the largest |mean_pos − mean_neg| (indices)."""
    diff = (x[y == 1].double().mean(0) - x[y == 0].double().mean(0)).abs()
    return torch.argsort(diff, descending=True, stable=True)[:k]
