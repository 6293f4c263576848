"""On-disk activation caches: shards plus a manifest, written resumably, read memory-mapped.

Layout of ``cache_dir``::

    manifest.json                     spec, model fingerprint, per-hook d_in and norm
                                      statistics, shards with row counts and checksums
    shards/00000.<hook>.npy           [rows, d_in] (bf16 stored as its 16-bit pattern)
    shards/00000.<hook>.grad.npy      gradients, when harvested

Writing: a shard holds the rows of ``shard_batches`` consecutive forward passes, permuted
with a seed derived from the config and the shard index. Shard files and then the manifest
are written atomically (temporary file, then rename), so a killed job leaves a manifest
that lists only complete shards; running it again skips the token batches those shards
cover (the token stream is a pure function of the config) and writes the rest, giving the
same rows and checksums as an uninterrupted run. The manifest records a fingerprint of the
model's weights, so a cache is never finished, or read for training, with other weights.

Reading: shards are taken in a seeded random order, ``mix_shards`` at a time; each block
joins one contiguous slice of every shard of the group (sequential reads of pages of
memory-mapped ``.npy`` files, never pickled) and permutes it. Since each shard is already a
random permutation of thousands of sequences, rows adjacent in a batch come from different
sequences, and memory stays bounded by a few blocks however large the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from sae.atomic import atomic_path, file_sha256, write_json
from sae.collective import SINGLE, Collective
from sae.errors import SaelabError
from sae.store_base import (
    ActivationBatch,
    ActivationStore,
    Block,
    StoreConfig,
    batched,
    concat,
    cut,
    load_for,
    take,
    token_batches,
)

SCHEMA_VERSION = 2  # 2: per-shard norm sums (totals summed in shard order), multi-rank progress files
MANIFEST = "manifest.json"
BLOCK_ROWS = 16_384  # rows per read block (memory per block: BLOCK_ROWS x total width)


def _safe(hook: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", hook)


def _spec(cfg: StoreConfig) -> dict:
    """What determines the cache's content (not where it lives or how it is read; like the
    device, the fused forward changes the rows by float rounding only)."""
    return cfg.model_dump(exclude={"cache_dir", "device", "buffer_rows", "fused_forward"})


def model_fingerprint(model) -> str:
    """A digest of the weights: names, shapes, dtypes and a strided sample of exact values.

    Cheap on any model size and on any device (no reductions, so no device-dependent
    rounding); it tells retrained or other weights apart, but is not meant to resist
    deliberate collisions.
    """
    digest = hashlib.sha256()
    module = getattr(model, "original_model", model)
    with torch.no_grad():
        for name, p in sorted(module.state_dict().items()):
            if not torch.is_tensor(p) or not p.is_floating_point():
                continue
            flat = p.detach().flatten()
            sample = flat[:: max(1, flat.numel() // 4096)][:4096].float().cpu()
            digest.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: str) -> torch.Tensor:
    if dtype == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The array shape from a ``.npy`` header, without mapping the file; checks its length."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(f)
        offset = f.tell()
    if path.stat().st_size != offset + math.prod(shape) * dtype.itemsize:
        raise ValueError("truncated")
    return tuple(shape)


def read_manifest(cache_dir: str | Path) -> dict | None:
    path = Path(cache_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SaelabError(f"{path}: not a valid cache manifest (corrupt JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "activation_cache":
        raise SaelabError(f"{path}: not an activation-cache manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise SaelabError(
            f"{path}: cache schema version {manifest.get('schema_version')}, this saelab reads "
            f"{SCHEMA_VERSION}; rebuild the cache"
        )
    return manifest


def _check_model(root: Path, manifest: dict, fingerprint: str) -> None:
    if manifest.get("model_fingerprint") != fingerprint:
        raise SaelabError(
            f"{root} was harvested from other weights of model {manifest['model']!r} "
            "(fingerprint differs); delete it or choose another cache_dir"
        )


def _progress_files(root: Path) -> list[Path]:
    return sorted(root.glob("progress.rank*.json"))


def _finished_shards(root: Path, manifest: dict) -> dict[int, dict]:
    """Shards already written: those in the manifest and those a killed multi-rank job recorded."""
    done = {s["index"]: s for s in manifest["shards"]}
    for path in _progress_files(root):
        try:
            entries = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a torn progress file: its shards are written again
        done.update({s["index"]: s for s in entries})
    return done


def _finalise(root: Path, manifest: dict, done: dict[int, dict]) -> dict:
    """The complete manifest: shards in index order, rows and norm statistics summed in that order
    (so the figures do not depend on how many processes wrote the shards)."""
    manifest["shards"] = [done[i] for i in sorted(done)]
    manifest["rows"] = 0
    for meta in manifest["hooks"].values():
        meta["norm_sum"] = 0.0
    for shard in manifest["shards"]:
        manifest["rows"] += shard["rows"]
        for h, meta in manifest["hooks"].items():
            meta["norm_sum"] += shard["norm_sums"][h]
    for meta in manifest["hooks"].values():
        meta["mean_norm"] = meta["norm_sum"] / max(manifest["rows"], 1)
    manifest["complete"] = True
    write_json(root / MANIFEST, manifest)
    for path in _progress_files(root):
        path.unlink(missing_ok=True)
    return manifest


def write_cache(
    cfg: StoreConfig, model=None, tokenizer=None, progress: bool = True, collective: Collective = SINGLE
) -> dict:
    """Build (or finish) the cache described by ``cfg``; returns its manifest.

    A complete cache is returned as it is; its model fingerprint is checked when a model
    is given (with no model, nothing is loaded). Over several ranks the shards still to
    write are dealt out round-robin; each rank records its finished shards in
    ``progress.rank<r>.json`` and rank 0 merges them into the manifest at the end. Shard
    j always holds token batches [j·shard_batches, (j+1)·shard_batches), so the cache is
    the same whoever wrote which shard, and a killed job, rerun with any number of
    processes, writes only what is missing.
    """
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
            raise SaelabError(
                f"{root} holds a different cache (differs in {', '.join(diff)}); choose another cache_dir"
            )
        if manifest["complete"]:
            if model is not None:
                _check_model(root, manifest, model_fingerprint(model))
            return manifest
    model, tokenizer = load_for(cfg, model, tokenizer)
    harvester = Harvester(
        model, tokenizer, cfg.hooks, with_grads=cfg.with_grads, dtype=cfg.dtype, fused=cfg.fused_forward
    )
    fingerprint = model_fingerprint(model)
    if manifest is None:
        manifest = {
            "kind": "activation_cache",
            "schema_version": SCHEMA_VERSION,
            "spec": spec,
            "model": cfg.model,
            "model_fingerprint": fingerprint,
            "hooks": {h: {"d_in": harvester.d_in(h), "norm_sum": 0.0, "mean_norm": 0.0} for h in harvester.hooks},
            "dtype": cfg.dtype,
            "with_grads": cfg.with_grads,
            "rows": 0,
            "shards": [],
            "complete": False,
        }
    else:
        _check_model(root, manifest, fingerprint)
    if collective.rank == 0:
        (root / "shards").mkdir(parents=True, exist_ok=True)
        for stale in (root / "shards").glob(".*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
    collective.barrier()

    done = _finished_shards(root, manifest)
    n_batches = math.ceil(cfg.n_sequences / cfg.lm_batch_size)
    n_shards = math.ceil(n_batches / cfg.shard_batches)
    mine = [j for j in range(n_shards) if j not in done][collective.rank :: collective.world_size]
    written: list[dict] = []

    def record(entry: dict) -> None:
        if collective.distributed:
            written.append(entry)
            write_json(root / f"progress.rank{collective.rank}.json", written, indent=None)
        else:
            manifest["shards"] = sorted([*manifest["shards"], entry], key=lambda s: s["index"])
            write_json(root / MANIFEST, manifest)

    if mine:
        per_batch = cfg.lm_batch_size * cfg.context_size
        wanted = set(mine)
        stream = token_batches(cfg, tokenizer, skip_batches=mine[0] * cfg.shard_batches)
        with token_bar(len(mine) * cfg.shard_batches * per_batch, "cache", progress and collective.rank == 0) as bar:
            blocks: list[Block] = []
            for i, tokens in enumerate(stream, start=mine[0] * cfg.shard_batches):
                shard = i // cfg.shard_batches
                if shard > mine[-1]:
                    break
                if shard not in wanted:
                    continue
                blocks.append(harvester(tokens).block())
                bar.update(tokens.numel())
                if i % cfg.shard_batches == cfg.shard_batches - 1:
                    record(_write_shard(root, shard, concat(blocks), cfg))
                    blocks = []
            if blocks:  # the text ran out inside this rank's last shard
                record(_write_shard(root, (i // cfg.shard_batches), concat(blocks), cfg))
    collective.barrier()
    if collective.rank == 0:
        _finalise(root, manifest, _finished_shards(root, manifest))
    collective.barrier()
    return read_manifest(root)


def _write_shard(root: Path, index: int, rows: Block, cfg: StoreConfig) -> dict:
    """Shard ``index`` (its rows permuted by a seed of the config and the index); its manifest entry."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
    n = next(iter(rows.values())).shape[0]
    rows = take(rows, torch.randperm(n, generator=gen))
    files = {}
    for key, tensor in rows.items():
        name = f"shards/{index:05d}.{_safe(key)}.npy"
        with atomic_path(root / name) as tmp, open(tmp, "wb") as f:
            np.lib.format.write_array(f, _to_numpy(tensor), allow_pickle=False)
        files[key] = {"path": name, "sha256": file_sha256(root / name)}
    norm_sums = {h: float(rows[h].float().norm(dim=-1).sum()) for h in cfg.hooks}
    return {"index": index, "rows": n, "files": files, "norm_sums": norm_sums}


class CachedStore(ActivationStore):
    """Reads a complete cache; see the module docstring for the read order."""

    def __init__(self, cache_dir: str | Path, verify: bool = True, mix_shards: int = 8):
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
        self.mix_shards = max(1, mix_shards)
        self.rows = manifest["rows"]
        self._check(verify)

    def _check(self, verify: bool) -> None:
        for shard in self.manifest["shards"]:
            for key, meta in shard["files"].items():
                path = self.root / meta["path"]
                if not path.is_file():
                    raise SaelabError(f"{self.root}: shard file {meta['path']} is missing")
                try:
                    shape = _npy_shape(path)
                except (ValueError, OSError, SyntaxError):
                    raise SaelabError(f"{self.root}: shard file {meta['path']} is not a valid array") from None
                expected = (shard["rows"], self.manifest["hooks"][key.removesuffix(".grad")]["d_in"])
                if shape != expected:
                    raise SaelabError(
                        f"{self.root}: shard file {meta['path']} disagrees with the manifest "
                        f"(shape {shape}, expected {expected})"
                    )
                if verify and file_sha256(path) != meta["sha256"]:
                    raise SaelabError(f"{self.root}: shard file {meta['path']} is corrupt (checksum mismatch)")

    def d_in(self, hook: str) -> int:
        return self.manifest["hooks"][hook]["d_in"]

    def norm_stats(self, hook: str) -> float:
        return self.manifest["hooks"][hook]["norm_sum"] / max(self.rows, 1)

    def count_rows(self) -> int:
        return self.rows

    def _plan(self) -> Iterator[list[tuple[dict, int, int]]]:
        """Blocks, each a list of ``(shard, lo, hi)`` slices, one per shard of a group."""
        gen = torch.Generator().manual_seed(self.seed + 7919)
        shards = [self.manifest["shards"][i] for i in torch.randperm(len(self.manifest["shards"]), generator=gen)]
        for start in range(0, len(shards), self.mix_shards):
            group = shards[start : start + self.mix_shards]
            steps = max(1, math.ceil(sum(s["rows"] for s in group) / BLOCK_ROWS))
            sizes = [math.ceil(s["rows"] / steps) for s in group]
            for j in range(steps):
                yield [
                    (s, min(j * k, s["rows"]), min((j + 1) * k, s["rows"])) for s, k in zip(group, sizes, strict=True)
                ]

    def _blocks(self, skip_rows: int) -> Iterator[Block]:
        """Permuted blocks after ``skip_rows`` rows; blocks wholly skipped are not read."""
        keys = list(self.manifest["shards"][0]["files"]) if self.manifest["shards"] else []
        dtype = self.manifest["dtype"]
        maps: dict[tuple[int, str], np.ndarray] = {}
        for number, plan in enumerate(self._plan()):
            n = sum(hi - lo for _, lo, hi in plan)
            if skip_rows >= n:
                skip_rows -= n
                continue
            wanted = {(s["index"], key) for s, _, _ in plan for key in keys}
            for stale in set(maps) - wanted:  # keep only the current group's files mapped
                del maps[stale]
            data = {}
            for key in keys:
                parts = []
                for s, lo, hi in plan:
                    if (s["index"], key) not in maps:
                        maps[(s["index"], key)] = np.load(
                            self.root / s["files"][key]["path"], mmap_mode="r", allow_pickle=False
                        )
                    parts.append(maps[(s["index"], key)][lo:hi])
                data[key] = _from_numpy(np.concatenate(parts), dtype)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + 104_729 + number))
            yield cut(take(data, perm), skip_rows, n)
            skip_rows = 0

    def batches(self, batch_size: int, skip_rows: int = 0) -> Iterator[ActivationBatch]:
        return batched(self._blocks(skip_rows), batch_size, self.hooks, self.with_grads)
