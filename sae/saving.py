"""Saved SAEs: ``cfg.json`` + ``sae_weights.safetensors`` in the layout SAELens reads.

The weights file holds the *inference form* under SAELens's names (``W_enc``, ``b_enc``,
``W_dec``, ``b_dec``, and ``threshold`` for JumpReLU forms), with activation-norm scaling
already folded in, so ``sae_lens.SAE.load_from_disk`` gives the same ``encode``. The
``saelab`` section of ``cfg.json`` names our family and its config; tensors beyond the
inference form (a vSAE's variance encoder, feature choice's running densities) go to
``saelab_state.safetensors``. SAEs saved by SAELens (standard, topk, jumprelu) load here
too. Nothing is ever unpickled.

Transcoders save as SAELens does (``transcoder``, ``skip_transcoder``, ``jumprelu_transcoder``,
``jumprelu_skip_transcoder``; the registry's ``saelens_transcoder`` names the others):
``d_out`` in cfg.json, ``metadata.hook_name`` the input hook and ``metadata.hook_name_out``
the output hook, ``W_dec [d_sae, d_out]``, ``b_dec [d_out]``, and ``W_skip [d_out, d_in]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae.architectures import SparseAutoencoder, sae_class
from sae.architectures.registry import (
    from_saelens,
    parse_saelens_transcoder,
    saelens_architectures,
    saved_architecture,
)
from sae.atomic import atomic_path, write_json
from sae.errors import SaelabError

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
EXTRA = "saelab_state.safetensors"
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
    hook = meta.get("hook")
    cfg = {
        "architecture": saved_architecture(sae),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        **({"d_out": sae.cfg.d_out} if sae.cfg.transcoder else {}),
        "dtype": str(sae.W_enc.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": sae.cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
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
            "prepend_bos": True,
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


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
    if _looks_pickled(path):
        raise SaelabError(
            f"{path}: a pickle / torch.save file, not safetensors; saelab never unpickles "
            "(convert it with safetensors.torch.save_file where you trust it)"
        )
    raise SaelabError(f"{path}: not a readable safetensors file ({why})")


def _looks_pickled(path: Path) -> bool:
    """Pickle protocol 2+ (``\\x80`` then the protocol) or torch.save's zip archive."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")) or head == b"PK\x03\x04"


#: SAELens input normalisations that are the identity at inference (the factor is folded or kept outside)
IDENTITY_NORMALISATIONS = (None, "none", "expected_average_only_in")


def read_cfg(directory: str | Path) -> dict:
    directory = Path(directory)
    path = directory / CFG
    if not directory.is_dir():
        raise SaelabError(f"{directory}: no such SAE directory")
    if not path.is_file():
        raise SaelabError(f"{directory}: not an SAE directory (no {CFG})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SaelabError(f"{path}: not valid JSON") from None
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise SaelabError(f"{path}: no 'architecture' key")
    return cfg


def saved_hook(cfg: dict) -> str | None:
    """The hook an SAE reads, from its ``cfg.json`` (ours, or SAELens's ``hook_name`` and
    ``hook_head_index``); one head of ``attn.hook_z`` is written ``...hook_z[h]``."""
    ours = cfg.get("saelab") or {}
    meta = cfg.get("metadata") or {}
    hook = ours.get("hook") or meta.get("hook_name")
    head = ours.get("head", meta.get("hook_head_index"))
    if hook and head is not None and "[" not in hook:
        hook = f"{hook}[{head}]"
    return hook


def saved_hook_out(cfg: dict) -> str | None:
    """A transcoder's output hook, from its ``cfg.json`` (ours, or SAELens's ``hook_name_out``
    and ``hook_head_index_out``); None for an SAE."""
    ours = cfg.get("saelab") or {}
    meta = cfg.get("metadata") or {}
    hook = ours.get("hook_out") or meta.get("hook_name_out") or cfg.get("hook_name_out")
    head = meta.get("hook_head_index_out")
    if hook and head is not None and "[" not in hook:
        hook = f"{hook}[{head}]"
    return hook


def saved_model(cfg: dict) -> str | None:
    """The model an SAE was trained on, from its ``cfg.json`` (ours, or SAELens's ``model_name``)."""
    return (cfg.get("saelab") or {}).get("model") or (cfg.get("metadata") or {}).get("model_name")


def load_sae(directory: str | Path, device: str | torch.device = "cpu") -> tuple[SparseAutoencoder, dict]:
    """``(sae, cfg_json)`` from a directory written by saelab or by SAELens."""
    from sae.config import build_config

    directory = Path(directory)
    cfg = read_cfg(directory)
    if not (directory / WEIGHTS).is_file():
        raise SaelabError(f"{directory}: no weights ({WEIGHTS} is missing)")
    weights = _read_tensors(directory / WEIGHTS)
    ours = cfg.get("saelab")
    if ours is not None:
        cls = sae_class(ours.get("architecture", "?"))
        config = build_config(cls.config_class, ours.get("config", {}), f"{directory / CFG} [saelab.config]")
    else:
        cls, config = _foreign_config(directory, cfg)
    sae = cls(config)
    state = dict(weights)
    if (directory / EXTRA).is_file():
        state.update(_read_tensors(directory / EXTRA))
    expected = sae.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise SaelabError(f"{directory}: weights lack {', '.join(missing)}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise SaelabError(
                f"{directory}: {name} has shape {tuple(state[name].shape)}, expected {tuple(tensor.shape)} from {CFG}"
            )
    sae.load_state_dict({k: state[k] for k in expected}, strict=True)
    if ours is None and cfg.get("rescale_acts_by_decoder_norm"):
        _fold_decoder_norms(sae)
    return sae.to(device).eval(), cfg


def _foreign_config(directory: Path, cfg: dict):
    """Our class and config for an SAE that SAELens saved."""
    from sae.architectures import SAEConfig
    from sae.config import build_config

    arch = cfg["architecture"]
    entry = from_saelens(arch)
    if entry is None:
        raise SaelabError(
            f"{directory / CFG}: architecture {arch!r} is not one saelab loads "
            f"(supported: {', '.join(saelens_architectures())})"
        )
    norm = cfg.get("normalize_activations")
    if norm not in IDENTITY_NORMALISATIONS:
        raise SaelabError(
            f"{directory / CFG}: normalize_activations {norm!r} is applied at run time by SAELens, "
            "which saelab does not replicate; fold it into the weights first"
        )
    cls = entry.sae_class
    # the family's own fields (TopK's k) as SAELens wrote them; the rest keep the family's defaults
    own = set(cls.config_class.model_fields) - set(SAEConfig.model_fields)
    fields = {
        **{key: cfg[key] for key in own if key in cfg},
        "architecture": entry.name,
        "d_in": cfg.get("d_in"),
        "d_sae": cfg.get("d_sae"),
        "apply_b_dec_to_input": cfg.get("apply_b_dec_to_input", True),
    }
    transcoder = parse_saelens_transcoder(arch)
    if transcoder is not None:  # SAELens transcoders never centre their input
        fields.update(d_out=cfg.get("d_out"), skip=transcoder[1], apply_b_dec_to_input=False)
    return cls, build_config(cls.config_class, fields, str(directory / CFG))


@torch.no_grad()
def _fold_decoder_norms(sae: SparseAutoencoder) -> None:
    """SAELens TopK with ``rescale_acts_by_decoder_norm`` ranks pre·‖d_i‖ and decodes acts/‖d_i‖;
    folding n = ‖d_i‖ into W_enc, b_enc (×n) and W_dec (÷n) gives the same codes and output."""
    n = sae.W_dec.norm(dim=1)
    sae.W_enc.mul_(n)
    sae.b_enc.mul_(n)
    sae.W_dec.div_(n[:, None])
