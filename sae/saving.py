"""Saved SAEs: ``cfg.json`` + ``sae_weights.safetensors`` in the layout SAELens reads.

The weights file holds the *inference form* under SAELens's names (``W_enc``, ``b_enc``,
``W_dec``, ``b_dec``, and ``threshold`` for JumpReLU forms), with activation-norm scaling
already folded in, so ``sae_lens.SAE.load_from_disk`` gives the same ``encode``. The
``saelab`` section of ``cfg.json`` names our family and its config; tensors beyond the
inference form (a vSAE's variance encoder, feature choice's running densities) go to
``saelab_state.safetensors``. SAEs saved by SAELens load here too, as whichever
registered family claims their ``architecture`` (``registry.from_saelens``), pre-6.0
configs included (``sae.reading``). Nothing is ever unpickled. ``load_sae`` here returns
``(sae, cfg_json)`` (a directory, ``hf://`` or a release); ``sae.loading.load_sae``
returns the SAE alone.

Transcoders save as SAELens does (``transcoder``, ``skip_transcoder``, ``jumprelu_transcoder``,
``jumprelu_skip_transcoder``; the registry's ``saelens_transcoder`` names the others):
``d_out`` in cfg.json, ``metadata.hook_name`` the input hook and ``metadata.hook_name_out``
the output hook, ``W_dec [d_sae, d_out]``, ``b_dec [d_out]``, and ``W_skip [d_out, d_in]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from sae.architectures import SparseAutoencoder
from sae.architectures.registry import saved_architecture
from sae.atomic import atomic_path, write_json

# the reading side lives in sae.reading; these names stay importable from here
from sae.reading import (  # noqa: F401
    CFG,
    EXTRA,
    IDENTITY_NORMALISATIONS,
    RUNTIME_NORMALISATIONS,
    SPARSITY,
    WEIGHTS,
    _read_tensors,
    read_cfg,
    read_cfg_file,
    read_sae_dir,
    sae_from_parts,
    saelens_cfg,
    saved_hook,
    saved_hook_out,
    saved_model,
)

SCHEMA_VERSION = 1
SAELENS_VERSION = "6.54.12"


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def save_sae(sae: SparseAutoencoder, directory: str | Path, metadata: dict | None = None) -> Path:
    """Write ``sae`` (already in raw input space) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inference = sae.inference_state()
    state = sae.state_dict()
    extra = {k: v for k, v in state.items() if k not in inference}
    meta = dict(metadata or {})
    # an SAE read from a cfg.json keeps what it said about its model unless told otherwise
    for key, attr in (("hook", "hook"), ("model", "model_name")):
        if meta.get(key) is None and getattr(sae, attr, None) is not None:
            meta[key] = getattr(sae, attr)
    hook = meta.get("hook")
    if hook and "tl_hook" not in meta and hook.endswith("]") and "[" in hook:  # one head: SAELens' hook_head_index
        meta["tl_hook"], meta["head"] = hook[: hook.index("[")], int(hook[hook.index("[") + 1 : -1])
    processing = getattr(sae, "processing", None)
    model_kwargs = {k: v for k, v in vars(processing).items() if v} if processing is not None else {}
    cfg = {
        "architecture": saved_architecture(sae),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        **({"d_out": sae.cfg.d_out} if sae.cfg.transcoder else {}),
        "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": sae.cfg.apply_b_dec_to_input,
        "normalize_activations": sae.input_normalization,
        "reshape_activations": "hook_z" if hook and hook.endswith("attn.hook_z") else "none",
        **sae.inference_config(),
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "model_name": meta.get("model"),
            "hook_name": meta.get("tl_hook", hook),
            "hook_head_index": meta.get("head"),
            **(
                {
                    "hook_name_out": meta.get("tl_hook_out", meta.get("hook_out")),
                    "hook_head_index_out": meta.get("head"),
                }
                if sae.cfg.transcoder
                else {}
            ),
            "context_size": meta.get("context_size"),
            "prepend_bos": getattr(sae, "prepend_bos", True),
            "model_from_pretrained_kwargs": model_kwargs,
            "dataset_path": meta.get("dataset"),
        },
        "saelab": {
            "schema_version": SCHEMA_VERSION,
            "architecture": sae.cfg.architecture,
            "config": sae.cfg.model_dump(),
            "hook": hook,
            **{k: v for k, v in meta.items() if k not in ("hook",)},
        },
    }
    _save_tensors(inference, directory / WEIGHTS)
    if extra:
        _save_tensors(extra, directory / EXTRA)
    else:
        (directory / EXTRA).unlink(missing_ok=True)
    write_json(directory / CFG, cfg)
    return directory


#: what the old ``load_sae(directory, device)`` call put second
_DEVICE_NAMES = ("cpu", "mps", "meta")


def load_sae(
    path_or_release: str | os.PathLike,
    sae_id: str | None = None,
    device: str | torch.device | None = "cpu",
) -> tuple[SparseAutoencoder, dict]:
    """``(sae, cfg_json)`` from a directory, an ``hf://`` folder or a release and id
    (``sae.loading.load_sae``, which returns the SAE alone, resolves the last two).

    ``load_sae(directory, "cuda")``, the old positional device, still means the device.
    """
    if isinstance(sae_id, torch.device) or (
        isinstance(sae_id, str) and (sae_id in _DEVICE_NAMES or sae_id.split(":")[0] == "cuda")
    ):
        sae_id, device = None, sae_id
    path = Path(str(path_or_release)).expanduser()
    if sae_id is None and path.is_dir():
        return read_sae_dir(path, device=device)
    from sae.loading import load_sae as resolve

    sae = resolve(path_or_release, sae_id, device=device)
    return sae, sae.saved_cfg
