"""kill -9 of a real `saelab cache` job, then the same command again: identical manifest."""

from __future__ import annotations

import pytest

from bench.faults import cache_differences, finish, kill9, manifest_shards, start, wait_for

CONFIG = """
model: organism
hooks: [blocks.1.hook_resid_post, blocks.1.hook_mlp_out, blocks.1.attn.hook_z]
context_size: 64
n_tokens: 400000
lm_batch_size: 32
shard_batches: 2
"""


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_minus_nine_and_resume(tmp_path):
    cfg = tmp_path / "cache.yaml"
    cfg.write_text(CONFIG)
    finish(start(["cache", str(cfg), "--out", str(tmp_path / "whole")]))

    for attempt in range(3):  # kill at different moments; manifest_shards raises on a half-written manifest
        proc = start(["cache", str(cfg), "--out", str(tmp_path / "killed")])
        wait_for(proc, lambda attempt=attempt: manifest_shards(tmp_path / "killed") >= 2 + 4 * attempt)
        kill9(proc)
    finish(start(["cache", str(cfg), "--out", str(tmp_path / "killed")]))
    assert cache_differences(tmp_path / "whole", tmp_path / "killed") == []
