"""Per-feature dashboard records: built once by ``saelab dashboard``, read by the explorer.

For every SAE of a run directory the build writes ``<sae>/dashboard/`` (atomically, whole):

- ``features.parquet``: one row per feature: density, max and mean activation, the exact
  activation histogram, top and bottom logit effects, decoder-cosine neighbours,
  per-head shares (``hook_z`` SAEs), the token at its maximum, and SAEDashboard's tables
  (``app.feature_tables``): correlated features and neurons, neuron alignment, the 50-bin
  logit histogram and the 50-bin activation histogram;
- ``contexts.parquet``: sorted by feature, so the app reads one feature's rows through a
  row-group filter: the exact top contexts and the interval contexts, each with the
  tokens of its window and the feature's activation at every one;
- ``token_index.parquet``: token → the features firing most on it (``app.search``), sparse;
- ``meta.json``: ``kind: dashboard``, the SAE, hook, model, text and settings.

One pass over the text serves every SAE of the run (one forward pass reads all their
hooks); see ``app.feature_stats`` for how top-k, interval samples and histograms are kept.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from app import feature_tables as ft
from app.dashboard_config import DashboardConfig
from app.feature_stats import FeatureStats
from app.run_dir import model_name
from app.search import TOKEN_INDEX, token_index
from app.weights import decoder_neighbours, head_shares, logit_effects, residual_directions
from sae import providers
from sae.atomic import atomic_directory, write_json
from sae.errors import SaelabError
from sae.run_dir import SAEEntry, find_saes

SCHEMA_VERSION = 2  # 2: SAEDashboard's feature tables and 50-bin histograms
ROW_GROUP = 64  # features per row group of contexts.parquet


def build_run(
    run_dir: str | Path, cfg: DashboardConfig | None = None, progress: bool = True, model=None, tokenizer=None
) -> list[Path]:
    """Build the records of every SAE in ``run_dir``; returns their dashboard directories."""
    cfg = cfg or DashboardConfig()
    entries = find_saes(run_dir, strict=False)
    models = {model_name(e) for e in entries}
    if len(models) > 1:
        raise SaelabError(f"{run_dir}: SAEs of several models ({', '.join(sorted(models))}); build them one by one")
    return build(entries, cfg, progress, model, tokenizer)


def _source(cfg: DashboardConfig, entries: list[SAEEntry]):
    from sae.saving import read_cfg
    from sae.text import TextSource

    if cfg.source is not None:
        return cfg.source
    dataset = (read_cfg(entries[0].path).get("saelab") or {}).get("dataset")
    if isinstance(dataset, dict):
        return TextSource(**dataset)
    # no recorded source: a provider's model reads its own text (organism-b's for organism-b)
    name = model_name(entries[0])
    return TextSource(kind=name) if providers.find(name) is not None else TextSource()


def build(
    entries: list[SAEEntry], cfg: DashboardConfig, progress: bool = True, model=None, tokenizer=None
) -> list[Path]:
    from sae.harvest import Harvester
    from sae.hooks import resolve_hook
    from sae.progress import progress_bar
    from sae.saving import load_sae
    from sae.store import StoreConfig, load_for, token_batches

    started = time.time()
    if any(e.hook is None for e in entries):
        raise SaelabError(f"{next(e.path for e in entries if e.hook is None)}: cfg.json names no hook")
    scfg = StoreConfig(
        model=model_name(entries[0]),
        hooks=sorted({e.hook for e in entries}),
        source=_source(cfg, entries),
        context_size=cfg.context_size,
        n_tokens=cfg.n_tokens,
        lm_batch_size=cfg.lm_batch_size,
        seed=cfg.seed,
        device=cfg.device,
    )
    model, tokenizer = load_for(scfg, model, tokenizer)
    harvester = Harvester(model, tokenizer, scfg.hooks)
    saes = [load_sae(e.path, device=cfg.device)[0] for e in entries]
    stats = [
        FeatureStats(s.cfg.d_sae, cfg.n_top, cfg.sample_size, cfg.left, cfg.right, cfg.hist_bins, cfg.seed)
        for s in saes
    ]
    samples = [ft.CodeSample(s.cfg.d_sae, s.cfg.d_in, cfg.corr_tokens) for s in saes]
    token_rows: list[torch.Tensor] = []
    n_positions = 0
    total = math.ceil(scfg.n_sequences / cfg.lm_batch_size)
    for tokens in progress_bar(
        token_batches(scfg, tokenizer), total=total, desc="dashboard", unit="batch", disable=not progress
    ):
        keep = harvester.mask(tokens).flatten().cpu()
        n_positions += int(keep.sum())
        acts = harvester.full(tokens)
        with torch.no_grad():
            for entry, sae, st, sample in zip(entries, saes, stats, samples, strict=True):
                x = acts[entry.hook].flatten(0, 1)
                rows, feats, vals = sparse_codes(sae, x.to(sae.W_enc.dtype))
                active = keep[rows] & (vals > 0)
                rows, feats, vals = rows[active], feats[active], vals[active]
                st.update_sparse(rows, feats, vals, x.shape[0], tokens.shape[1])
                if not sample.full:
                    codes = torch.zeros(x.shape[0], sae.cfg.d_sae).index_put_((rows, feats), vals)
                    sample.update(codes, x, keep)
        token_rows.append(tokens.to(torch.int32).flatten())
    if n_positions == 0:
        raise SaelabError("the text source produced no token to build dashboards from")
    flat_tokens = torch.cat(token_rows).numpy()
    vocab = [str(t) for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    out = []
    for entry, sae, st, sample in zip(entries, saes, stats, samples, strict=True):
        spec = resolve_hook(model, entry.hook)
        with atomic_directory(entry.dashboard) as tmp:
            features = feature_table(sae, spec, model, st, n_positions, flat_tokens, vocab, cfg, sample)
            pq.write_table(features, tmp / "features.parquet")
            pq.write_table(
                token_index(
                    st.sample.where.numpy(),
                    st.sample.value.numpy(),
                    st.count.numpy(),
                    flat_tokens,
                    vocab,
                    cfg.token_index_features,
                ),
                tmp / TOKEN_INDEX,
            )
            pq.write_table(
                context_table(st, flat_tokens, vocab, cfg),
                tmp / "contexts.parquet",
                row_group_size=ROW_GROUP * (cfg.n_top + cfg.n_intervals * cfg.per_interval),
            )
            write_json(
                tmp / "meta.json",
                {
                    "kind": "dashboard",
                    "schema_version": SCHEMA_VERSION,
                    "model": model_name(entry),
                    "hook": entry.hook,
                    "sae": str(entry.path),
                    "name": entry.name,
                    "architecture": entry.architecture,
                    "d_sae": sae.cfg.d_sae,
                    "n_positions": n_positions,
                    "n_sequences": int(flat_tokens.size // cfg.context_size),
                    "corr_positions": sample.rows,
                    "text": scfg.source.model_dump(mode="json"),
                    "config": cfg.model_dump(mode="json"),
                    "seconds": round(time.time() - started, 1),
                },
            )
        out.append(entry.dashboard)
    return out


def sparse_codes(sae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, feats, vals)`` of the codes of ``[rows, d_in]`` inputs, on the CPU.

    Families whose inference codes are their selection (``encode`` and ``inference_encode``
    not overridden: topk, batchtopk, ...) give them sparse, so no dense ``[rows, d_sae]``
    matrix is made (at 16,384 latents writing it costs more than the encoder GEMM); the
    others are encoded densely and their nonzero entries taken."""
    from sae.architectures.base import SparseAutoencoder

    cls = type(sae)
    if (
        isinstance(sae, SparseAutoencoder)
        and cls.encode is SparseAutoencoder.encode
        and cls.inference_encode is SparseAutoencoder.inference_encode
    ):
        sel = sae.encode_selection(x)
        return sel.rows.long().cpu(), sel.latents.long().cpu(), sel.values.float().cpu()
    codes = sae.encode(x).float().cpu()
    rows, feats = codes.nonzero(as_tuple=True)
    return rows, feats, codes[rows, feats]


def _tokens(vocab: list[str], ids) -> list[str]:
    return [vocab[int(i)] for i in ids]


def feature_table(
    sae,
    spec,
    model,
    st: FeatureStats,
    n_positions: int,
    flat_tokens: np.ndarray,
    vocab: list[str],
    cfg: DashboardConfig,
    sample: ft.CodeSample | None = None,
) -> pa.Table:
    W_dec = sae.W_dec.detach().float().cpu()
    d_sae = W_dec.shape[0]
    count = st.count.numpy()
    mean = np.where(count > 0, st.total.numpy() / np.maximum(count, 1), 0.0)
    top_row = st.top.where[:, 0].numpy()
    top_id = np.where(top_row >= 0, flat_tokens[np.clip(top_row, 0, None)], -1)
    columns: dict[str, object] = {
        "feature": pa.array(np.arange(d_sae, dtype=np.int32)),
        "count": pa.array(count.astype(np.int64)),
        "density": pa.array(count / n_positions),
        "log10_density": pa.array(np.where(count > 0, np.log10(np.maximum(count, 1) / n_positions), -np.inf)),
        "max_act": pa.array(st.max.numpy().astype(np.float32)),
        "mean_act": pa.array(mean.astype(np.float32)),
        "hist_counts": pa.array(list(st.hist.numpy())),
        "hist_range": pa.array(st.range.numpy().astype(np.float32)),
        "top_token_id": pa.array(top_id.astype(np.int32)),
        "top_token": pa.array([vocab[i] if i >= 0 else None for i in top_id]),
    }
    resid = residual_directions(W_dec, spec, model)
    if resid is not None:
        pos_ids, pos_vals, neg_ids, neg_vals = logit_effects(resid, model.W_U, cfg.n_logits)
        columns["pos_tokens"] = pa.array([_tokens(vocab, r) for r in pos_ids.tolist()])
        columns["pos_values"] = pa.array(list(pos_vals.numpy()))
        columns["neg_tokens"] = pa.array([_tokens(vocab, r) for r in neg_ids.tolist()])
        columns["neg_values"] = pa.array(list(neg_vals.numpy()))
        columns["top_logit"] = pa.array([r[0] for r in columns["pos_tokens"].to_pylist()])
        heights, centres = ft.logit_histograms(resid, model.W_U, cfg.plot_bins)
        columns["logit_hist_heights"] = pa.array(list(heights.astype(np.int64)))
        columns["logit_hist_values"] = pa.array(list(centres.astype(np.float32)))
    ids, cos = decoder_neighbours(W_dec, cfg.n_neighbours)
    columns["neighbours"] = pa.array(list(ids.numpy().astype(np.int32)))
    columns["neighbour_cos"] = pa.array(list(cos.numpy()))
    tables = [("align", ft.neuron_alignment(W_dec, cfg.n_table_rows))]
    if sample is not None and sample.rows > 0:
        tables.append(("corr_feat", ft.correlated_features(sample, cfg.n_table_rows)))
        tables.append(("corr_neuron", ft.correlated_neurons(sample, cfg.n_table_rows)))
    for key, arrays in tables:
        ids, values, second = arrays
        columns[f"{key}_ids"] = pa.array(list(ids.astype(np.int32)))
        columns[f"{key}_{'values' if key == 'align' else 'pearson'}"] = pa.array(list(values.astype(np.float32)))
        columns[f"{key}_{'l1' if key == 'align' else 'cos'}"] = pa.array(list(second.astype(np.float32)))
    if sample is not None and sample.rows > 0:
        heights, centres = ft.activation_histograms(sample, cfg.plot_bins)
        columns["act_hist_heights"] = pa.array(heights, type=pa.list_(pa.int64()))
        columns["act_hist_values"] = pa.array(centres, type=pa.list_(pa.float32()))
    shares = head_shares(W_dec, spec)
    if shares is not None:
        columns["head_shares"] = pa.array(list(shares.numpy()))
    return pa.table(columns)


def _interval_slots(values: np.ndarray, where: np.ndarray, maxima: np.ndarray, n_intervals: int, per: int):
    """Per feature f and interval ``i`` of ``(i·M_f/n, (i+1)·M_f/n]``: up to ``per`` sample slots
    from it (the sample is in random key order, so the first ``per`` are random) and the share
    of the feature's sample in it. Returns ``(f, slot, interval, rank, share, n_valid)`` arrays."""
    valid = where >= 0
    n_valid = valid.sum(1)
    valid &= (maxima > 0)[:, None]
    f, j = np.nonzero(valid)  # row-major: per feature, slots in order
    m = maxima[f]
    interval = np.clip(np.ceil(values[f, j] / m * n_intervals).astype(np.int64), 1, n_intervals) - 1
    group = f.astype(np.int64) * n_intervals + interval
    order = np.argsort(group, kind="stable")
    f, j, interval, group = f[order], j[order], interval[order], group[order]
    starts = np.r_[0, np.nonzero(np.diff(group))[0] + 1]
    sizes = np.diff(np.r_[starts, len(group)])
    rank = np.arange(len(group)) - np.repeat(starts, sizes)
    share = np.repeat(sizes, sizes) / np.maximum(n_valid[f], 1)
    keep = rank < per
    return f[keep], j[keep], interval[keep], rank[keep], share[keep], n_valid[f][keep]


def _windows(rows: np.ndarray, wins: np.ndarray, flat_tokens: np.ndarray, vocab_arr: np.ndarray, left: int):
    """``(tokens, acts, centre)`` list columns of contexts centred on global ``rows`` with
    activation windows ``wins`` [m, W] (NaN outside the sequence)."""
    width = wins.shape[1]
    inside = ~np.isnan(wins)
    ids = flat_tokens[np.clip(rows[:, None] + np.arange(-left, width - left), 0, len(flat_tokens) - 1)]
    offsets = np.r_[0, np.cumsum(inside.sum(1))].astype(np.int32)
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(vocab_arr[ids[inside]], type=pa.string()))
    acts = pa.ListArray.from_arrays(pa.array(offsets), pa.array(wins[inside].astype(np.float32)))
    centre = (left - inside.argmax(1)).astype(np.int16)
    return tokens, acts, centre


def context_table(st: FeatureStats, flat_tokens: np.ndarray, vocab: list[str], cfg: DashboardConfig) -> pa.Table:
    """Every feature's top contexts (exact, by rank) and interval contexts (from its uniform
    sample), sorted by feature, built column-wise (no per-row Python)."""
    top_where, top_val, top_win = st.top.where.numpy(), st.top.value.numpy(), st.top.window.numpy()
    s_where, s_val, s_win = st.sample.where.numpy(), st.sample.value.numpy(), st.sample.window.numpy()
    maxima = st.max.numpy()
    n_int = cfg.n_intervals
    tf, tr = np.nonzero(top_where >= 0)
    sf, sj, si, srank, sshare, sn = _interval_slots(s_val, s_where, maxima, n_int, cfg.per_interval)
    m_top, m_int = len(tf), len(sf)
    feature = np.r_[tf, sf].astype(np.int32)
    is_int = np.r_[np.zeros(m_top, bool), np.ones(m_int, bool)]
    interval = np.r_[np.full(m_top, -1), si].astype(np.int16)
    rank = np.r_[tr, srank].astype(np.int16)
    order = np.lexsort((rank, interval, is_int, feature))  # feature, top first, interval, rank
    rows = np.r_[top_where[tf, tr], s_where[sf, sj]].astype(np.int64)
    wins = np.concatenate([top_win[tf, tr], s_win[sf, sj]]) if m_top + m_int else np.zeros((0, top_win.shape[2]))
    lo = np.r_[np.full(m_top, np.nan), maxima[sf] * si / n_int].astype(np.float32)
    hi = np.r_[np.full(m_top, np.nan), maxima[sf] * (si + 1) / n_int].astype(np.float32)
    share = np.r_[np.full(m_top, np.nan), sshare].astype(np.float32)
    n_sample = np.r_[np.full(m_top, -1), sn].astype(np.int32)
    value = np.r_[top_val[tf, tr], s_val[sf, sj]].astype(np.float32)
    rows, wins = rows[order], wins[order]
    tokens, acts, centre = _windows(rows, wins, flat_tokens, np.asarray(vocab, dtype=object), cfg.left)
    is_int = is_int[order]
    null = lambda a: pa.array(a[order], mask=~is_int)  # noqa: E731 - top contexts have no interval fields
    return pa.table(
        {
            "feature": pa.array(feature[order]),
            "group": pa.array(np.where(is_int, "interval", "top")),
            "interval": pa.array(interval[order]),
            "lo": null(lo),
            "hi": null(hi),
            "share": null(share),
            "sample_size": null(n_sample),
            "rank": pa.array(rank[order]),
            "value": pa.array(value[order]),
            "row": pa.array(rows),
            "centre": pa.array(centre),
            "tokens": tokens,
            "acts": acts,
        }
    )


# ---- readers (the app) ----


def has_dashboard(sae_dir: str | Path) -> bool:
    d = Path(sae_dir) / "dashboard"
    return all((d / f).is_file() for f in ("features.parquet", "contexts.parquet", "meta.json"))


def read_features(sae_dir: str | Path):
    """The per-feature table as a pandas DataFrame."""
    path = Path(sae_dir) / "dashboard" / "features.parquet"
    if not path.is_file():
        raise SaelabError(f"{Path(sae_dir)}: no dashboard records; run `saelab dashboard {Path(sae_dir)}` first")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as e:
        raise SaelabError(f"{path}: unreadable ({str(e).splitlines()[0][:100]})") from None


def read_contexts(sae_dir: str | Path, feature: int):
    """One feature's contexts (top, then intervals) as a pandas DataFrame."""
    path = Path(sae_dir) / "dashboard" / "contexts.parquet"
    try:
        table = pq.read_table(path, filters=[("feature", "=", int(feature))])
    except (pa.ArrowInvalid, OSError) as e:
        raise SaelabError(f"{path}: unreadable ({str(e).splitlines()[0][:100]})") from None
    return table.to_pandas()
