"""Node and edge attribution of sparse feature circuits (Marks et al. 2024; methods-2 §E).

A model is seen through its *sites*: the activations an SAE is spliced at, in forward
order. A ``Runner`` runs tokens with a function that may replace each site's activation
(``site_fn(i, act) -> act``); the bridge runner puts it on the site's hook, and a toy in a
test can be any Python function that calls it. Splicing an SAE with its error term at a
site means replacing x by x̂(f) + e with f = encode(x) and e = x − x̂(f): the value is x
(up to float rounding) and ∂/∂x is the identity, so a site left *unpatched* in a pass that
takes gradients is passed through unchanged (same value, same gradient) rather than
re-encoded.

Nodes are (site, latent) and one error node per site, each summed over positions and
averaged over prompts (the paper's ``aggregation="sum"``).

- Node effect, attribution patching: ÎE = ∇_a m|_clean · (a_corrupt − a_clean), for a the
  codes f and the error e of one site (the error's dot product is its one scalar).
- Node effect, integrated gradients (the paper's ``_pe_ig``): the gradient is averaged over
  the left Riemann sum α = j/N, j = 0..N−1, with that site's codes and error interpolated
  together (a = a_clean + αΔa) and every other site computed from its input; N = 1 is
  attribution patching.
- Edge u → d (the paper's ``jvp``): ÎE = Σ ∇_d m · (∂d/∂u) · Δu, with ∇_d m the IG-mean
  gradient of d, ∂d/∂u at the clean input through the direct route only: in the pass for
  downstream site D every other site is a constant leaf, so a gradient reaches only the
  sites D reads directly (attn_L ← resid_{L−1}; mlp_L ← attn_L, resid_{L−1}; resid_L ←
  resid_{L−1}, attn_L, mlp_L), as the paper's stop-gradients do. Positions are summed on
  both sides, prompts averaged. Edges are computed only into downstream nodes above the
  node threshold, from upstream nodes above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

SiteFn = Callable[[int, torch.Tensor], torch.Tensor]
Runner = Callable[[torch.Tensor, SiteFn | None], torch.Tensor]
Metric = Callable[[torch.Tensor, object], torch.Tensor]
ERROR = -1  # the error node's index within a site


@dataclass(frozen=True)
class Site:
    """One place an SAE is spliced: ``kind`` attn | mlp | resid, its layer and its hook."""

    kind: str
    layer: int
    hook: str

    @property
    def name(self) -> str:
        return f"{self.kind}{self.layer}"


SITE_HOOKS = {"attn": "hook_attn_out", "mlp": "hook_mlp_out", "resid": "hook_resid_post"}


def model_sites(n_layers: int) -> list[Site]:
    """Every layer's attention output, MLP output and residual stream after the block, in
    forward order (the paper's attn_l, mlp_l, resid_l)."""
    return [Site(k, layer, f"blocks.{layer}.{h}") for layer in range(n_layers) for k, h in SITE_HOOKS.items()]


def _on_site(site_fn: SiteFn, i: int, act: torch.Tensor, hook=None) -> torch.Tensor:
    return site_fn(i, act)


def bridge_runner(model, sites: Sequence[Site]) -> Runner:
    """Run a TransformerBridge with ``site_fn`` on each site's hook (none: the plain model)."""

    def run(tokens: torch.Tensor, site_fn: SiteFn | None = None) -> torch.Tensor:
        if site_fn is None:
            return model(tokens)
        hooks = [(s.hook, partial(_on_site, site_fn, i)) for i, s in enumerate(sites)]
        return model.run_with_hooks(tokens, fwd_hooks=hooks)

    return run


@dataclass
class SiteActs:
    """One site's activation x, codes f and error e = x − x̂(f) over a batch: ``[b, pos, ·]``."""

    x: torch.Tensor
    f: torch.Tensor
    e: torch.Tensor


def split(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, error) of ``x``: the two parts a spliced SAE adds back up to x."""
    f = sae.encode(x)
    return f, x - sae.decode(f)


@torch.no_grad()
def site_activations(run: Runner, saes: Sequence, tokens: torch.Tensor) -> list[SiteActs]:
    """Every site's x, f, e on ``tokens`` (the plain model's activations: nothing is patched)."""
    out: dict[int, SiteActs] = {}

    def record(i: int, act: torch.Tensor) -> torch.Tensor:
        f, e = split(saes[i], act)
        out[i] = SiteActs(act.detach(), f, e)
        return act

    run(tokens, record)
    return [out[i] for i in range(len(saes))]


def spliced(saes: Sequence, edit: Callable | None = None) -> SiteFn:
    """The site function of every SAE spliced with its error term: x̂(f) + e, with
    ``edit(i, f, e) -> (f, e)`` applied first when given (ablation)."""

    def fn(i: int, act: torch.Tensor) -> torch.Tensor:
        f, e = split(saes[i], act)
        if edit is not None:
            f, e = edit(i, f, e)
        return saes[i].decode(f) + e

    return fn


def code_grad(sae, grad_x: torch.Tensor) -> torch.Tensor:
    """∂m/∂f from ∂m/∂x̂ through the decoder (a vector-Jacobian product; the decoder is affine)."""
    with torch.enable_grad():
        f0 = torch.zeros(*grad_x.shape[:-1], sae.W_dec.shape[0], dtype=grad_x.dtype, device=grad_x.device)
        f0.requires_grad_(True)
        (g,) = torch.autograd.grad(sae.decode(f0), f0, grad_x)
    return g


@dataclass
class NodeEffects:
    """Per site: per-prompt, per-position effects of each latent ``[b, pos, d_sae]`` and of
    the error ``[b, pos]``, and the (IG-mean) gradients they came from."""

    features: list[torch.Tensor]
    errors: list[torch.Tensor]
    grad_f: list[torch.Tensor]
    grad_e: list[torch.Tensor]

    def feature_totals(self) -> list[torch.Tensor]:
        """``[d_sae]`` per site: summed over positions, averaged over prompts."""
        return [f.sum(1).mean(0) for f in self.features]

    def error_totals(self) -> list[float]:
        return [float(e.sum(1).mean(0)) for e in self.errors]


def node_attribution(
    run: Runner,
    saes: Sequence,
    tokens: torch.Tensor,
    metric: Callable[[torch.Tensor], torch.Tensor],
    clean: Sequence[SiteActs],
    corrupt: Sequence[SiteActs],
    steps: int = 10,
    progress=None,
) -> NodeEffects:
    """Node effects of patching clean → corrupt: integrated gradients over ``steps`` (1:
    attribution patching). ``metric(logits)`` gives one value per prompt."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    feats, errs, gfs, ges = [], [], [], []
    for i, sae in enumerate(saes):
        df, de = corrupt[i].f - clean[i].f, corrupt[i].e - clean[i].e
        gf, ge = torch.zeros_like(df), torch.zeros_like(de)
        for j in range(steps):
            alpha = j / steps
            f = (clean[i].f + alpha * df).requires_grad_(True)
            e = (clean[i].e + alpha * de).requires_grad_(True)

            def patch(k, act, i=i, f=f, e=e, sae=sae):
                return sae.decode(f) + e if k == i else act

            with torch.enable_grad():
                m = metric(run(tokens, patch)).sum()  # prompts are independent: per-prompt gradients
                g_f, g_e = torch.autograd.grad(m, (f, e))
            gf += g_f / steps
            ge += g_e / steps
            if progress is not None:
                progress.update(1)
        feats.append(gf * df)
        errs.append((ge * de).sum(-1))
        gfs.append(gf)
        ges.append(ge)
    return NodeEffects(feats, errs, gfs, ges)


def edge_attribution(
    run: Runner,
    saes: Sequence,
    tokens: torch.Tensor,
    clean: Sequence[SiteActs],
    corrupt: Sequence[SiteActs],
    effects: NodeEffects,
    kept: Sequence[Sequence[int]],
    progress=None,
) -> dict[tuple[tuple[int, int], tuple[int, int]], float]:
    """Edges ``((site_u, idx_u), (site_d, idx_d)) -> ÎE`` between kept nodes (``kept[i]``:
    the latent indices of site i in the circuit, ``ERROR`` for its error node)."""
    edges: dict = {}
    for d, sae_d in enumerate(saes):
        if not kept[d] or d == 0:
            continue
        leaves = [clean[k].x.clone().requires_grad_(True) for k in range(d)]
        captured: dict[str, torch.Tensor] = {}

        def fn(k, act, d=d, leaves=leaves, captured=captured):
            if k < d:
                return leaves[k]
            if k == d:
                captured["x"] = act
            return act

        with torch.enable_grad():
            run(tokens, fn)
            f_d, e_d = split(sae_d, captured["x"])
            for idx in kept[d]:
                if idx == ERROR:
                    target = (effects.grad_e[d] * e_d).sum()
                else:
                    target = (effects.grad_f[d][..., idx] * f_d[..., idx]).sum()
                if not target.requires_grad:
                    continue  # a latent that never fires: no gradient reaches it
                grads = torch.autograd.grad(target, leaves, retain_graph=True, allow_unused=True)
                for u, h in enumerate(grads):
                    if h is None or not kept[u] or not bool(h.any()):
                        continue
                    up_f = (code_grad(saes[u], h) * (corrupt[u].f - clean[u].f)).sum(1).mean(0)
                    up_e = float((h * (corrupt[u].e - clean[u].e)).sum((1, 2)).mean(0))
                    for iu in kept[u]:
                        edges[((u, iu), (d, idx))] = up_e if iu == ERROR else float(up_f[iu])
                if progress is not None:
                    progress.update(1)
    return edges


def kept_nodes(effects: NodeEffects, threshold: float) -> list[list[int]]:
    """Per site, the nodes with |effect| > ``threshold`` (latents, then ``ERROR``)."""
    out = []
    for tot, err in zip(effects.feature_totals(), effects.error_totals(), strict=True):
        nodes = torch.nonzero(tot.abs() > threshold).flatten().tolist()
        if abs(err) > threshold:
            nodes.append(ERROR)
        out.append(nodes)
    return out
