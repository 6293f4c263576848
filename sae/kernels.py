"""Sparse training kernels for SAEs whose codes are (row, latent, value) selections.

A sparse rule (TopK, mutual choice, feature choice, the g-SAE score, AuxK's dead-latent
top-k) must *read* every pre-activation to choose, but only the chosen entries reach the
loss. Plain autograd still pays for a dense ``[batch, d_sae]`` gradient of
``pre = sae_in @ W_enc + b_enc`` and two dense GEMMs to push it back. Here the chosen
entries (nnz of them, sorted by row) are the only thing either backward pass touches:

- encoder (``sparse_encode``): ∂sae_in[r] = Σ_{(r,j)} g · W_enc[:, j] and
  ∂W_enc[:, j] = Σ_{(r,j)} g · sae_in[r], ∂b_enc[j] = Σ_{(r,j)} g;
- decoder (``sparse_decode``): x̂[r] = Σ_{(r,j)} v · W_dec[j]; ∂v = W_dec[j] · ∂x̂[r] and
  ∂W_dec[j] = Σ_{(r,j)} v · ∂x̂[r].

Each sum over a row's entries or over a latent's entries is one ``embedding_bag`` (a
segmented gather-and-add, parallel on CPU and GPU): the entries grouped by row come
sorted, and a ``Layout`` computed once per selection groups them by latent for the
encoder's and the decoder's weight gradients alike. Cost O(nnz · d_in) instead of
O(batch · d_sae · d_in). The dense path (``kernel: dense`` in an SAE config) keeps plain
autograd as the reference that tests compare against.

Threshold rules (JumpReLU, Gated) choose by comparison rather than by rank: they read their
entries raw (``sparse_encode(..., relu=False)``, their own functions follow) and, when too many
entries fire for per-entry kernels to pay (early in training), keep the forward GEMM and take
dense gradients through it (``dense_encode``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _starts(counts: torch.Tensor) -> torch.Tensor:
    """Offsets of consecutive segments of the given lengths (``embedding_bag`` offsets)."""
    out = torch.zeros_like(counts)
    out[1:] = counts.cumsum(0)[:-1]
    return out


def group_order(latents: torch.Tensor, d_sae: int) -> torch.Tensor:
    """The stable permutation grouping entries by latent (``latents.argsort(stable=True)``).

    On CPU, ATen's stable sort of a few ten thousand int64 keys is a comparison sort
    (~2.5 ms for 16k keys on one core, a tenth of a TopK training step); NumPy's stable sort
    of 16-bit keys is a radix sort, about 8x faster, and gives the identical permutation.
    Other devices (and d_sae > 2^16) keep torch's sort, which is fast on GPU.
    """
    if latents.device.type == "cpu" and d_sae <= 1 << 16 and latents.numel() > 0:
        import numpy as np

        keys = latents.numpy().astype(np.uint16)  # latents < d_sae ≤ 2^16: lossless
        return torch.from_numpy(np.argsort(keys, kind="stable")).to(latents.dtype)
    return latents.argsort(stable=True)


@dataclass(frozen=True)
class Layout:
    """Index plans for a selection's entries: by row (they are sorted that way) and by latent."""

    row_offsets: torch.Tensor  # [n_rows]: where each row's entries start
    latent_order: torch.Tensor  # [nnz]: a permutation grouping the entries by latent
    latent_offsets: torch.Tensor  # [d_sae]: where each latent's group starts in latent_order
    latent_rows: torch.Tensor  # [nnz]: rows[latent_order], each entry's row in latent order
    latent_ids: torch.Tensor  # [nnz]: latents[latent_order], each entry's latent in latent order

    @staticmethod
    def of(rows: torch.Tensor, latents: torch.Tensor, n_rows: int, d_sae: int) -> Layout:
        with torch.no_grad():
            row_offsets = _starts(torch.bincount(rows, minlength=n_rows))
            latent_order = group_order(latents, d_sae)
            latent_offsets = _starts(torch.bincount(latents, minlength=d_sae))
            latent_rows, latent_ids = rows[latent_order], latents[latent_order]
        return Layout(row_offsets, latent_order, latent_offsets, latent_rows, latent_ids)


class GradStash:
    """A block encode's share of the encoder gradient, left for the selection's sparse encode.

    When a training pass differentiates both a sparse selection (``sparse_encode``) and a
    column block (``block_encode``, AuxK), each would hand autograd a dense ``W_enc``
    gradient, which autograd then zero-fills, scatters into and adds: three passes over a
    ``[d_in, d_sae]`` tensor. Instead the block's backward leaves its ``[n, d_in]`` rows
    here and the selection's backward adds them into the one gradient it writes anyway.
    The block takes the selection's values as an input, so autograd always runs the
    block's backward first.

    The same goes for the decoder: a block decode (AuxK's ê) leaves its ``[n, d]`` rows of
    ∂W_dec in ``decoder_parts`` for the selection's sparse decode, whose backward writes the
    one ``W_dec`` gradient (instead of autograd zero-filling a second one and adding the
    two). ``decoder`` says where that decode stands: "none" (no sparse decode holds this
    stash: a block decode writes its own gradient), "open" (its backward is still to run
    and will add the parts) or "done" (it ran: a block decode writes its own gradient).
    """

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (columns, ∂W_encᵀ rows, ∂b_enc)
        self.decoder_parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (W_dec rows, their ∂W_dec)
        self.decoder = "none"

    def add_into(self, grad_w_t: torch.Tensor | None, grad_b: torch.Tensor | None) -> None:
        """Add (and forget) what was left: ``grad_w_t`` is ``[d_sae, d_in]``."""
        for columns, rows, bias in self.parts:
            if grad_w_t is not None:
                grad_w_t.index_add_(0, columns, rows)
            if grad_b is not None:
                grad_b.index_add_(0, columns, bias)
        self.parts.clear()

    def add_decoder_into(self, grad_w: torch.Tensor | None) -> None:
        """Add (and forget) the block decodes' ``W_dec`` rows; the decode's backward has now run."""
        for rows, grad in self.decoder_parts:
            if grad_w is not None:
                grad_w.index_add_(0, rows, grad)
        self.decoder_parts.clear()
        self.decoder = "done"


def _by_row(indices: torch.Tensor, table: torch.Tensor, weights: torch.Tensor, layout: Layout) -> torch.Tensor:
    """out[r] = Σ over row r's entries of weights · table[indices]."""
    return F.embedding_bag(indices, table, layout.row_offsets, mode="sum", per_sample_weights=weights)


def _by_latent(table: torch.Tensor, weights: torch.Tensor, layout: Layout) -> torch.Tensor:
    """out[j] = Σ over latent j's entries of weights · table[row] (the rows are the layout's)."""
    return F.embedding_bag(
        layout.latent_rows, table, layout.latent_offsets, mode="sum", per_sample_weights=weights[layout.latent_order]
    )


#: bytes of one column block of ``_by_latent_columns``: the block's ``[n, d_in]`` sums stay in a
#: core's L2 cache (2 MiB on the machines measured) while they are copied into their columns
_COLUMN_BLOCK_BYTES = 3 << 19


def _by_latent_columns(table: torch.Tensor, weights: torch.Tensor, layout: Layout) -> torch.Tensor:
    """``_by_latent(...).T`` as a contiguous ``[d_in, d_sae]`` tensor: W_enc's own layout.

    Autograd copies a gradient whose strides differ from its parameter's into the
    parameter's layout, a transposing copy of the whole ``[d_sae, d_in]`` sum that misses
    the cache on every row (17 ms a step on CPU at d_sae 16384, d_in 768, against 6 ms for
    the sums). On CPU the sums are made a block of latents at a time, each block copied into
    its columns while it is still in cache: 23 → 14 ms there, 14 → 9 ms at 8192, with the
    same values bit for bit. Elsewhere the plain transpose: a GPU copies fast, and the
    blocks' bounds would each cost a device sync.
    """
    if table.device.type != "cpu":
        return _by_latent(table, weights, layout).T.contiguous()
    d_sae, d_in = layout.latent_offsets.numel(), table.shape[1]
    block = max(1, _COLUMN_BLOCK_BYTES // (d_in * table.element_size()))
    weights = weights[layout.latent_order]
    bounds = torch.cat([layout.latent_offsets[::block], layout.latent_offsets.new_tensor([weights.numel()])]).tolist()
    out = table.new_empty(d_in, d_sae)
    for i, start in enumerate(range(0, d_sae, block)):
        a, b = bounds[i], bounds[i + 1]
        sums = F.embedding_bag(
            layout.latent_rows[a:b],
            table,
            layout.latent_offsets[start : start + block] - a,
            mode="sum",
            per_sample_weights=weights[a:b],
        )
        out[:, start : start + block].copy_(sums.T)
    return out


def _entry_dots(
    grad_out: torch.Tensor, W_dec: torch.Tensor, rows: torch.Tensor, latents: torch.Tensor, layout: Layout
) -> torch.Tensor:
    """W_dec[latent] · grad_out[row] for every entry, in the entries' (row) order.

    ATen's fused per-sample-weights backward of ``embedding_bag`` does exactly this without
    materialising the ``[nnz, d_in]`` gathers (about 20x faster on CPU than gather-and-dot,
    which stays as the fallback should a build lack the op). It is called with the roles
    swapped, entries in latent order: each ``W_dec`` row then stays in cache across its
    latent's entries and only ``grad_out`` rows are gathered, where in row order every entry
    gathers a ``W_dec`` row from a table that outgrows the cache as d_sae grows (on CPU at
    d_in 768, batch 4096, k 32: 15 → 10 ms at d_sae 8192, 30 → 9 ms at 16384).
    """
    try:
        dots = torch.ops.aten._embedding_bag_per_sample_weights_backward(
            W_dec, grad_out, layout.latent_rows, layout.latent_offsets, layout.latent_ids, 0, -1
        )
    except (AttributeError, RuntimeError):
        return torch.einsum("nd,nd->n", W_dec.index_select(0, latents), grad_out.index_select(0, rows))
    return torch.empty_like(dots).index_copy_(0, layout.latent_order, dots)


class _SparseEncode(torch.autograd.Function):
    """ReLU(pre[rows, latents]) as a function of (x, shift, W_enc, b_enc), sparse in backward.

    The encoder input is x − shift (the shift is b_dec when the SAE centres its input).
    Only the shift normally needs a gradient, and Σ_rows ∂sae_in = W_enc · ∂b_enc, so the
    shift's gradient is one matrix-vector product; the full ∂x is computed only when x
    itself requires a gradient.
    """

    @staticmethod
    def forward(ctx, x, shift, W_enc, b_enc, sae_in, pre_values, rows, latents, layout, stash, relu=True):
        values = pre_values.relu() if relu else pre_values.clone()
        ctx.save_for_backward(sae_in, W_enc, latents, values)  # the rows are the layout's
        ctx.layout = layout
        ctx.stash = stash
        ctx.relu = relu
        return values

    @staticmethod
    def backward(ctx, grad_values):
        sae_in, W_enc, latents, values = ctx.saved_tensors
        # ReLU: no gradient where the chosen entry is ≤ 0
        g = (grad_values * (values > 0) if ctx.relu else grad_values).contiguous()
        need_x, need_shift, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_shift = grad_w = grad_b = None
        if need_b or need_shift:
            grad_b = torch.zeros(W_enc.shape[1], dtype=g.dtype, device=g.device).index_add_(0, latents, g)
        if need_w:
            grad_w = _by_latent_columns(sae_in, g, ctx.layout)
        if ctx.stash is not None:  # a block's share (AuxK): added here, before ∂shift reads ∂b_enc
            ctx.stash.add_into(grad_w.T if grad_w is not None else None, grad_b)
        if need_shift:
            grad_shift = -(W_enc @ grad_b)
        if need_x:
            grad_x = _by_row(latents, W_enc.T.contiguous(), g, ctx.layout)
        return grad_x, grad_shift, grad_w, grad_b if need_b else None, None, None, None, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """Σ_{(r,j)} v · W_dec[j] per row, sparse in backward."""

    @staticmethod
    def forward(ctx, values, W_dec, rows, latents, layout, stash):
        ctx.save_for_backward(values, W_dec, rows, latents)
        ctx.layout = layout
        ctx.stash = stash
        return _by_row(latents, W_dec, values, layout)

    @staticmethod
    def backward(ctx, grad_out):
        values, W_dec, rows, latents = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_values = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_values = _entry_dots(grad_out, W_dec, rows, latents, ctx.layout)
        if ctx.needs_input_grad[1]:
            grad_w = _by_latent(grad_out, values.detach(), ctx.layout)
        if ctx.stash is not None:  # block decodes' rows (AuxK), left before this backward ran
            ctx.stash.add_decoder_into(grad_w)
        return grad_values, grad_w, None, None, None, None


def sparse_encode(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    sae_in: torch.Tensor,
    pre_values: torch.Tensor,
    rows: torch.Tensor,
    latents: torch.Tensor,
    layout: Layout,
    stash: GradStash | None = None,
    relu: bool = True,
) -> torch.Tensor:
    """ReLU'd values of the chosen entries of ``(x − shift) @ W_enc + b_enc``, differentiable.

    ``sae_in`` (= x − shift) and ``pre_values`` (the chosen entries) are those of the
    forward pass, taken without a graph; gradients reach ``x``, ``shift``, ``W_enc`` and
    ``b_enc`` through the chosen pairs only. Entries must be sorted by row (``Selection``
    keeps them so). ``stash``: block encodes of the same pass leave their gradient there.
    ``b_enc`` may be None (a bias added outside, per entry: Gated's two paths share the
    projection); ``relu=False`` returns the raw entries (Gated's projection can be negative).
    """
    return _SparseEncode.apply(
        x, shift, W_enc, b_enc, sae_in.detach(), pre_values.detach(), rows, latents, layout, stash, relu
    )


class _DenseEncode(torch.autograd.Function):
    """``pre`` (computed without a graph) as a function of (x, shift, W_enc, b_enc), dense in backward.

    What a threshold rule's sparse path falls back to when too many entries are chosen: the
    forward GEMM it already ran is kept (no second GEMM with a graph), and the backward is
    autograd's for ``addmm(b_enc, x − shift, W_enc)`` except that ∂shift = −W_enc·∂b_enc
    (Σ_rows ∂sae_in, as in ``_SparseEncode``): the ``[batch, d_in]`` GEMM for ∂sae_in runs
    only when x itself needs a gradient.
    """

    @staticmethod
    def forward(ctx, x, shift, W_enc, b_enc, sae_in, pre):
        ctx.save_for_backward(sae_in, W_enc)
        return pre

    @staticmethod
    def backward(ctx, G):
        sae_in, W_enc = ctx.saved_tensors
        need_x, need_shift, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_shift = grad_w = grad_b = None
        if need_b or need_shift:
            grad_b = G.sum(0)
        if need_shift:
            grad_shift = -(W_enc @ grad_b)
        if need_w:
            grad_w = sae_in.T @ G
        if need_x:
            grad_x = G @ W_enc.T
        return grad_x, grad_shift, grad_w, grad_b if need_b else None, None, None


def dense_encode(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor | None,
    sae_in: torch.Tensor,
    pre: torch.Tensor,
) -> torch.Tensor:
    """``pre = (x − shift) @ W_enc (+ b_enc)``, taken without a graph, with the dense gradients
    of that product: a sparse path's fallback that reuses its forward GEMM. ``b_enc`` may be
    None when the bias is added outside (Gated's shared projection)."""
    return _DenseEncode.apply(x, shift, W_enc, b_enc, sae_in.detach(), pre.detach())


def sparse_decode(
    values: torch.Tensor,
    W_dec: torch.Tensor,
    rows: torch.Tensor,
    latents: torch.Tensor,
    layout: Layout,
    stash: GradStash | None = None,
) -> torch.Tensor:
    """``[n_rows, d_in]`` reconstructions (no bias) from row-sorted entries, sparse in backward.
    ``stash``: block decodes of the same pass leave their ``W_dec`` rows there (``block_decode``)."""
    out = _SparseDecode.apply(values, W_dec, rows, latents, layout, stash)
    if stash is not None and out.requires_grad:  # its backward will run (and add the block rows)
        stash.decoder = "open"
    return out


class _BlockDecode(torch.autograd.Function):
    """codes @ W_dec[columns] for dense ``[batch, n_columns]`` codes (AuxK's block).

    Backward: ∂codes = grad · W_dec[columns]ᵀ; ∂W_dec[columns] = codesᵀ · grad, left in the
    stash while its sparse decode's backward is still to run ("open"), else written as a
    full gradient (autograd's ``index_select`` backward, which this replaces, always was).
    """

    @staticmethod
    def forward(ctx, codes, W_dec, columns, stash):
        block = W_dec.index_select(0, columns)
        ctx.save_for_backward(codes, block, columns)
        ctx.stash = stash
        ctx.d_sae = W_dec.shape[0]
        return codes @ block

    @staticmethod
    def backward(ctx, grad_out):
        codes, block, columns = ctx.saved_tensors
        grad_codes = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_codes = grad_out @ block.T
        if ctx.needs_input_grad[1]:
            rows = codes.T @ grad_out
            if ctx.stash is not None and ctx.stash.decoder == "open":
                ctx.stash.decoder_parts.append((columns, rows))
            else:
                grad_w = rows.new_zeros(ctx.d_sae, rows.shape[1]).index_add_(0, columns, rows)
        return grad_codes, grad_w, None, None


def block_decode(
    codes: torch.Tensor, W_dec: torch.Tensor, columns: torch.Tensor, stash: GradStash | None = None
) -> torch.Tensor:
    """``codes @ W_dec[columns]`` (no bias); with ``stash`` (the selection's, whose sparse decode
    holds it), the ``W_dec`` gradient is added into that decode's instead of a second dense one."""
    return _BlockDecode.apply(codes, W_dec, columns, stash)


class _BlockEncode(torch.autograd.Function):
    """ReLU(pre[:, columns]) · mask, for a dense-enough choice within a few columns.

    When most of a column block is chosen (AuxK picks k_aux = d_in/2 among the dead
    latents, often a large share of them), GEMMs over the ``[batch, n_columns]`` block beat
    per-entry gathers. Backward: G = grad · mask · 1[pre > 0]; ∂W_enc[:, cols] = sae_inᵀ · G,
    ∂b_enc[cols] = Σ_rows G, ∂shift = −W_enc[:, cols] · ∂b_enc[cols] (as in ``_SparseEncode``);
    other columns get nothing.
    """

    @staticmethod
    def forward(ctx, x, shift, W_enc, b_enc, sae_in, block_pre, columns, mask, stash, after):
        keep = mask & (block_pre > 0)
        ctx.save_for_backward(sae_in, W_enc, columns, keep)
        ctx.stash = stash
        return block_pre * keep

    @staticmethod
    def backward(ctx, grad_codes):
        sae_in, W_enc, columns, keep = ctx.saved_tensors
        G = grad_codes * keep
        need_x, need_shift, need_w, need_b = ctx.needs_input_grad[:4]
        grad_x = grad_shift = grad_w = grad_b = None
        block_b = G.sum(0)
        if need_x:
            grad_x = G @ W_enc.index_select(1, columns).T
        if ctx.stash is not None:  # the selection's encode adds these into its gradients (and ∂shift)
            ctx.stash.parts.append((columns, G.T @ sae_in if need_w else None, block_b))
            return grad_x, None, None, None, None, None, None, None, None, None
        if need_shift:
            grad_shift = -(W_enc.index_select(1, columns) @ block_b)
        if need_w:
            grad_w = torch.zeros_like(W_enc).index_copy_(1, columns, sae_in.T @ G)
        if need_b:
            grad_b = torch.zeros(W_enc.shape[1], dtype=G.dtype, device=G.device).index_copy_(0, columns, block_b)
        return grad_x, grad_shift, grad_w, grad_b, None, None, None, None, None, None


def block_encode(
    x: torch.Tensor,
    shift: torch.Tensor | None,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    sae_in: torch.Tensor,
    block_pre: torch.Tensor,
    columns: torch.Tensor,
    mask: torch.Tensor,
    stash: GradStash | None = None,
    after: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[batch, n_columns]`` codes: the chosen (``mask``) ReLU'd pre-activations of ``columns``,
    differentiable through those columns only; ``block_pre`` is ``pre[:, columns]`` without a graph.

    With ``stash`` and ``after`` (the values a ``sparse_encode`` holding that stash
    returned), the block's ``W_enc``/``b_enc``/shift gradients are left in the stash for
    that encode to add; ``after`` makes autograd run this backward before that one.
    """
    if (stash is None) != (after is None):
        raise ValueError("block_encode: give stash and after together (after: the stash's sparse_encode values)")
    return _BlockEncode.apply(x, shift, W_enc, b_enc, sae_in.detach(), block_pre.detach(), columns, mask, stash, after)
