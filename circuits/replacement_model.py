"""The local replacement model of one prompt, and the direct-effect adjacency it defines.

As circuit-tracer (Ameisen et al. 2025): every MLP is replaced by its transcoder, the
attention patterns and every LayerNorm's scale are frozen at their values on the prompt,
and the transcoder's miss at each (layer, position) is an error node, a constant vector
(true MLP output − transcoder output). What remains between the sources and the targets
is linear: the residual stream, attention's OV circuit under the frozen pattern, the
centring and frozen scaling of LayerNorm, a skip transcoder's skip path, the unembedding.

**Sources** (columns of ``A``): active transcoder features (the decoder row times the
activation), error vectors, token embeddings, and one explicit **constant node** holding
everything that does not depend on the prompt's nodes: every bias (LayerNorm, attention
V/O, transcoder encoder and decoder, unembedding), the positional embeddings, and the
MLP outputs at the BOS position (the BOS row of every layer is the same on every prompt:
causal attention, first token fixed). Features and errors at BOS are not nodes (as
circuit-tracer, which zeroes them): transcoders are trained without BOS rows.
**Targets** (rows): each active feature's *pre-activation* (its encoder row read at its
layer's MLP input), and the target logits.

The frozen model is written out explicitly from the weights so that it is *homogeneous*
in a coefficient per source: scaling every source (constant node included) by ``c``
scales every target by ``c``. Hence ``A = J`` (the Jacobian at ``c = 1``, computed exactly
by pushing the identity through the linear map in batches), and every target equals the
sum of its row of ``A``: the edges recompute each pre-activation and each logit from the
node activations, with nothing left over. At ``c = 1`` the frozen model reproduces the
true model's activations and logits exactly (errors included), which the tests check
against the bridge.

**Logit targets** follow circuit-tracer: the most probable next tokens at the last
position until their cumulative probability reaches ``desired_logit_prob`` (at most
``max_n_logits``), weighted by their probabilities; each target is the *demeaned* logit
``logit_v − mean_v' logit_v'`` (circuit-tracer injects ``W_U[:,v] − mean W_U`` at the final
LayerNorm's output), which is what the softmax sees.

**Frozen attention hides query/key effects.** With patterns frozen, a feature that
changes *where* a head attends (through its query or key) has no edge: only what heads
move (OV) is attributed. Name mover and induction heads in this organism select by QK, so
the graph shows the value paths of those circuits and misses how positions are chosen.

Supports GPT-2-style models (the organism): learned positional embeddings, LayerNorm,
sequential attention then MLP. Another architecture is one line, not a wrong graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sae.errors import SaelabError


def _raw(module):
    """The Hugging Face module under a TransformerBridge wrapper."""
    while hasattr(module, "_original_component"):
        module = module._original_component
    return module


@dataclass(frozen=True)
class FrozenWeights:
    """What the frozen linear model needs of a GPT-2-style model."""

    W_E: torch.Tensor  # [vocab, d]
    W_pos: torch.Tensor  # [n_ctx, d]
    ln1: list[tuple[torch.Tensor, torch.Tensor]]  # (w, b) per layer
    W_V: list[torch.Tensor]  # [d, d] per layer (heads concatenated)
    b_V: list[torch.Tensor]
    W_O: list[torch.Tensor]  # [d, d]
    b_O: list[torch.Tensor]
    ln2: list[tuple[torch.Tensor, torch.Tensor]]
    ln_final: tuple[torch.Tensor, torch.Tensor]
    W_U: torch.Tensor  # [d, vocab]
    b_U: torch.Tensor  # [vocab]
    n_heads: int

    @property
    def n_layers(self) -> int:
        return len(self.W_V)


def frozen_weights(model) -> FrozenWeights:
    """The weights of a GPT-2-style bridge (unprocessed: LayerNorm gains and biases apart)."""
    hf = getattr(model, "original_model", None)
    cfg = getattr(hf, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "gpt2":
        kind = getattr(cfg, "model_type", type(hf).__name__)
        raise SaelabError(f"attribution graphs support GPT-2-style models (the organism), not {kind}")
    if getattr(cfg, "scale_attn_by_inverse_layer_idx", False) or getattr(cfg, "add_cross_attention", False):
        raise SaelabError("attribution graphs support plain GPT-2 attention only")
    tr = _raw(hf.transformer)
    d = cfg.n_embd
    ln1, W_V, b_V, W_O, b_O, ln2 = [], [], [], [], [], []
    for block in tr.h:
        block = _raw(block)
        attn = _raw(block.attn)
        c_attn, c_proj = _raw(attn.c_attn), _raw(attn.c_proj)  # Conv1D: y = x W + b, W [in, out]
        ln1.append((_raw(block.ln_1).weight, _raw(block.ln_1).bias))
        W_V.append(c_attn.weight[:, 2 * d : 3 * d])
        b_V.append(c_attn.bias[2 * d : 3 * d])
        W_O.append(c_proj.weight)
        b_O.append(c_proj.bias)
        ln2.append((_raw(block.ln_2).weight, _raw(block.ln_2).bias))
    head = _raw(hf.lm_head)
    w_u = head.weight
    b_U = head.bias if getattr(head, "bias", None) is not None else w_u.new_zeros(w_u.shape[0])
    lnf = _raw(tr.ln_f)
    return FrozenWeights(
        W_E=_raw(tr.wte).weight,
        W_pos=_raw(tr.wpe).weight,
        ln1=ln1,
        W_V=W_V,
        b_V=b_V,
        W_O=W_O,
        b_O=b_O,
        ln2=ln2,
        ln_final=(lnf.weight, lnf.bias),
        W_U=head.weight.T,
        b_U=b_U,
        n_heads=cfg.n_head,
    )


@dataclass(frozen=True)
class PromptRun:
    """The true model's run on one prompt: what the replacement model freezes or reads."""

    tokens: torch.Tensor  # [n] (BOS first)
    ln1_scale: list[torch.Tensor]  # [n] per layer
    pattern: list[torch.Tensor]  # [heads, n, n] per layer
    ln2_scale: list[torch.Tensor]
    ln_final_scale: torch.Tensor  # [n]
    mlp_in: list[torch.Tensor]  # [n, d] per layer
    mlp_out: list[torch.Tensor]
    logits: torch.Tensor  # [vocab] at the last position


def run_prompt(model, tokens: torch.Tensor) -> PromptRun:
    """Cache the frozen quantities with one forward pass of the bridge."""
    n_layers = model.cfg.n_layers
    names = ["ln_final.hook_scale"]
    for layer in range(n_layers):
        b = f"blocks.{layer}"
        names += [f"{b}.ln1.hook_scale", f"{b}.attn.hook_pattern", f"{b}.ln2.hook_scale"]
        names += [f"{b}.mlp.hook_in", f"{b}.hook_mlp_out"]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens[None], names_filter=lambda name: name in names)

    def get(name):
        return cache[name][0].detach().float()

    return PromptRun(
        tokens=tokens,
        ln1_scale=[get(f"blocks.{layer}.ln1.hook_scale").reshape(-1) for layer in range(n_layers)],
        pattern=[get(f"blocks.{layer}.attn.hook_pattern") for layer in range(n_layers)],
        ln2_scale=[get(f"blocks.{layer}.ln2.hook_scale").reshape(-1) for layer in range(n_layers)],
        ln_final_scale=get("ln_final.hook_scale").reshape(-1),
        mlp_in=[get(f"blocks.{layer}.mlp.hook_in") for layer in range(n_layers)],
        mlp_out=[get(f"blocks.{layer}.hook_mlp_out") for layer in range(n_layers)],
        logits=logits[0, -1].detach().float(),
    )


@dataclass(frozen=True)
class ActiveFeatures:
    """The feature nodes: ``(layer, pos, feature)`` rows sorted so, with their activations."""

    index: torch.Tensor  # [n_features, 3] long
    activation: torch.Tensor  # [n_features]


@dataclass
class ReplacementModel:
    """The frozen linear model of one prompt with its sources laid out as graph nodes."""

    weights: FrozenWeights
    run: PromptRun
    transcoders: list  # one per layer: a SparseAutoencoder with hook_out (saelab's families)
    features: ActiveFeatures
    errors: torch.Tensor  # [n_layers, n, d] (zero at BOS)
    target_tokens: torch.Tensor  # [n_logits] vocabulary ids
    target_probs: torch.Tensor  # [n_logits]

    @property
    def n_pos(self) -> int:
        return int(self.run.tokens.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.index.shape[0])

    @property
    def n_sources(self) -> int:
        """Features, errors (layer-major), tokens, the constant node."""
        return self.n_features + self.weights.n_layers * self.n_pos + self.n_pos + 1

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """Targets ``[B, n_features + n_logits]`` for source coefficients ``c [B, n_sources]``:
        feature pre-activations (in ``features`` order), then demeaned target logits. Linear
        and homogeneous in ``c``; ``c = 1`` is the prompt itself."""
        W, run, n = self.weights, self.run, self.n_pos
        nF, L = self.n_features, W.n_layers
        c_feat = c[:, :nF]
        c_err = c[:, nF : nF + L * n].reshape(-1, L, n)
        c_tok = c[:, nF + L * n : nF + L * n + n]
        c_b = c[:, -1][:, None, None]  # [B, 1, 1]

        def ln(x, scale, wb):
            w, b = wb
            return (x - x.mean(-1, keepdim=True)) / scale[None, :, None] * w + c_b * b

        resid = c_tok[:, :, None] * W.W_E[run.tokens][None] + c_b * W.W_pos[:n][None]
        layer_of = self.features.index[:, 0]
        pre_out = torch.zeros(c.shape[0], nF, dtype=c.dtype, device=c.device)
        not_bos = torch.ones(n, 1, dtype=c.dtype, device=c.device)
        not_bos[0] = 0
        for layer in range(L):
            x = ln(resid, run.ln1_scale[layer], W.ln1[layer])
            v = (x @ W.W_V[layer] + c_b * W.b_V[layer]).unflatten(-1, (W.n_heads, -1))
            z = torch.einsum("hqk,bkhd->bqhd", run.pattern[layer], v).flatten(-2)
            resid = resid + z @ W.W_O[layer] + c_b * W.b_O[layer]
            x2 = ln(resid, run.ln2_scale[layer], W.ln2[layer])
            tc = self.transcoders[layer]
            W_enc, b_enc = tc.linear_encoder()
            rows = (layer_of == layer).nonzero().flatten()
            pos, feat = self.features.index[rows, 1], self.features.index[rows, 2]
            if len(rows):
                pre = torch.einsum("bpd,pd->bp", x2[:, pos], W_enc[:, feat].T) + c_b[:, 0] * b_enc[feat]
                pre_out[:, rows] = pre
            # the transcoder's output at positions ≥ 1: active features, decoder bias, skip
            # path, error; the true MLP output at BOS (part of the constant node)
            contrib = c_feat[:, rows, None] * (self.features.activation[rows, None] * tc.W_dec[feat])[None]
            mlp = torch.zeros_like(resid).index_add(1, pos, contrib)
            mlp = mlp + not_bos * (c_b * tc.b_dec + c_err[:, layer, :, None] * self.errors[layer])
            skip = tc.skip_output(x2)
            if skip is not None:
                mlp = mlp + not_bos * skip
            mlp[:, 0] = mlp[:, 0] + c_b[:, 0] * run.mlp_out[layer][0]
            resid = resid + mlp
        final = ln(resid[:, -1:], run.ln_final_scale[-1:], W.ln_final)[:, 0]
        logits = final @ W.W_U + c_b[:, 0] * W.b_U
        demeaned = logits[:, self.target_tokens] - logits.mean(-1, keepdim=True)
        return torch.cat([pre_out, demeaned], dim=1)

    def targets_at_prompt(self) -> torch.Tensor:
        """The targets at ``c = 1`` (the sum of each row of the adjacency)."""
        ones = torch.ones(1, self.n_sources, dtype=self.errors.dtype, device=self.errors.device)
        with torch.no_grad():
            return self.forward(ones)[0]

    def adjacency(self, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        """``A [N, N]``, ``A[target, source]`` the direct effect, nodes ordered
        ``[features][errors][tokens, constant][logits]``: the Jacobian of the targets in the
        source coefficients (exact: the map is linear), one batch of unit vectors at a time."""
        from sae.progress import progress_bar

        nS, nF, nL = self.n_sources, self.n_features, len(self.target_tokens)
        N = nS + nL
        A = torch.zeros(N, N, dtype=self.errors.dtype, device=self.errors.device)
        eye = torch.eye(nS, dtype=self.errors.dtype, device=self.errors.device)
        starts = range(0, nS, batch_size)
        with torch.no_grad():
            for start in progress_bar(starts, desc="edges", disable=not progress, unit="batch"):
                cols = self.forward(eye[start : start + batch_size]).T  # [targets, batch]
                stop = start + cols.shape[1]
                A[:nF, start:stop] = cols[:nF]
                A[nS:, start:stop] = cols[nF:]
        return A


def salient_logits(logits: torch.Tensor, max_n_logits: int = 10, desired_logit_prob: float = 0.95):
    """circuit-tracer's target logits: the top tokens until their cumulative probability
    first reaches ``desired_logit_prob``, at most ``max_n_logits``; ``(ids, probabilities)``."""
    probs = torch.softmax(logits.double(), dim=-1).to(logits.dtype)
    top_p, top_idx = torch.topk(probs, min(max_n_logits, probs.shape[-1]))
    tau = torch.tensor(desired_logit_prob, dtype=top_p.dtype, device=top_p.device)
    cutoff = int(torch.searchsorted(torch.cumsum(top_p, 0), tau)) + 1
    return top_idx[:cutoff], top_p[:cutoff]


def build_replacement(
    model, transcoders: list, tokens: torch.Tensor, max_n_logits: int = 10, desired_logit_prob: float = 0.95
) -> ReplacementModel:
    """The replacement model of ``tokens`` (BOS first) with ``transcoders[l]`` at MLP ``l``."""
    weights = frozen_weights(model)
    if len(transcoders) != weights.n_layers:
        raise SaelabError(f"need one transcoder per MLP layer ({weights.n_layers}), got {len(transcoders)}")
    run = run_prompt(model, tokens)
    index, acts, errors = [], [], []
    with torch.no_grad():
        for layer, tc in enumerate(transcoders):
            x, y = run.mlp_in[layer], run.mlp_out[layer]
            codes = tc.encode(x)
            recon = tc.decode(codes)
            skip = tc.skip_output(x)
            if skip is not None:
                recon = recon + skip
            err = y - recon
            err[0] = 0  # BOS: no features, no error; its true MLP output is in the constant node
            codes[0] = 0
            errors.append(err)
            pos, feat = codes.nonzero(as_tuple=True)
            index.append(torch.stack([torch.full_like(pos, layer), pos, feat], dim=1))
            acts.append(codes[pos, feat])
    index = torch.cat(index)
    acts = torch.cat(acts)
    order = sorted(range(len(index)), key=lambda i: tuple(index[i].tolist()))
    ids, probs = salient_logits(run.logits, max_n_logits, desired_logit_prob)
    return ReplacementModel(
        weights=weights,
        run=run,
        transcoders=transcoders,
        features=ActiveFeatures(index[order], acts[order]),
        errors=torch.stack(errors),
        target_tokens=ids,
        target_probs=probs,
    )
