"""``load_sae``: an SAE from a directory, from ``hf://org/repo/path[@revision]``, or by release and id.

    load_sae("runs/topk/topk")                                  # a local SAELens-layout directory
    load_sae("hf://jbloom/GPT2-Small-SAEs-Reformatted/blocks.8.hook_resid_pre")
    load_sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre")    # a published release (sae.releases)
    load_sae("org/repo", "folder")                              # an unlisted hub repo, as SAELens allows

Files come through ``huggingface_hub`` and its cache (``HF_HUB_CACHE``/``HF_HOME``,
``HF_HUB_OFFLINE``, revisions): files already cached are used without touching the
network; otherwise the hub is probed first, so no network and no cache is one line naming
the repository and the ways to provide it instead of a hang in retries. Every SAELens
architecture a registered family claims loads (``sae.reading.sae_from_parts``); the SAE
carries its hook, model name and the model processing it needs (``sae.processing``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from sae.architectures import SparseAutoencoder
from sae.errors import ConfigError
from sae.reading import CFG, EXTRA, SPARSITY, WEIGHTS, _read_tensors, read_cfg_file, read_sae_dir, sae_from_parts

HF_PREFIX = "hf://"


@dataclass(frozen=True)
class HubFolder:
    """A folder of a Hugging Face model repository (``folder`` "" is its root)."""

    repo_id: str
    folder: str = ""
    revision: str | None = None

    def file(self, name: str) -> str:
        return f"{self.folder}/{name}" if self.folder else name

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HF_PREFIX}{self.repo_id}{'/' + self.folder if self.folder else ''}{rev}"


def parse_hf(url: str) -> HubFolder:
    """``hf://org/repo/path/in/repo[@revision]`` → its parts (one line when malformed)."""
    body = url[len(HF_PREFIX) :]
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
        if not revision:
            raise ConfigError(f"{url}: empty revision after '@'")
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2:
        raise ConfigError(f"{url}: expected hf://org/repo[/path][@revision]")
    return HubFolder("/".join(parts[:2]), "/".join(parts[2:]), revision)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str:
    """The hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def fetch(where: HubFolder, names: list[str], optional: tuple[str, ...] = ()) -> dict[str, Path]:
    """Local paths of ``names`` (required) and ``optional`` files of ``where``, from the cache
    when they are there, else downloaded; a missing optional file is left out."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    from sae.model import hub_reachable

    cache = _cache_dir()
    out: dict[str, Path] = {}
    wanted = [(n, True) for n in names] + [(n, False) for n in optional]
    pending = []
    for name, required in wanted:
        hit = try_to_load_from_cache(where.repo_id, where.file(name), cache_dir=cache, revision=where.revision)
        if isinstance(hit, str):
            out[name] = Path(hit)
        elif hit is None:  # unknown to the cache
            pending.append((name, required))
        elif required:  # the cache records that the repository has no such file
            raise ConfigError(f"{where}: the repository has no {where.file(name)}")
    missing = [n for n, required in pending if required]
    if pending and not hub_reachable():  # HF_HUB_OFFLINE counts as unreachable
        if not missing:
            return out  # only optional files (a sparsity file) are unknown: go without them
        raise ConfigError(
            f"{where}: {', '.join(missing)} not in the Hugging Face cache ({cache}) and the hub is "
            f"{'disabled (HF_HUB_OFFLINE)' if _offline() else 'unreachable'}; download it once with network access, "
            "point HF_HUB_CACHE at a cache that holds it, or pass a local SAE directory"
        )
    for name, required in pending:
        try:
            out[name] = Path(hf_hub_download(where.repo_id, where.file(name), revision=where.revision, cache_dir=cache))
        except EntryNotFoundError:
            if required:
                raise ConfigError(f"{where}: the repository has no {where.file(name)}") from None
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
            if not required:
                continue
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{where}: cannot download {where.file(name)}: {first}") from None
    return out


def _read_npz(path: Path) -> dict[str, torch.Tensor]:
    """Gemma Scope's ``params.npz`` (``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``, ``threshold``),
    read without pickle (``allow_pickle=False``)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {("W_" + k[2:] if k.startswith("w_") else k): torch.from_numpy(data[k].copy()) for k in data.files}
    except (ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a readable params.npz ({str(e).splitlines()[0][:100]})") from None


def gemma_scope_cfg(repo_id: str, folder: str) -> dict:
    """The cfg.json SAELens' ``get_gemma_2_config_from_hf`` derives for a Gemma Scope folder
    (``layer_<L>/width_<W>/average_l0_<N>`` of ``google/gemma-scope-<size>-pt-<res|mlp|att>``)."""
    import re

    widths = {"4k": 4096, "16k": 16384, "32k": 32768, "65k": 65536, "131k": 131072, "262k": 262144, "524k": 524288}
    widths["1m"] = 1048576
    width = re.search(r"width_(\w+?)(?:/|$)", folder)
    layer = re.search(r"layer_(\d+)", folder)
    size = next((s for s in ("2b-it", "9b-it", "27b-it", "2b", "9b", "27b") if s in repo_id), None)
    if width is None or width.group(1) not in widths or layer is None or size is None:
        raise ConfigError(f"{repo_id}/{folder}: not a Gemma Scope folder (layer_<L>/width_<W>/...)")
    d_in = {"2b": 2304, "9b": 3584, "27b": 4608}[size.split("-")[0]]
    L = int(layer.group(1))
    if "res" in repo_id:
        hook = f"blocks.{L}.hook_resid_post"
    elif "mlp" in repo_id:
        hook = f"blocks.{L}.hook_mlp_out"
    elif "att" in repo_id:
        hook, d_in = f"blocks.{L}.attn.hook_z", {"2b": 2048, "9b": 4096, "27b": 4608}[size.split("-")[0]]
    else:
        raise ConfigError(f"{repo_id}: not a Gemma Scope repository (res, mlp or att)")
    return {
        "architecture": "jumprelu",
        "d_in": d_in,
        "d_sae": widths[width.group(1)],
        "dtype": "float32",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "metadata": {
            "sae_lens_version": "6.0.0",
            "model_name": f"gemma-2-{size}",
            "hook_name": hook,
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": 1024,
        },
    }


def _from_hub(where: HubFolder, conversion: str, overrides: dict, device, dtype, norm_scaling_factor=None):
    if conversion == "gemma_2":
        files = fetch(where, ["params.npz"])
        cfg = gemma_scope_cfg(where.repo_id, where.folder)
        tensors = _read_npz(files["params.npz"])
        scale = tensors.pop("scaling_factor", None)
        if scale is not None and not torch.allclose(scale, torch.ones_like(scale)):
            raise ConfigError(f"{where}: a fine-tuning scaling factor, which saelab does not apply")
        sparsity = None
    elif conversion == "sae_lens":
        files = fetch(where, [CFG, WEIGHTS], optional=(SPARSITY,))
        cfg = read_cfg_file(files[CFG])
        tensors = _read_tensors(files[WEIGHTS])
        sparsity = _read_tensors(files[SPARSITY]).get("sparsity") if SPARSITY in files else None
    else:
        raise ConfigError(
            f"{where}: SAEs converted by SAELens' {conversion!r} loader are not read by saelab "
            f"(it reads {', '.join(('sae_lens', 'gemma_2'))})"
        )
    cfg = {**cfg, **overrides}
    sae = sae_from_parts(cfg, tensors, str(where), device=device, dtype=dtype, norm_scaling_factor=norm_scaling_factor)
    sae.log_sparsity = sparsity
    sae.source = str(where)
    return sae


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep + os.sep in name or Path(name).expanduser().exists()


def load_sae(
    path_or_release: str | os.PathLike,
    sae_id: str | None = None,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
) -> SparseAutoencoder:
    """The SAE at a local directory, an ``hf://`` folder, or ``sae_id`` of a release.

    ``device`` None takes the cfg's device; ``dtype`` None keeps the cfg's dtype. A
    release's ``config_overrides`` (``model_from_pretrained_kwargs`` ...) apply as in
    SAELens, and its ``norm_scaling_factor`` is folded in for ``expected_average_only_in``
    SAEs. The result carries ``hook``, ``model_name``, ``processing`` (give it to the model
    with ``sae.model.load_model_for``), ``saved_cfg``, ``log_sparsity`` and ``source``.
    """
    from sae import releases

    name = str(path_or_release)
    if name.startswith(HF_PREFIX):
        where = parse_hf(name)
        if sae_id is not None:
            where = HubFolder(where.repo_id, "/".join(p for p in (where.folder, sae_id) if p), where.revision)
        return _from_hub(where, "sae_lens", {}, device, dtype)
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path / sae_id if sae_id is not None else path
        sae, _ = read_sae_dir(folder, device=device)
        if dtype is not None:
            from sae.model import parse_dtype

            sae = sae.to(parse_dtype(dtype))
        sae.source = str(folder)
        return sae
    if _looks_like_path(name):
        raise ConfigError(f"{name}: no such SAE directory")
    entry = releases.find(name)
    if entry is None and "/" in name and sae_id is not None:  # an unlisted hub repo, sae_id its folder
        return _from_hub(HubFolder(name, sae_id), "sae_lens", {}, device, dtype)
    entry = releases.release(name)  # an unknown release: one line with the nearest names
    if sae_id is None:
        ids = list(entry.saes)
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        raise ConfigError(f"release {name!r} holds {len(ids)} SAEs; name one ({shown})")
    item = entry.sae(sae_id)
    overrides = {**entry.config_overrides}
    sae = _from_hub(
        HubFolder(entry.repo_id, item.path),
        entry.conversion,
        overrides,
        device,
        dtype,
        norm_scaling_factor=item.norm_scaling_factor,
    )
    if not sae.model_name:
        sae.model_name = entry.model
    sae.release, sae.sae_id = entry.name, item.id
    return sae


__all__ = ["EXTRA", "HubFolder", "fetch", "load_sae", "parse_hf"]
