"""Dashboard records against brute force on small cases (issue 8, item 1)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from app.feature_stats import FeatureStats


def _batches(seed=0, n_batches=5, rows=48, feats=7):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        x = torch.randn(rows, feats, generator=g) * (1 + b)  # the max grows: the histogram must double
        out.append(x.clamp_min(0) * (torch.rand(rows, feats, generator=g) < 0.4))
    return out


def test_feature_stats_match_brute_force():
    seq = 8
    batches = _batches()
    st = FeatureStats(7, n_top=5, sample_size=6, left=2, right=1, hist_bins=16, seed=0)
    for b in batches:
        st.update(b, seq)
    allc = torch.cat(batches)
    for f in range(7):
        col = allc[:, f]
        want = col.topk(5)
        assert torch.allclose(st.top.value[f], want.values)
        assert torch.equal(allc[st.top.where[f], f], st.top.value[f])  # rows point at the values
        nz = int((col > 0).sum())
        assert int(st.count[f]) == nz and float(st.max[f]) == pytest.approx(float(col.max()))
        # exact histogram over (0, R] whatever the doublings
        R = float(st.range[f])
        assert float(col.max()) - 1e-6 <= R
        edges = np.linspace(0, R, 17)
        vals = col[col > 0].numpy()
        ref = [int(((vals > lo + 1e-7) & (vals <= hi + 1e-7)).sum()) for lo, hi in itertools.pairwise(edges)]
        assert st.hist[f].tolist() == ref and sum(ref) == nz
        # the sample: distinct nonzero rows, as many as there are (up to its size)
        rows = st.sample.where[f][st.sample.where[f] >= 0]
        assert len(rows) == min(6, nz) and len(set(rows.tolist())) == len(rows)
        assert torch.all(allc[rows, f] > 0)
        # windows: the centre is the value; the window stays within the sequence
        for slot in range(5):
            r = int(st.top.where[f, slot])
            win = st.top.window[f, slot]
            assert float(win[2]) == pytest.approx(float(allc[r, f]))
            for j, off in enumerate(range(-2, 2)):
                same_seq = 0 <= (r % seq) + off < seq
                assert bool(torch.isnan(win[j])) != same_seq
                if same_seq:
                    assert float(win[j]) == pytest.approx(float(allc[r + off, f]))


def test_sample_is_uniform_over_nonzeros():
    """Bottom-k keys give every nonzero row the same chance: across seeds, inclusion rates agree."""
    codes = torch.zeros(40, 1)
    codes[::2, 0] = torch.linspace(0.1, 10, 20)  # 20 nonzeros, very different sizes
    hits = torch.zeros(40)
    for seed in range(300):
        st = FeatureStats(1, n_top=1, sample_size=5, left=0, right=0, hist_bins=4, seed=seed)
        st.update(codes[:20], 4)
        st.update(codes[20:], 4)
        hits[st.sample.where[0]] += 1
    rate = hits[::2] / 300
    assert hits[1::2].sum() == 0
    assert rate.min() > 0.13 and rate.max() < 0.38  # expected 5/20 = 0.25


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, organism):
    """Random topk SAEs on a residual hook and on hook_z, with dashboards over a few thousand tokens."""
    from app.dashboard_config import DashboardConfig
    from app.dashboard_data import build_run
    from sae.architectures import sae_class
    from sae.saving import save_sae

    root = tmp_path_factory.mktemp("dash_run")
    cls = sae_class("topk")
    torch.manual_seed(0)
    for hook in ("blocks.1.hook_resid_post", "blocks.2.attn.hook_z"):
        save_sae(
            cls(cls.config_class(d_in=128, d_sae=64, k=4)), root / hook, metadata={"hook": hook, "model": "organism"}
        )
    cfg = DashboardConfig(n_tokens=2048, context_size=32, lm_batch_size=16, n_top=4, left=3, right=2)
    build_run(root, cfg, progress=False, model=organism[0], tokenizer=organism[1])
    return root, cfg


def _brute_codes(root, hook, cfg, model, tok):
    from sae.harvest import Harvester
    from sae.saving import load_sae
    from sae.store import StoreConfig, token_batches
    from sae.text import TextSource

    sae, _ = load_sae(root / hook)
    scfg = StoreConfig(
        model="organism",
        hooks=[hook],
        source=TextSource(),
        context_size=cfg.context_size,
        n_tokens=cfg.n_tokens,
        lm_batch_size=cfg.lm_batch_size,
        seed=cfg.seed,
    )
    h = Harvester(model, tok, [hook])
    tokens = torch.cat(list(token_batches(scfg, tok)))
    with torch.no_grad():
        codes = sae.encode(h.full(tokens)[hook].flatten(0, 1))
    codes[~h.mask(tokens).flatten()] = 0
    return tokens.flatten(), codes, sae


def test_top_contexts_equal_brute_force_argmax(tiny_run, organism):
    from app.dashboard_data import read_contexts, read_features

    root, cfg = tiny_run
    model, tok = organism
    hook = "blocks.1.hook_resid_post"
    flat, codes, _ = _brute_codes(root, hook, cfg, model, tok)
    feats = read_features(root / hook)
    assert np.allclose(feats["density"], (codes > 0).float().mean(0).numpy() * len(flat) / int((flat > 1).sum()))
    for f in (0, 5, 17):
        ctx = read_contexts(root / hook, f)
        top = ctx[ctx.group == "top"].sort_values("rank")
        want = codes[:, f].topk(cfg.n_top)
        assert np.allclose(top.value.to_numpy(), want.values.numpy(), atol=1e-5)
        row = int(want.indices[0])
        first = top.iloc[0]
        assert first.tokens[first.centre] == tok.convert_ids_to_tokens(int(flat[row]))
        assert feats.top_token[f] == tok.convert_ids_to_tokens(int(flat[row]))
        lo = row - first.centre
        assert np.allclose(first.acts, codes[lo : lo + len(first.acts), f].numpy(), atol=1e-5)
        inter = ctx[ctx.group == "interval"]
        assert ((inter.value > inter.lo - 1e-6) & (inter.value <= inter.hi + 1e-6)).all()
        assert sum(feats.hist_counts[f]) == feats["count"][f] == int((codes[:, f] > 0).sum())


def test_logit_effects_and_heads_of_hook_z(tiny_run, organism):
    from app.dashboard_data import read_features
    from sae.saving import load_sae

    root, _ = tiny_run
    model, tok = organism
    hook = "blocks.2.attn.hook_z"
    feats = read_features(root / hook)
    sae, _ = load_sae(root / hook)
    W_dec = sae.W_dec.detach()
    f = 9
    resid = sum(W_dec[f].view(8, 16)[h] @ model.W_O[2][h] for h in range(8))  # through each head's W_O
    logits = resid @ model.W_U
    assert feats.pos_tokens[f][0] == tok.convert_ids_to_tokens(int(logits.argmax()))
    assert feats.neg_tokens[f][0] == tok.convert_ids_to_tokens(int(logits.argmin()))
    assert feats.pos_values[f][0] == pytest.approx(float(logits.max()), rel=1e-4)
    norms = W_dec[f].view(8, 16).norm(dim=1)
    assert np.allclose(feats.head_shares[f], (norms / norms.sum()).numpy(), atol=1e-5)
    cos = torch.nn.functional.normalize(W_dec, dim=1) @ torch.nn.functional.normalize(W_dec[f], dim=0)
    cos[f] = -2
    assert feats.neighbours[f][0] == int(cos.argmax())


def test_dashboard_cli_errors_in_one_line(tmp_path, capsys):
    from saelab.cli import main

    assert main(["dashboard", str(tmp_path / "nope")]) != 0
    assert "no such run directory" in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path)]) != 0
    assert "no saved SAE" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "nope")]) != 0
    assert "no such run directory" in capsys.readouterr().err


def test_steering_adds_alpha_times_the_decoder_row(tiny_run, organism):
    from app.prompt import prompt_tokens, sample, steer, steering_hook, token_codes
    from sae.hooks import resolve_hook
    from sae.saving import load_sae

    root, _ = tiny_run
    model, tok = organism
    hook = "blocks.2.attn.hook_z"
    sae, _ = load_sae(root / hook)
    spec = resolve_hook(model, hook)
    act = torch.randn(1, 5, 8, 16)
    out = steering_hook(spec, sae.W_dec[7].detach(), 3.0)(act, None)
    assert torch.allclose(spec.read(out) - spec.read(act), 3.0 * sae.W_dec[7].detach().expand(1, 5, -1), atol=1e-6)
    tokens = prompt_tokens(tok, "When Mary and John went to the store, John gave a drink to")
    assert tokens[0, 0] == tok.bos_token_id
    clean, same, _ = steer(model, sae, hook, tokens, 7, 0.0)
    assert torch.allclose(clean, same, atol=1e-6)
    clean, steered, _fwd = steer(model, sae, hook, tokens, 7, 50.0)
    assert (steered - clean).abs().max() > 1e-3 and abs(float(steered.sum()) - 1) < 1e-4
    assert sample(model, tokens, 4, seed=3) == sample(model, tokens, 4, seed=3)  # seeded
    codes = token_codes(model, tok, sae, hook, tokens)
    assert codes.shape == (tokens.shape[1], sae.cfg.d_sae) and codes[0].abs().sum() == 0  # BOS zeroed


def test_dashboard_cli_builds_and_rejects_bad_settings(tmp_path, capsys, organism):
    import json

    from sae.architectures import sae_class
    from sae.saving import save_sae
    from saelab.cli import main

    cls = sae_class("topk")
    save_sae(
        cls(cls.config_class(d_in=512, d_sae=32, k=2)),
        tmp_path / "mlp",
        metadata={"hook": "blocks.0.mlp.hook_post", "model": "organism"},
    )
    assert main(["dashboard", str(tmp_path), "--set", "n_top=0"]) == 2
    assert "n_top" in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path), "--n-tokens", "512", "--set", "context_size=32", "--quiet"]) == 0
    meta = json.loads((tmp_path / "mlp" / "dashboard" / "meta.json").read_text())
    assert meta["kind"] == "dashboard" and meta["hook"] == "blocks.0.mlp.hook_post" and meta["n_positions"] > 0
    assert "wrote" in capsys.readouterr().out
    from app.dashboard_data import read_features
    from sae.saving import load_sae

    model, tok = organism
    sae, _ = load_sae(tmp_path / "mlp")
    logits = sae.W_dec[0].detach() @ model.W_out[0] @ model.W_U  # mlp.hook_post goes through W_out
    assert read_features(tmp_path / "mlp").pos_tokens[0][0] == tok.convert_ids_to_tokens(int(logits.argmax()))


def test_feature_tables_equal_brute_force(tiny_run, organism):
    """The build's SAEDashboard tables (one pass, sparse) equal dense ones from brute-force codes."""
    from app import feature_tables as ft
    from app.dashboard_data import read_features
    from sae.harvest import Harvester

    root, cfg = tiny_run
    model, tok = organism
    hook = "blocks.1.hook_resid_post"
    flat, codes, sae = _brute_codes(root, hook, cfg, model, tok)
    feats = read_features(root / hook)
    keep = Harvester(model, tok, [hook]).mask(flat.view(-1, cfg.context_size)).flatten()
    x = codes[keep].double()
    n = len(x)
    xs, x2 = x.sum(0), (x * x).sum(0)
    pear = (n * x.T @ x - torch.outer(xs, xs)) / ((torch.outer(n * x2 - xs**2, n * x2 - xs**2)).sqrt() + 1e-6)
    pear.fill_diagonal_(0)
    W_U = model.W_U.detach()
    for f in (0, 5, 17):
        want = pear[f].topk(cfg.n_table_rows)
        assert np.allclose(feats.corr_feat_pearson[f], want.values.numpy(), atol=1e-4)
        assert np.allclose(pear.numpy()[f, list(feats.corr_feat_ids[f])], want.values.numpy(), atol=1e-4)
        logits = (sae.W_dec[f].detach() @ W_U).numpy()
        h, _ = np.histogram(logits, bins=cfg.plot_bins, range=(logits.min(), logits.max()))
        assert np.abs(feats.logit_hist_heights[f] - h).sum() <= 2  # float32 edges may move a value one bin
        v = x[:, f][x[:, f] > 0].numpy()
        h, _ = np.histogram(v, bins=cfg.plot_bins, range=(v.min(), v.max()))
        assert np.abs(feats.act_hist_heights[f] - h).sum() <= 2 and sum(feats.act_hist_heights[f]) == len(v)
        ids, _, _ = ft.neuron_alignment(sae.W_dec[f : f + 1], cfg.n_table_rows)
        assert feats.align_ids[f].tolist() == ids[0].tolist()
    # the neurons: the hooked activation's coordinates at the same positions
    a = Harvester(model, tok, [hook]).full(flat.view(-1, cfg.context_size))[hook].flatten(0, 1)[keep].double()
    a_s, a2 = a.sum(0), (a * a).sum(0)
    npear = (n * x.T @ a - torch.outer(xs, a_s)) / ((torch.outer(n * x2 - xs**2, n * a2 - a_s**2)).sqrt() + 1e-6)
    for f in (0, 5):
        assert np.allclose(feats.corr_neuron_pearson[f], npear[f].topk(cfg.n_table_rows).values.numpy(), atol=1e-4)
