"""The comparisons behind the kill tests and the soak (bench/faults.py) do see differences."""

from __future__ import annotations

import json
import shutil

from bad_files import saved_sae

from bench.faults import cache_differences, training_differences


def test_training_differences(tmp_path):
    saved_sae(tmp_path / "a" / "topk")
    shutil.copytree(tmp_path / "a", tmp_path / "same")
    assert training_differences(tmp_path / "a", tmp_path / "same") == []
    saved_sae(tmp_path / "b" / "topk", k=5)  # same tensors, other config: identical weights
    assert training_differences(tmp_path / "a", tmp_path / "b") == []
    from safetensors.torch import load_file, save_file

    path = tmp_path / "b" / "topk" / "sae_weights.safetensors"
    tensors = load_file(str(path))
    tensors["b_dec"][3] = tensors["b_dec"][3] + 1e-7  # the smallest change is a difference
    save_file(tensors, str(path))
    assert training_differences(tmp_path / "a", tmp_path / "b") == ["topk/sae_weights.safetensors: b_dec differs"]
    path.unlink()
    assert training_differences(tmp_path / "a", tmp_path / "b") == ["topk/sae_weights.safetensors: missing"]


def test_cache_differences(small_cache, tmp_path):
    shutil.copytree(small_cache, tmp_path / "c")
    assert cache_differences(small_cache, tmp_path / "c") == []
    shard = tmp_path / "c" / "shards" / "00001.blocks.1.hook_resid_post.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    assert cache_differences(small_cache, tmp_path / "c") == [
        "shards/00001.blocks.1.hook_resid_post.npy: bytes disagree with the manifest"
    ]
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    manifest["complete"] = False
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(manifest))
    assert cache_differences(small_cache, tmp_path / "c") == ["resumed cache is not complete"]
