"""Reading saved SAEs: ``cfg.json`` (saelab's or SAELens', any version) and its tensors → a module.

The directory layout is ``sae.saving``'s (which re-exports these names); the SAE's family
comes from the registry (``registry.from_saelens`` for SAELens files), never from a branch
per family. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from sae.architectures import SparseAutoencoder, sae_class
from sae.architectures.registry import from_saelens, parse_saelens_transcoder, saelens_architectures
from sae.errors import ConfigError

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SPARSITY = "sparsity.safetensors"
EXTRA = "saelab_state.safetensors"


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        why = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
    if _looks_pickled(path):
        raise ConfigError(
            f"{path}: a pickle / torch.save file, not safetensors; saelab never unpickles "
            "(convert it with safetensors.torch.save_file where you trust it)"
        )
    raise ConfigError(f"{path}: not a readable safetensors file ({why})")


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
#: SAELens input normalisations applied at run time and undone on the output (``SparseAutoencoder.normalize_input``)
RUNTIME_NORMALISATIONS = ("constant_norm_rescale", "layer_norm")


def read_cfg_file(path: str | Path) -> dict:
    """A ``cfg.json`` as a dict (one line when it is missing or not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path.parent}: not an SAE directory (no {CFG})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not valid JSON") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return cfg


def read_cfg(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such SAE directory")
    cfg = read_cfg_file(directory / CFG)
    if "architecture" not in cfg and "saelab" not in cfg and not _pre_6(cfg):
        raise ConfigError(f"{directory / CFG}: no 'architecture' key")
    return cfg


def _pre_6(cfg: dict) -> bool:
    """Whether ``cfg`` was written by SAELens before 6.0 (no version, or an older one)."""
    version = cfg.get("sae_lens_version") or (cfg.get("metadata") or {}).get("sae_lens_version")
    if not version:
        return "d_in" in cfg and "d_sae" in cfg
    try:
        return int(str(version).split(".")[0]) < 6
    except ValueError:
        return False


def saelens_cfg(cfg: dict) -> dict:
    """A SAELens ``cfg.json`` in the 6.x form, as SAELens' ``handle_config_defaulting`` makes it:
    ``hook_point`` → ``hook_name``, ``activation_fn_str`` → ``activation_fn``, no architecture
    → ``standard`` (``topk`` for a topk activation with a k), a boolean
    ``normalize_activations`` → ``expected_average_only_in``/``none``."""
    cfg = dict(cfg)
    if _pre_6(cfg):
        renames = {
            "hook_point": "hook_name",
            "hook_point_head_index": "hook_head_index",
            "activation_fn_str": "activation_fn",
        }
        cfg = {renames.get(k, k): v for k, v in cfg.items()}
        cfg.setdefault("apply_b_dec_to_input", True)
        cfg.setdefault("architecture", "standard")
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
        if cfg.get("activation_fn") == "topk" and k is not None:
            cfg["architecture"], cfg["k"] = "topk", k
    norm = cfg.get("normalize_activations")
    if isinstance(norm, bool):
        cfg["normalize_activations"] = "expected_average_only_in" if norm else "none"
    elif norm is None:
        cfg["normalize_activations"] = "none"
    return cfg


def _meta(cfg: dict, key: str, default=None):
    """A SAELens metadata field: under ``metadata`` (6.x) or at the top level (older, or overrides)."""
    if key in cfg and cfg[key] is not None:
        return cfg[key]
    return (cfg.get("metadata") or {}).get(key, default)


def saved_hook(cfg: dict) -> str | None:
    """The hook an SAE reads, from its ``cfg.json`` (ours, or SAELens's ``hook_name`` and
    ``hook_head_index``); one head of ``attn.hook_z`` is written ``...hook_z[h]``."""
    ours = cfg.get("saelab") or {}
    hook = ours.get("hook") or _meta(cfg, "hook_name") or _meta(cfg, "hook_point")
    head = ours.get("head", _meta(cfg, "hook_head_index", _meta(cfg, "hook_point_head_index")))
    if hook and head is not None and "[" not in hook:
        hook = f"{hook}[{head}]"
    return hook


def saved_hook_out(cfg: dict) -> str | None:
    """A transcoder's output hook, from its ``cfg.json`` (ours, or SAELens's ``hook_name_out``
    and ``hook_head_index_out``); None for an SAE."""
    ours = cfg.get("saelab") or {}
    hook = ours.get("hook_out") or _meta(cfg, "hook_name_out")
    head = _meta(cfg, "hook_head_index_out")
    if hook and head is not None and "[" not in hook:
        hook = f"{hook}[{head}]"
    return hook


def saved_model(cfg: dict) -> str | None:
    """The model an SAE was trained on, from its ``cfg.json`` (ours, or SAELens's ``model_name``)."""
    return (cfg.get("saelab") or {}).get("model") or _meta(cfg, "model_name")


def read_sae_dir(directory: str | Path, device: str | torch.device | None = "cpu") -> tuple[SparseAutoencoder, dict]:
    """``(sae, cfg_json)`` from a directory written by saelab or by SAELens."""
    directory = Path(directory)
    cfg = read_cfg(directory)
    if not (directory / WEIGHTS).is_file():
        raise ConfigError(f"{directory}: no weights ({WEIGHTS} is missing)")
    weights = _read_tensors(directory / WEIGHTS)
    if (directory / EXTRA).is_file():
        weights.update(_read_tensors(directory / EXTRA))
    sae = sae_from_parts(cfg, weights, str(directory), device=device)
    if (directory / SPARSITY).is_file():
        sae.log_sparsity = _read_tensors(directory / SPARSITY).get("sparsity")
    return sae, cfg


def sae_from_parts(
    cfg: dict,
    tensors: dict[str, torch.Tensor],
    where: str,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = None,
    norm_scaling_factor: float | None = None,
) -> SparseAutoencoder:
    """The SAE a ``cfg.json`` and its tensors describe (saelab's or SAELens', any registered family).

    Besides the weights it carries what the cfg says about its use: ``hook`` (the hook, one
    head written ``[h]``), ``model_name``, ``processing`` (``model_from_pretrained_kwargs``,
    see ``sae.processing``), ``prepend_bos``, ``input_normalization``, ``saved_cfg``.
    ``dtype`` None keeps the cfg's dtype; ``device`` None takes the cfg's device.
    ``norm_scaling_factor`` (a release's, for ``expected_average_only_in``) is folded into
    the weights as SAELens' ``fold_activation_norm_scaling_factor`` does.
    """
    from sae.config import build_config
    from sae.model import parse_dtype
    from sae.processing import Processing

    cfg_name = f"{where}/{CFG}"
    ours = cfg.get("saelab")
    theirs = saelens_cfg(cfg)
    if ours is not None:
        cls = sae_class(ours.get("architecture", "?"))
        config = build_config(cls.config_class, ours.get("config", {}), f"{cfg_name} [saelab.config]")
    else:
        cls, config = _foreign_config(cfg_name, theirs)
    norm = theirs.get("normalize_activations")
    if norm not in IDENTITY_NORMALISATIONS + RUNTIME_NORMALISATIONS:
        raise ConfigError(
            f"{cfg_name}: normalize_activations {norm!r} is not one saelab applies "
            f"(none, expected_average_only_in, {', '.join(RUNTIME_NORMALISATIONS)}); fold it into the weights first"
        )
    sae = cls(config)
    expected = sae.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ConfigError(f"{where}: weights lack {', '.join(missing)}")
    for name, tensor in expected.items():
        if tuple(tensors[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"{where}: {name} has shape {tuple(tensors[name].shape)}, expected {tuple(tensor.shape)} from {CFG}"
            )
    sae.load_state_dict({k: tensors[k].to(tensor.dtype) for k, tensor in expected.items()}, strict=True)
    if ours is None and theirs.get("rescale_acts_by_decoder_norm"):
        _fold_decoder_norms(sae)
    if norm == "expected_average_only_in" and norm_scaling_factor is not None:
        sae.fold_input_scale(float(norm_scaling_factor))
    if norm in RUNTIME_NORMALISATIONS:
        sae.input_normalization = norm
    sae.processing = Processing.from_kwargs(
        _meta(theirs, "model_from_pretrained_kwargs") or {}, f"{cfg_name}: model_from_pretrained_kwargs"
    )
    sae.prepend_bos = bool(_meta(theirs, "prepend_bos", True))
    sae.hook = saved_hook(cfg)
    sae.model_name = saved_model(cfg)
    sae.saved_cfg = cfg
    sae.log_sparsity = None
    target_dtype = parse_dtype(dtype if dtype is not None else str(theirs.get("dtype") or "float32"))
    target_device = device if device is not None else theirs.get("device") or "cpu"
    if str(target_device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{cfg_name}: device {target_device!r} is not available here; pass device='cpu'")
    return sae.to(device=target_device, dtype=target_dtype).eval()


def _foreign_config(cfg_name: str, cfg: dict):
    """Our class and config for an SAE that SAELens saved (``cfg`` already in the 6.x form).

    The family comes from the registry (``from_saelens``); its own config fields (TopK's k, a
    transcoder's d_out, ...) are read from cfg.json by name, the rest keep the family's defaults.
    """
    from sae.architectures import SAEConfig
    from sae.config import build_config

    arch = cfg.get("architecture", "standard")
    entry = from_saelens(arch)
    if entry is None:
        raise ConfigError(
            f"{cfg_name}: architecture {arch!r} is not one saelab loads "
            f"(supported: {', '.join(saelens_architectures())})"
        )
    cls = entry.sae_class
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
    return cls, build_config(cls.config_class, fields, cfg_name)


@torch.no_grad()
def _fold_decoder_norms(sae: SparseAutoencoder) -> None:
    """SAELens TopK with ``rescale_acts_by_decoder_norm`` ranks pre·‖d_i‖ and decodes acts/‖d_i‖;
    folding n = ‖d_i‖ into W_enc, b_enc (×n) and W_dec (÷n) gives the same codes and output."""
    n = sae.W_dec.norm(dim=1)
    sae.W_enc.mul_(n)
    sae.b_enc.mul_(n)
    sae.W_dec.div_(n[:, None])
