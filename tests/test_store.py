"""The activation store: shuffling, streaming == cached, resumable caches, bounded reads."""

from __future__ import annotations

import json

import pytest
import torch

from sae.cache import CachedStore, write_cache
from sae.errors import SaelabError
from sae.store import ActivationStore, StoreConfig

HOOKS = ["blocks.1.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.1.attn.hook_z"]


def _cfg(**kw):
    base = dict(hooks=HOOKS, n_tokens=12_000, context_size=32, lm_batch_size=16, buffer_rows=2048, shard_batches=3)
    return StoreConfig(**{**base, **kw})


def _sorted_rows(batches, hook):
    rows = torch.cat([b.acts[hook] for b in batches])
    order = sorted(range(len(rows)), key=lambda i: tuple(rows[i].tolist()))
    return rows[order]


def test_streaming_and_cached_give_the_same_multiset(organism, tmp_path):
    model, tok = organism
    streamed = list(ActivationStore.from_config(_cfg(), model, tok, progress=False).batches(500))
    cached = list(ActivationStore.from_config(_cfg(cache_dir=str(tmp_path / "c")), model, tok,
                                              progress=False).batches(500))
    for hook in HOOKS:
        torch.testing.assert_close(_sorted_rows(streamed, hook), _sorted_rows(cached, hook), atol=0, rtol=0)
    assert all(len(b) == 500 for b in streamed[:-1])


def test_rows_stay_aligned_across_hooks(organism, tmp_path):
    """Row i of every hook is the same token: resid_post = resid_mid + mlp_out."""
    model, tok = organism
    hooks = ["blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    for cache_dir in (None, str(tmp_path / "c")):
        store = ActivationStore.from_config(_cfg(hooks=hooks, cache_dir=cache_dir), model, tok, progress=False)
        batch = next(store.batches(256))
        torch.testing.assert_close(batch.acts[hooks[0]] + batch.acts[hooks[1]], batch.acts[hooks[2]],
                                   atol=1e-4, rtol=1e-4)


def test_adjacent_rows_come_from_different_sequences(organism):
    """A statistical test: adjacent rows share a sequence no more often than random sampling would."""
    model, tok = organism
    cfg = _cfg(hooks=["blocks.0.hook_resid_pre"], n_tokens=20_000, buffer_rows=16_384)
    store = ActivationStore.from_config(cfg, model, tok, progress=False)
    # Recover each row's sequence through a lookup of the unshuffled stream (resid_pre of
    # layer 0 is embedding + position: unique per token and position).
    from sae.harvest import Harvester
    from sae.store import token_batches

    harvester = Harvester(model, tok, cfg.hooks)
    key_to_seq = {}
    seq_id = 0
    for tokens in token_batches(cfg, tok):
        got = harvester(tokens)
        for row, (r, _) in zip(got.acts[cfg.hooks[0]], got.positions.tolist()):
            key_to_seq[tuple(row[:4].tolist())] = seq_id + r
        seq_id += tokens.shape[0]
    same = total = 0
    for batch in store.batches(512):
        ids = [key_to_seq[tuple(r[:4].tolist())] for r in batch.acts[cfg.hooks[0]]]
        same += sum(a == b for a, b in zip(ids, ids[1:]))
        total += len(ids) - 1
    n_seqs = seq_id
    expected = 1.0 / n_seqs  # i.i.d. rows: the chance two draws hit the same sequence
    observed = same / total
    # binomial standard error; unshuffled data would give ~ (context-2)/(context-1) ≈ 0.97
    se = (expected * (1 - expected) / total) ** 0.5
    assert observed <= expected + 4 * se + 5e-3, (observed, expected)


def test_skip_rows_resumes_exactly(organism, tmp_path):
    model, tok = organism
    for cache_dir in (None, str(tmp_path / "c")):
        store = ActivationStore.from_config(_cfg(cache_dir=cache_dir), model, tok, progress=False)
        full = torch.cat([b.acts[HOOKS[0]] for b in store.batches(300)])
        rest = torch.cat([b.acts[HOOKS[0]] for b in store.batches(300, skip_rows=1234)])
        torch.testing.assert_close(rest, full[1234:], atol=0, rtol=0)


def test_interrupted_cache_resumes_to_identical_manifest(organism, tmp_path, monkeypatch):
    model, tok = organism
    whole = write_cache(_cfg(cache_dir=str(tmp_path / "whole")), model, tok, progress=False)

    import sae.cache as cache

    real = cache._write_shard
    calls = {"n": 0}

    def crash_after_two(*args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the job dies mid-way
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "_write_shard", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        write_cache(_cfg(cache_dir=str(tmp_path / "part")), model, tok, progress=False)
    partial = json.loads((tmp_path / "part" / "manifest.json").read_text())
    assert not partial["complete"] and len(partial["shards"]) == 2
    monkeypatch.setattr(cache, "_write_shard", real)
    resumed = write_cache(_cfg(cache_dir=str(tmp_path / "part")), model, tok, progress=False)
    assert resumed["rows"] == whole["rows"]
    assert [s["files"] for s in resumed["shards"]] == [s["files"] for s in whole["shards"]]


def test_cache_refuses_another_spec_and_detects_corruption(organism, tmp_path):
    model, tok = organism
    cfg = _cfg(cache_dir=str(tmp_path / "c"))
    manifest = write_cache(cfg, model, tok, progress=False)
    with pytest.raises(SaelabError, match="holds a different cache .*seed"):
        write_cache(cfg.model_copy(update={"seed": 9}), model, tok, progress=False)
    shard = tmp_path / "c" / manifest["shards"][0]["files"][HOOKS[0]]["path"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(SaelabError, match="corrupt \\(checksum mismatch\\)"):
        CachedStore(tmp_path / "c")
    shard.write_bytes(bytes(data[:-64]))
    with pytest.raises(SaelabError, match="disagrees with the manifest|not a valid array"):
        CachedStore(tmp_path / "c")


def test_norm_statistics(organism, tmp_path):
    model, tok = organism
    store = ActivationStore.from_config(_cfg(cache_dir=str(tmp_path / "c")), model, tok, progress=False)
    rows = torch.cat([b.acts[HOOKS[0]] for b in store.batches(1000)])
    assert store.norm_stats(HOOKS[0]) == pytest.approx(float(rows.norm(dim=-1).mean()), rel=1e-4)
    streaming = ActivationStore.from_config(_cfg(), model, tok, progress=False)
    assert streaming.norm_stats(HOOKS[0]) == pytest.approx(store.norm_stats(HOOKS[0]), rel=0.1)


def test_gradient_rows_travel_with_activations(organism, tmp_path):
    model, tok = organism
    cfg = _cfg(hooks=["blocks.1.hook_resid_post"], n_tokens=3000, with_grads=True, cache_dir=str(tmp_path / "g"))
    batch = next(ActivationStore.from_config(cfg, model, tok, progress=False).batches(128))
    assert batch.grads["blocks.1.hook_resid_post"].shape == (128, model.cfg.d_model)
    assert batch.grads["blocks.1.hook_resid_post"].abs().sum() > 0


def test_store_refuses_a_context_longer_than_the_model(organism):
    model, tok = organism
    with pytest.raises(SaelabError, match="longer than the model's context"):
        ActivationStore.from_config(_cfg(context_size=4096), model, tok)
