"""On-disk activation caches: shards plus a manifest, written resumably, read memory-mapped.

Layout of ``cache_dir``::

    manifest.json                     spec, per-hook d_in and norm sums, shards with checksums
    shards/00000.<hook>.npy           [rows, d_in] (bf16 stored as its uint16 bit pattern)
    shards/00000.<hook>.grad.npy      gradients, when harvested

A shard holds the rows of ``shard_batches`` consecutive forward passes, permuted with a
seed derived from the config and the shard index. Shards and then the manifest are
written atomically, so a killed job leaves a manifest that lists only complete shards;
running it again skips the token batches those shards cover (the stream is a pure
function of the config) and writes the rest, giving the same rows and checksums as an
uninterrupted run. Reads are memory-mapped ``.npy`` files (never pickled), so a cache
larger than RAM streams with bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from sae.atomic import atomic_path, write_json
from sae.errors import SaelabError
from sae.store import ActivationBatch, ActivationStore, StoreConfig, _Rows, batched, load_for, token_batches

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def _safe(hook: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", hook)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _spec(cfg: StoreConfig) -> dict:
    """What determines the cache's content (not where it lives)."""
    return cfg.model_dump(exclude={"cache_dir", "device", "buffer_rows"})


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def read_manifest(cache_dir: str | Path) -> dict | None:
    path = Path(cache_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SaelabError(f"{path}: not a valid cache manifest (corrupt JSON)") from None
    if manifest.get("kind") != "activation_cache":
        raise SaelabError(f"{path}: not an activation-cache manifest")
    return manifest


def write_cache(cfg: StoreConfig, model=None, tokenizer=None, progress: bool = True) -> dict:
    """Build (or finish) the cache described by ``cfg``; returns its manifest."""
    from sae.harvest import Harvester
    from sae.progress import token_bar

    if cfg.cache_dir is None:
        raise SaelabError("cache_dir is not set")
    root = Path(cfg.cache_dir)
    manifest = read_manifest(root)
    spec = _spec(cfg)
    if manifest is not None:
        if manifest["spec"] != spec:
            diff = sorted(k for k in spec if manifest["spec"].get(k) != spec[k])
            raise SaelabError(f"{root} holds a different cache (differs in {', '.join(diff)}); "
                              "choose another cache_dir")
        if manifest["complete"]:
            return manifest
    model, tokenizer = load_for(cfg, model, tokenizer)
    harvester = Harvester(model, tokenizer, cfg.hooks, with_grads=cfg.with_grads, dtype=cfg.dtype)
    if manifest is None:
        manifest = {
            "kind": "activation_cache", "schema_version": SCHEMA_VERSION, "spec": spec,
            "model": cfg.model, "hooks": {h: {"d_in": harvester.d_in(h), "norm_sum": 0.0} for h in harvester.hooks},
            "dtype": cfg.dtype, "rows": 0, "shards": [], "complete": False,
        }
    (root / "shards").mkdir(parents=True, exist_ok=True)
    for stale in (root / "shards").glob(".*.tmp"):  # left by a killed writer
        stale.unlink(missing_ok=True)

    done = len(manifest["shards"])
    total = cfg.n_sequences * cfg.context_size
    stream = token_batches(cfg, tokenizer, skip_batches=done * cfg.shard_batches)
    with token_bar(total, "cache", progress, initial=min(total, done * cfg.shard_batches * cfg.lm_batch_size
                                                          * cfg.context_size)) as bar:
        while True:
            parts: dict[str, list[torch.Tensor]] = {}
            for _, tokens in zip(range(cfg.shard_batches), stream):
                got = harvester(tokens)
                for h in harvester.hooks:
                    parts.setdefault(h, []).append(got.acts[h])
                    if got.grads is not None:
                        parts.setdefault(f"{h}.grad", []).append(got.grads[h])
                bar.update(tokens.numel())
            if not parts:
                break
            _write_shard(root, manifest, len(manifest["shards"]), _Rows(parts), cfg)
    manifest["complete"] = True
    write_json(root / MANIFEST, manifest)
    return manifest


def _write_shard(root: Path, manifest: dict, index: int, rows: _Rows, cfg: StoreConfig) -> None:
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
    rows = rows.take(torch.randperm(len(rows), generator=gen))
    files = {}
    for key, tensor in rows.data.items():
        name = f"shards/{index:05d}.{_safe(key)}.npy"
        with atomic_path(root / name) as tmp:
            with open(tmp, "wb") as f:
                np.lib.format.write_array(f, _to_numpy(tensor), allow_pickle=False)
        files[key] = {"path": name, "sha256": _sha256(root / name)}
    for h in manifest["hooks"]:
        manifest["hooks"][h]["norm_sum"] += float(rows.data[h].float().norm(dim=-1).sum())
    manifest["shards"].append({"index": index, "rows": len(rows), "files": files})
    manifest["rows"] += len(rows)
    write_json(root / MANIFEST, manifest)


class CachedStore(ActivationStore):
    """Reads a complete cache; batches mix rows across ``mix_shards`` shards at a time."""

    def __init__(self, cache_dir: str | Path, verify: bool = True, mix_shards: int = 4):
        self.root = Path(cache_dir)
        manifest = read_manifest(self.root)
        if manifest is None:
            raise SaelabError(f"{self.root}: no activation cache here (no {MANIFEST})")
        if not manifest["complete"]:
            raise SaelabError(f"{self.root}: the cache is incomplete; run 'saelab cache' again to finish it")
        self.manifest = manifest
        self.hooks = list(manifest["hooks"])
        self.with_grads = bool(manifest["spec"].get("with_grads"))
        self.seed = manifest["spec"]["seed"]
        self.mix_shards = mix_shards
        self.rows = manifest["rows"]
        self._arrays: dict[tuple[int, str], np.ndarray] = {}
        self._check(verify)

    def _check(self, verify: bool) -> None:
        for shard in self.manifest["shards"]:
            for key, meta in shard["files"].items():
                path = self.root / meta["path"]
                if not path.is_file():
                    raise SaelabError(f"{self.root}: shard file {meta['path']} is missing")
                try:
                    arr = np.load(path, mmap_mode="r", allow_pickle=False)
                except ValueError:
                    raise SaelabError(f"{self.root}: shard file {meta['path']} is not a valid array") from None
                hook = key.removesuffix(".grad")
                if arr.shape != (shard["rows"], self.manifest["hooks"][hook]["d_in"]):
                    raise SaelabError(f"{self.root}: shard file {meta['path']} disagrees with the manifest "
                                      f"(shape {arr.shape}, expected {(shard['rows'], self.manifest['hooks'][hook]['d_in'])})")
                if verify and _sha256(path) != meta["sha256"]:
                    raise SaelabError(f"{self.root}: shard file {meta['path']} is corrupt (checksum mismatch)")
                self._arrays[(shard["index"], key)] = arr

    def d_in(self, hook: str) -> int:
        return self.manifest["hooks"][hook]["d_in"]

    def norm_stats(self, hook: str) -> float:
        return self.manifest["hooks"][hook]["norm_sum"] / max(self.rows, 1)

    def count_rows(self) -> int:
        return self.rows

    def _blocks(self) -> Iterator[_Rows]:
        gen = torch.Generator().manual_seed(self.seed + 7919)
        shards = [self.manifest["shards"][i] for i in torch.randperm(len(self.manifest["shards"]), generator=gen)]
        keys = list(shards[0]["files"]) if shards else []
        dtype = self.manifest["dtype"]
        for start in range(0, len(shards), self.mix_shards):
            group = shards[start : start + self.mix_shards]
            sizes = [s["rows"] for s in group]
            offsets = np.cumsum([0] + sizes)
            perm = torch.randperm(int(offsets[-1]), generator=gen).numpy()
            chunk = 8192
            for lo in range(0, len(perm), chunk):
                picks = perm[lo : lo + chunk]
                which = np.searchsorted(offsets, picks, side="right") - 1
                data = {}
                for key in keys:
                    out = np.empty((len(picks), self._arrays[(group[0]["index"], key)].shape[1]),
                                   dtype=self._arrays[(group[0]["index"], key)].dtype)
                    for g, shard in enumerate(group):
                        sel = which == g
                        if sel.any():
                            local = picks[sel] - offsets[g]
                            order = np.argsort(local)
                            rows = self._arrays[(shard["index"], key)][local[order]]
                            dest = np.flatnonzero(sel)[order]
                            out[dest] = rows
                    data[key] = _from_numpy(out, dtype)
                block = _Rows({})
                block.data = data
                yield block

    def batches(self, batch_size: int, skip_rows: int = 0) -> Iterator[ActivationBatch]:
        return batched(self._blocks(), batch_size, self.hooks, self.with_grads, skip_rows)
