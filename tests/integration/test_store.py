"""The activation store: shuffling, streaming == cached, resumable caches, bounded reads."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from sae.cache import CachedStore, write_cache
from sae.errors import SaelabError
from sae.store import StoreConfig, open_store

HOOKS = ["blocks.1.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.1.attn.hook_z"]


def _cfg(**kw):
    base = {
        "hooks": HOOKS,
        "n_tokens": 12_000,
        "context_size": 32,
        "lm_batch_size": 16,
        "buffer_rows": 2048,
        "shard_batches": 3,
    }
    return StoreConfig(**{**base, **kw})


def _sorted_rows(batches, hook):
    rows = torch.cat([b.acts[hook] for b in batches])
    order = sorted(range(len(rows)), key=lambda i: tuple(rows[i].tolist()))
    return rows[order]


def test_streaming_and_cached_give_the_same_multiset(organism, tmp_path):
    model, tok = organism
    streamed = list(open_store(_cfg(), model, tok, progress=False).batches(500))
    cached = list(open_store(_cfg(cache_dir=str(tmp_path / "c")), model, tok, progress=False).batches(500))
    for hook in HOOKS:
        torch.testing.assert_close(_sorted_rows(streamed, hook), _sorted_rows(cached, hook), atol=0, rtol=0)
    assert all(len(b) == 500 for b in streamed[:-1])


def test_rows_stay_aligned_across_hooks(organism, tmp_path):
    """Row i of every hook is the same token: resid_post = resid_mid + mlp_out."""
    model, tok = organism
    hooks = ["blocks.1.hook_resid_mid", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    for cache_dir in (None, str(tmp_path / "c")):
        store = open_store(_cfg(hooks=hooks, cache_dir=cache_dir), model, tok, progress=False)
        batch = next(store.batches(256))
        torch.testing.assert_close(
            batch.acts[hooks[0]] + batch.acts[hooks[1]], batch.acts[hooks[2]], atol=1e-4, rtol=1e-4
        )


def test_mixing_buffer_emits_every_row_once_well_mixed():
    """On synthetic rows labelled by sequence: a permutation of the input, adjacent rows from
    different sequences about as often as uniform sampling from the buffer would give."""
    from sae.store import mix

    seqs, per = 400, 50
    ids = torch.arange(seqs).repeat_interleave(per)
    blocks = [{"a": ids[i : i + 700, None].float(), "b": ids[i : i + 700, None] * 2} for i in range(0, len(ids), 700)]
    out = list(mix(iter(blocks), capacity=8192, generator=torch.Generator().manual_seed(0)))
    a = torch.cat([o["a"] for o in out])[:, 0].long()
    assert torch.equal(torch.cat([o["b"] for o in out])[:, 0], a * 2)  # rows stay aligned across keys
    assert torch.equal(a.sort().values, ids)  # each row exactly once
    same = float((a[1:] == a[:-1]).float().mean())
    assert same < 2.5 / (8192 / per), same  # unmixed would give 49/50


@pytest.mark.parametrize("cached", [False, True])
def test_adjacent_rows_come_from_different_sequences(organism, tmp_path, cached):
    """A statistical test: rows adjacent in a batch share a sequence about as often as rows
    drawn at random would, not the (context-2)/(context-1) of unshuffled rows."""
    from sae.harvest import Harvester
    from sae.store import token_batches

    model, tok = organism
    hook = "blocks.1.hook_resid_post"  # depends on the whole prefix: identifies (sequence, position)
    cfg = _cfg(hooks=[hook], n_tokens=20_000, buffer_rows=16_384, cache_dir=str(tmp_path / "c") if cached else None)
    store = open_store(cfg, model, tok, progress=False)
    # Label every row with its sequence through the unshuffled stream; rows whose values
    # occur in several sequences (identical prefixes) are left out of the count.
    harvester = Harvester(model, tok, cfg.hooks)
    owners: dict[bytes, set[int]] = {}
    seq_rows: list[int] = []
    for tokens in token_batches(cfg, tok):
        got = harvester(tokens)
        for row, (r, _) in zip(got.acts[hook], got.positions.tolist(), strict=True):
            owners.setdefault(row.numpy().tobytes(), set()).add(len(seq_rows) + r)
        seq_rows += torch.bincount(got.positions[:, 0], minlength=tokens.shape[0]).tolist()
    same = total = 0
    for batch in store.batches(512):
        ids = [owners[r.numpy().tobytes()] for r in batch.acts[hook]]
        for a, b in itertools.pairwise(ids):
            if len(a) == 1 and len(b) == 1:
                same += a == b
                total += 1
    p = torch.tensor(seq_rows, dtype=torch.float64) / sum(seq_rows)
    expected = float((p**2).sum())  # two rows drawn at random share a sequence
    se = (expected * (1 - expected) / total) ** 0.5
    assert total > 15_000
    # A mixing buffer (or a group of shards) holds a share of the sequences, so allow 2x.
    assert same / total <= 2 * expected + 4 * se, (same / total, expected)


def test_skip_rows_resumes_exactly(organism, tmp_path):
    model, tok = organism
    for cache_dir in (None, str(tmp_path / "c")):
        store = open_store(_cfg(cache_dir=cache_dir), model, tok, progress=False)
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
    with pytest.raises(SaelabError, match=r"holds a different cache .*seed"):
        write_cache(cfg.model_copy(update={"seed": 9}), model, tok, progress=False)
    shard = tmp_path / "c" / manifest["shards"][0]["files"][HOOKS[0]]["path"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(SaelabError, match=r"corrupt \(checksum mismatch\)"):
        CachedStore(tmp_path / "c")
    shard.write_bytes(bytes(data[:-64]))
    with pytest.raises(SaelabError, match=r"disagrees with the manifest|not a valid array"):
        CachedStore(tmp_path / "c")


def test_norm_statistics(organism, tmp_path):
    model, tok = organism
    store = open_store(_cfg(cache_dir=str(tmp_path / "c")), model, tok, progress=False)
    rows = torch.cat([b.acts[HOOKS[0]] for b in store.batches(1000)])
    assert store.norm_stats(HOOKS[0]) == pytest.approx(float(rows.norm(dim=-1).mean()), rel=1e-4)
    streaming = open_store(_cfg(), model, tok, progress=False)
    assert streaming.norm_stats(HOOKS[0]) == pytest.approx(store.norm_stats(HOOKS[0]), rel=0.1)


def test_gradient_rows_travel_with_activations(organism, tmp_path):
    model, tok = organism
    cfg = _cfg(hooks=["blocks.1.hook_resid_post"], n_tokens=3000, with_grads=True, cache_dir=str(tmp_path / "g"))
    batch = next(open_store(cfg, model, tok, progress=False).batches(128))
    assert batch.grads["blocks.1.hook_resid_post"].shape == (128, model.cfg.d_model)
    assert batch.grads["blocks.1.hook_resid_post"].abs().sum() > 0


def test_store_refuses_a_context_longer_than_the_model(organism):
    model, tok = organism
    with pytest.raises(SaelabError, match="longer than the model's context"):
        open_store(_cfg(context_size=4096), model, tok)
