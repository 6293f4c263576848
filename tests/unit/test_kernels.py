"""The fused sparse training path equals the dense autograd reference: values, indices, losses, gradients."""

from __future__ import annotations

import pytest
import torch

from sae.architectures import families, sae_class
from sae.architectures.base import auxk_loss
from sae.kernels import Layout, sparse_decode, sparse_encode

D, F = 16, 64
SPARSE_FAMILIES = tuple(f.name for f in families(trainable=True) if f.sparse_kernel)


def pair(arch: str, dtype=torch.float32, **kw):
    """The same SAE twice, one per kernel, with identical (non-trivial) weights (families without
    a k take none; Gated's biases are b_gate, b_mag)."""
    cls = sae_class(arch)
    k = {"k": kw.pop("k", 4)} if "k" in cls.config_class.model_fields else {}
    base = {"d_in": D, "d_sae": F, **k, **kw}
    torch.manual_seed(0)
    sparse = cls(cls.config_class(**base, kernel="sparse")).train().to(dtype)
    dense = cls(cls.config_class(**base, kernel="dense")).train().to(dtype)
    with torch.no_grad():
        for name in ("b_enc", "b_gate", "b_mag", "r_mag", "b_dec"):
            if hasattr(sparse, name):
                getattr(sparse, name).normal_(0, 0.3)
        sparse.W_enc.add_(0.2 * torch.randn_like(sparse.W_enc))
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


def run(sae, x, g, dead, seed=0, target=None):
    torch.manual_seed(seed)  # the vSAE samples
    sae.zero_grad(set_to_none=True)
    out = sae.training_pass(x, g=g, dead=dead, target=target)
    sum(out.losses.values()).backward()
    return out, {n: p.grad.clone() for n, p in sae.named_parameters() if p.grad is not None}


def assert_paths_agree(sparse, dense, x, g=None, dead=None, target=None):
    out_s, grads_s = run(sparse, x, g, dead, target=target)
    out_d, grads_d = run(dense, x, g, dead, target=target)
    assert grads_s.keys() == grads_d.keys()
    assert torch.equal(out_s.codes.detach() > 0, out_d.codes.detach() > 0)  # the same latents chosen
    torch.testing.assert_close(out_s.codes.detach(), out_d.codes.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_s.x_hat.detach(), out_d.x_hat.detach(), atol=1e-5, rtol=1e-5)
    assert out_s.losses.keys() == out_d.losses.keys()
    for name in out_s.losses:
        torch.testing.assert_close(out_s.losses[name].detach(), out_d.losses[name].detach(), atol=1e-5, rtol=1e-5)
    for name in grads_d:
        torch.testing.assert_close(
            grads_s[name], grads_d[name], atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}"
        )
    return out_s


@pytest.mark.parametrize("arch", SPARSE_FAMILIES)
def test_fused_path_equals_the_dense_reference(arch):
    sparse, dense = pair(arch)
    torch.manual_seed(1)
    x = torch.randn(48, D)
    g = torch.randn(48, D)
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::3] = True  # AuxK active over a third of the latents
    assert_paths_agree(sparse, dense, x, g, dead)
    assert "aux_k" in sparse(x, g=g, dead=dead).losses or arch in ("feature_choice", "jumprelu_ste", "gated")


@pytest.mark.parametrize("k_aux", [1, 2, 8, 30])
def test_both_auxk_paths_equal_the_reference(k_aux):
    """Few chosen among the dead latents: per-entry kernels; most of them: block GEMMs."""
    sparse, dense = pair("topk", k_aux=k_aux)
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::2] = True  # 32 candidates, about half above 0: k_aux 1, 2 take the per-entry path, 8 and 30 the block path
    x = torch.randn(40, D)
    assert_paths_agree(sparse, dense, x, None, dead)
    out = sparse(x, dead=dead)
    pre = sparse.pre_acts(x)
    torch.testing.assert_close(
        out.losses["aux_k"], sparse.cfg.aux_coefficient * auxk_loss(pre, x - out.x_hat, sparse.W_dec, dead, k_aux)
    )


@pytest.mark.parametrize("over_rows", [0, 3, 30])
def test_auxk_choice_is_the_top_k_kept_above_zero(over_rows):
    """``auxk_choice`` = each row's top k (``topk``) of the eligible columns, where > 0: rows
    with at most k positive entries keep all of them, the others are ranked (a few rows
    ranked alone, most rows through the whole block), padding columns never chosen."""
    from sae.architectures.base import auxk_choice

    gen = torch.Generator().manual_seed(over_rows)
    block = torch.randn(40, 30, generator=gen) - 1.5  # about 2 of 25 eligible entries a row above 0
    block[:over_rows, :25] += 3.0  # these rows hold more than k = 5 positive entries
    block[35, :25] = -1.0  # a row with none
    k, eligible = 5, 25
    top = block[:, :eligible].topk(k, dim=1).indices
    expected = torch.zeros_like(block, dtype=torch.bool).scatter_(1, top, True) & (block > 0)
    got, nnz = auxk_choice(block, k, eligible)
    assert torch.equal(got, expected) and nnz == int(expected.sum())
    assert not got[:, eligible:].any() and not got[35].any()
    assert (got[:over_rows].sum(1) == k).all() and (got[over_rows:].sum(1) <= k).all()


@pytest.mark.parametrize("shift", [-0.6, -3.0, -50.0])
def test_auxk_on_mostly_negative_dead_latents_equals_the_reference(shift):
    """Dead latents of a trained SAE sit mostly below 0: AuxK keeps only their positive top-k
    entries (a few a row, none on most: the per-entry path with rows of any length; none at
    all: ê = 0 and no gradient from AuxK), and equals the reference, which ranks them all."""
    sparse, dense = pair("topk", k_aux=8)
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::2] = True
    with torch.no_grad():
        for sae in (sparse, dense):
            sae.b_enc[dead] += shift
    x = torch.randn(40, D)
    assert_paths_agree(sparse, dense, x, None, dead)
    out = sparse(x, dead=dead)
    pre = sparse.pre_acts(x)
    positive = int((pre[:, dead] > 0).sum())
    assert (positive == 0) == (shift == -50.0)  # the last case keeps nothing
    torch.testing.assert_close(
        out.losses["aux_k"], sparse.cfg.aux_coefficient * auxk_loss(pre, x - out.x_hat, sparse.W_dec, dead, 8)
    )


@pytest.mark.parametrize("arch", ["topk", "gsae", "vsae"])
def test_k_equal_to_d_sae(arch):
    sparse, dense = pair(arch, k=F)  # every latent chosen, negative ones included (ReLU'd to 0)
    x = torch.randn(20, D)
    assert_paths_agree(sparse, dense, x, torch.randn(20, D), torch.ones(F, dtype=torch.bool))


@pytest.mark.parametrize("arch", ["topk", "mutual_choice", "feature_choice"])
def test_ties_and_all_zero_rows(arch):
    sparse, dense = pair(arch)
    with torch.no_grad():
        for sae in (sparse, dense):
            sae.W_enc[:, 1] = sae.W_enc[:, 0]  # latents 0 and 1 tie on every row
            sae.b_enc[1] = sae.b_enc[0]
            sae.b_enc.clamp_(max=0.0)
    x = torch.randn(24, D)
    x[5] = sparse.b_dec.detach()  # encoder input exactly zero: pre = b_enc ≤ 0, nothing fires
    x[9] = sparse.b_dec.detach()
    assert_paths_agree(sparse, dense, x, None, torch.zeros(F, dtype=torch.bool))
    out, _ = run(sparse, x, None, None)
    assert out.codes[5].abs().sum() == 0 and out.codes[9].abs().sum() == 0


def random_entries(n_rows=10, nnz=40, seed=3):
    """Row-sorted entries with repeated (row, latent) pairs and empty rows."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, n_rows - 2, (nnz,), generator=g).sort().values  # the last two rows stay empty
    latents = torch.randint(0, F, (nnz,), generator=g)
    latents[1] = latents[0]
    rows[1] = rows[0]  # one repeated pair: its gradients add up
    return rows, latents, Layout.of(rows, latents, n_rows, F)


@pytest.mark.parametrize("x_needs_grad", [False, True])
def test_sparse_encode_against_autograd_on_random_coordinates(x_needs_grad):
    torch.manual_seed(3)
    x = torch.randn(10, D, requires_grad=x_needs_grad)
    shift = torch.randn(D, requires_grad=True)
    W = torch.randn(D, F, requires_grad=True)
    b = torch.randn(F, requires_grad=True)
    leaves = [t for t in (x, shift, W, b) if t.requires_grad]
    rows, latents, layout = random_entries()
    weights = torch.randn(len(rows))
    pre = (x - shift) @ W + b
    (pre[rows, latents].relu() * weights).sum().backward()
    reference = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    with torch.no_grad():
        sae_in = x - shift
        chosen = (sae_in @ W + b)[rows, latents]
    values = sparse_encode(x, shift, W, b, sae_in, chosen, rows, latents, layout)
    torch.testing.assert_close(values, chosen.relu())
    (values * weights).sum().backward()
    for got, want in zip((t.grad for t in leaves), reference, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_sparse_decode_against_the_dense_product():
    torch.manual_seed(4)
    rows, latents, layout = random_entries(seed=5)
    values = torch.randn(len(rows), requires_grad=True)
    W = torch.randn(F, D, requires_grad=True)
    target = torch.randn(10, D)
    dense = torch.zeros(10, F).index_put((rows, latents), values, accumulate=True) @ W
    (dense - target).pow(2).sum().backward()
    reference = (values.grad.clone(), W.grad.clone())
    values.grad = W.grad = None
    out = sparse_decode(values, W, rows, latents, layout)
    torch.testing.assert_close(out, dense)
    assert out[8:].abs().sum() == 0  # empty rows decode to nothing
    (out - target).pow(2).sum().backward()
    torch.testing.assert_close(values.grad, reference[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(W.grad, reference[1], atol=1e-5, rtol=1e-5)


def test_sparse_backward_never_builds_a_dense_code_gradient():
    """The fused path's autograd graph holds no [batch, d_sae] tensor (that is the dense path's cost)."""
    sparse, dense = pair("topk")
    x = torch.randn(32, D)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    few_dead = torch.zeros(F, dtype=torch.bool)
    few_dead[:40] = True  # AuxK on its per-entry path (k_aux = 8 of 40 candidates)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sparse(x, dead=few_dead)
    assert (32, F) not in shapes
    shapes.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        dense(x, dead=few_dead)
    assert (32, F) in shapes


@pytest.mark.parametrize("d_sae", [7, 1024, 1 << 16, (1 << 16) + 5])
def test_group_order_is_torchs_stable_argsort(d_sae):
    """The CPU radix path (NumPy, 16-bit keys) and torch's fallback give the same stable
    permutation as ``argsort(stable=True)``, ties kept in entry order."""
    from sae.kernels import group_order

    gen = torch.Generator().manual_seed(d_sae)
    latents = torch.randint(0, d_sae, (5000,), generator=gen)
    latents[:50] = d_sae - 1  # ties, and the largest key
    got = group_order(latents, d_sae)
    assert got.dtype == latents.dtype and torch.equal(got, latents.argsort(stable=True))
    assert group_order(latents[:0], d_sae).numel() == 0


def test_auxk_block_padding_widens_with_columns_never_chosen(monkeypatch):
    import sae.architectures.base as base

    dead = torch.zeros(F, dtype=torch.bool)
    dead[3:40:2] = True  # 19 candidates
    assert base.gemm_padding(dead, 19).numel() == 0  # narrower than one GEMM width: left as it is
    assert base.gemm_padding(torch.ones(F, dtype=torch.bool), F).numel() == 0  # nothing left to widen with
    monkeypatch.setattr(base, "GEMM_WIDTH", 16)
    pad = base.gemm_padding(dead, 19)
    assert pad.numel() == 13 and not dead[pad].any() and pad.unique().numel() == 13  # to 32 columns
    sparse, _ = pair("topk", k_aux=8)
    x = torch.randn(40, D)
    padded, grads_padded = run(sparse, x, None, dead)
    monkeypatch.setattr(base, "GEMM_WIDTH", 1)  # no padding
    plain, grads_plain = run(sparse, x, None, dead)
    torch.testing.assert_close(padded.losses["aux_k"], plain.losses["aux_k"], atol=1e-6, rtol=1e-6)
    for name in grads_plain:
        torch.testing.assert_close(grads_padded[name], grads_plain[name], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("x_needs_grad", [False, True])
def test_a_block_leaves_its_encoder_gradient_to_the_selection_encode(x_needs_grad):
    """With a stash, the block's W_enc/b_enc/shift gradients reach the parameters through
    the selection's encode (one dense gradient written, not two added): the same gradients."""
    from sae.kernels import GradStash, block_encode

    torch.manual_seed(3)
    B, n_cols = 12, 9
    W = torch.randn(D, F, requires_grad=True)
    b = torch.randn(F, requires_grad=True)
    shift = torch.randn(D, requires_grad=True)
    x = torch.randn(B, D, requires_grad=x_needs_grad)
    rows = torch.arange(B).repeat_interleave(3)
    latents = torch.stack([torch.randperm(F)[:3].sort().values for _ in range(B)]).reshape(-1)
    columns = torch.randperm(F)[:n_cols]
    mask = torch.rand(B, n_cols) > 0.4
    r1, r2 = torch.randn(rows.numel()), torch.randn(B, n_cols)

    def grads(stashed: bool):
        for t in (W, b, shift, x):
            t.grad = None
        sae_in = (x - shift).detach()
        pre = sae_in @ W.detach() + b.detach()
        stash = GradStash() if stashed else None
        layout = Layout.of(rows, latents, B, F)
        values = sparse_encode(x, shift, W, b, sae_in, pre[rows, latents], rows, latents, layout, stash)
        codes = block_encode(x, shift, W, b, sae_in, pre[:, columns], columns, mask, stash, values if stashed else None)
        ((values * r1).sum() + (codes * r2).sum()).backward()
        assert stash is None or stash.parts == []  # emptied by the selection's backward
        return [t.grad.clone() for t in (W, b, shift) + ((x,) if x_needs_grad else ())]

    for got, want in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="give stash and after together"):
        block_encode(x, shift, W, b, x, torch.zeros(B, n_cols), columns, mask, GradStash(), None)


@pytest.mark.parametrize("block", [1, 5, F])
def test_column_blocks_equal_the_transposed_latent_sums(block, monkeypatch):
    """∂W_enc written a block of latents at a time equals the whole [d_sae, d_in] sum transposed,
    bit for bit: empty latents, a last partial block, a single block; and the parity tests'
    W_enc gradients (AuxK's stash included) hold with blocks of a few latents."""
    import sae.kernels as kernels

    monkeypatch.setattr(kernels, "_COLUMN_BLOCK_BYTES", block * D * 4)
    rows, latents, layout = random_entries(seed=7)
    assert torch.bincount(latents, minlength=F).eq(0).any()  # some latents have no entry
    table, weights = torch.randn(10, D), torch.randn(len(rows))
    got = kernels._by_latent_columns(table, weights, layout)
    assert got.shape == (D, F) and got.is_contiguous()
    assert torch.equal(got, kernels._by_latent(table, weights, layout).T)
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::3] = True  # AuxK on its block path, whose encoder rows go through the stash
    assert_paths_agree(*pair("topk"), torch.randn(32, D), dead=dead)


@pytest.mark.parametrize("order", ["one_backward", "decode_first", "no_decode_backward"])
def test_a_block_decode_leaves_its_decoder_gradient_to_the_selection_decode(order):
    """A block decode's W_dec rows reach W_dec.grad through the selection's sparse decode when
    that backward is still to run, and on their own when it has run or never will: in every
    order the gradients equal plain autograd's ``codes @ W_dec[columns]``."""
    from sae.kernels import GradStash, block_decode

    torch.manual_seed(4)
    B, n_cols = 10, 7
    W = torch.randn(F, D, requires_grad=True)
    rows = torch.arange(B).repeat_interleave(3)
    latents = torch.stack([torch.randperm(F)[:3].sort().values for _ in range(B)]).reshape(-1)
    values = torch.rand(rows.numel(), requires_grad=True)
    columns = torch.randperm(F)[:n_cols]
    codes = torch.rand(B, n_cols, requires_grad=True)
    r1, r2 = torch.randn(B, D), torch.randn(B, D)
    layout = Layout.of(rows, latents, B, F)

    def grads(fused: bool):
        for t in (W, values, codes):
            t.grad = None
        stash = GradStash() if fused else None
        drained = []  # how many block parts the decode's backward found
        if fused:
            add = stash.add_decoder_into
            stash.add_decoder_into = lambda g: (drained.append(len(stash.decoder_parts)), add(g))
        if order == "no_decode_backward":
            with torch.no_grad():  # decoded without a graph: nothing will add the block's rows
                sparse_decode(values, W, rows, latents, layout, stash)
            main = (values[:, None] * W[latents]).sum() * 0  # values and W still get (zero) gradients
        else:
            main = (sparse_decode(values, W, rows, latents, layout, stash) * r1).sum()
        e_hat = block_decode(codes, W, columns, stash) if fused else codes @ W.index_select(0, columns)
        aux = (e_hat * r2).sum()
        if order == "decode_first":
            main.backward()
            aux.backward()
        else:
            (main + aux).backward()
        assert stash is None or stash.decoder_parts == []
        if fused:  # one backward: the block ran first (it is the later node) and left its rows
            assert drained == {"one_backward": [1], "decode_first": [0], "no_decode_backward": []}[order]
        return [t.grad.clone() for t in (W, values, codes)]

    for got, want in zip(grads(True), grads(False), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# -- threshold rules (JumpReLU, Gated): their entries, the dense fallback, and the dense reference --

#: (apply_b_dec_to_input, what the SAE reconstructs): SAEs centred or not, a transcoder, a skip transcoder
SHAPES = [(True, "sae"), (False, "sae"), (False, "transcoder"), (False, "skip")]


def threshold_pair(arch: str, centred: bool, kind: str, **kw):
    """float64 twins of a threshold family in a trained state (see ``trained_state``), with a
    transcoder's or skip transcoder's output width when ``kind`` says so."""
    shape = {"d_out": D + 3, "skip": kind == "skip"} if kind != "sae" else {}
    sparse, dense = pair(arch, torch.float64, apply_b_dec_to_input=centred, **shape, **kw)
    if kind == "skip":
        with torch.no_grad():
            sparse.W_skip.normal_(0, 0.1)
            dense.W_skip.copy_(sparse.W_skip)
    return sparse, dense


def trained_state(sparse, dense, x: torch.Tensor) -> None:
    """Thresholds (JumpReLU θ, Gated −b_gate) at each latent's 0.95 quantile of this batch: about
    3 of 64 latents fire per row. JumpReLU: four latents get θ ≪ ε/2, where window entries
    below θ are ≤ 0 (those the sparse encode must not ReLU)."""
    with torch.no_grad():
        if hasattr(sparse, "log_threshold"):
            pre = sparse.encoder_input(x) @ sparse.W_enc + sparse.b_enc
            theta = pre.quantile(0.95, dim=0).clamp_min(1e-3)
            theta[:4] = 1e-3 * sparse.bandwidth
            sparse.log_threshold.copy_(theta.log())
        else:
            proj = sparse.encoder_input(x) @ sparse.W_enc
            sparse.b_gate.copy_(-proj.quantile(0.95, dim=0))
    dense.load_state_dict(sparse.state_dict())


def batch(kind: str, n: int = 96):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    return x, (torch.randn(n, D + 3, generator=g, dtype=torch.float64) if kind != "sae" else None)


@pytest.fixture
def entries_path(monkeypatch):
    """The tests' tiny batches have more entries per row than a trained SAE (a few latents of 64
    with a wide kernel window): keep them on the entries' path whatever the measured crossover."""
    import sae.architectures.base as base

    monkeypatch.setattr(base, "THRESHOLD_SHARE", 0.3)


@pytest.mark.parametrize("loss", ["step", "tanh"])
@pytest.mark.parametrize(("centred", "kind"), SHAPES)
def test_jumprelu_entries_equal_the_dense_reference(loss, centred, kind, entries_path):
    # ε = bandwidth·√d_in = 0.3: about a third of the pre-activations' spread, a wide window
    sparse, dense = threshold_pair("jumprelu_ste", centred, kind, sparsity_loss=loss, bandwidth=0.3 / D**0.5)
    x, target = batch(kind)
    trained_state(sparse, dense, x)
    pre = (sparse.encoder_input(x) @ sparse.W_enc + sparse.b_enc).detach()
    theta, eps = sparse.threshold.detach(), sparse.bandwidth
    below = (pre <= theta) & ((pre - theta).abs() / eps < 0.5)
    assert below.sum() > 50 and (below & (pre <= 0)).sum() > 0  # inactive window entries, some ≤ 0
    out = assert_paths_agree(sparse, dense, x, target=target)
    assert out.selection is not None  # the entries' path, not the fallback


@pytest.mark.parametrize("detach", [True, False])
@pytest.mark.parametrize(("centred", "kind"), SHAPES)
def test_gated_entries_equal_the_dense_reference(detach, centred, kind, entries_path):
    sparse, dense = threshold_pair("gated", centred, kind, aux_detach=detach)
    x, target = batch(kind)
    with torch.no_grad():
        sparse.b_mag[:8] = -3.0  # open gates whose magnitude is ReLU'd to 0
    trained_state(sparse, dense, x)
    out = assert_paths_agree(sparse, dense, x, target=target)
    assert out.selection is not None
    assert (out.selection.values == 0).any()  # open gates whose magnitude is ReLU'd to 0


@pytest.mark.parametrize("arch", ["jumprelu_ste", "gated"])
def test_threshold_rules_fall_back_to_dense_gemms_at_initialisation(arch):
    """At θ₀ (zero gate biases) about half the latents fire: above THRESHOLD_SHARE, the pass is dense
    (reusing the sparse pass's GEMM) and still equals the reference; AuxK runs on either path."""
    sparse, dense = threshold_pair(arch, arch == "gated", "sae", aux_coefficient=1 / 32)
    x, _ = batch("sae")
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::3] = True
    out = assert_paths_agree(sparse, dense, x, dead=dead)
    assert out.selection is None and "aux_k" in out.losses


@pytest.mark.parametrize("arch", ["jumprelu_ste", "gated"])
def test_the_entries_path_saves_no_dense_tensor_for_backward(arch, entries_path):
    """What makes it cheap: the graph holds no [batch, d_sae] tensor (the dense path's does)."""
    sparse, dense = threshold_pair(arch, False, "sae")
    x, _ = batch("sae")
    trained_state(sparse, dense, x)
    shapes: list[tuple] = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    for sae, dense_saved in ((sparse, False), (dense, True)):
        shapes.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            sae(x)
        assert ((x.shape[0], F) in shapes) == dense_saved


@pytest.mark.parametrize(("arch", "extra"), [("jumprelu_ste", "step"), ("jumprelu_ste", "tanh"), ("gated", None)])
def test_threshold_rules_with_no_entry_at_all(arch, extra):
    """Thresholds above every pre-activation: an empty selection, still equal to the reference."""
    sparse, dense = pair(arch, torch.float64, **({"sparsity_loss": extra} if extra else {}))
    with torch.no_grad():
        (sparse.b_gate.fill_(-100.0) if arch == "gated" else sparse.log_threshold.fill_(5.0))
    dense.load_state_dict(sparse.state_dict())
    out = assert_paths_agree(sparse, dense, batch("sae")[0])
    assert out.selection is not None and out.selection.rows.numel() == 0


def test_jumprelu_auxk_on_the_entries_path(entries_path):
    sparse, dense = threshold_pair("jumprelu_ste", False, "sae", aux_coefficient=1 / 32, k_aux=3)
    x, _ = batch("sae")
    trained_state(sparse, dense, x)
    dead = torch.zeros(F, dtype=torch.bool)
    dead[::3] = True
    out = assert_paths_agree(sparse, dense, x, dead=dead)
    assert out.selection is not None and "aux_k" in out.losses


@pytest.mark.parametrize("x_needs_grad", [False, True])
def test_dense_encode_against_autograd(x_needs_grad):
    from sae.kernels import dense_encode

    torch.manual_seed(5)
    x = torch.randn(10, D, requires_grad=x_needs_grad)
    shift, W, b = torch.randn(D, requires_grad=True), torch.randn(D, F, requires_grad=True), torch.randn(F)
    weights = torch.randn(10, F)
    for bias in (b.requires_grad_(), None):
        leaves = [t for t in (x, shift, W, bias) if t is not None and t.requires_grad]
        ((x - shift) @ W + (0 if bias is None else bias)).mul(weights).sum().backward()
        reference = [t.grad.clone() for t in leaves]
        for t in leaves:
            t.grad = None
        with torch.no_grad():
            sae_in = x - shift
            pre = sae_in @ W + (0 if bias is None else bias)
        out = dense_encode(x, shift, W, bias, sae_in, pre)
        assert torch.equal(out, pre)
        out.mul(weights).sum().backward()
        for got, want in zip((t.grad for t in leaves), reference, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        for t in leaves:
            t.grad = None


@pytest.mark.parametrize("arch", ["jumprelu_ste", "gated"])
def test_trainer_steps_with_sparse_and_dense_kernels_reach_the_same_weights(arch, tmp_path, entries_path):
    """A few Adam steps (unit-norm decoder, clipping) from a trained state: the same weights. (Adam
    turns a gradient that is rounding noise, e.g. a decoder row's gradient parallel to the row minus
    its projection, into a full step; this state has none.)"""
    from sae.trainer import Member, Trainer, TrainerConfig

    sparse, dense = pair(arch, torch.float32, l0_coefficient=0.5) if arch == "jumprelu_ste" else pair(arch)
    x0, _ = batch("sae", 128)
    trained_state(sparse, dense, x0.float())
    tcfg = TrainerConfig(
        lr=1e-3, warmup_steps=0, decay_fraction=0.0, wandb_project=None, log_every=10**9, checkpoint_every=0
    )
    g = torch.Generator().manual_seed(8)
    xs = [torch.randn(128, D, generator=g) for _ in range(4)]
    assert sparse(xs[0]).selection is not None and dense(xs[0]).selection is None  # entries; the reference
    weights = []
    for sae in (sparse, dense):
        trainer = Trainer([Member.reading(arch, sae)], tcfg, tmp_path / sae.cfg.kernel, progress=False)
        for x in xs:
            trainer.train_step({"x": x}, total_steps=100)
        weights.append({n: p.detach().clone() for n, p in sae.named_parameters()})
    for name in weights[1]:
        torch.testing.assert_close(weights[0][name], weights[1][name], atol=1e-5, rtol=1e-5, msg=name)
