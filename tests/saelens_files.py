"""SAELens-format SAEs written by hand, dense references of their forward pass, and a local
Hugging Face cache holding them: independent of saelab's own writer and families.

The references follow SAELens 6 (``saes/{standard,topk,jumprelu,gated}_sae.py``,
``saes/transcoder.py``, ``SAE._setup_activation_normalization``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

#: every architecture SAELens saves for inference (BatchTopK and Matryoshka save as jumprelu)
ARCHITECTURES = ("standard", "topk", "jumprelu", "gated", "transcoder", "skip_transcoder", "jumprelu_transcoder")
D_IN, D_SAE, D_OUT, K = 8, 16, 6, 3


def is_transcoder(arch: str) -> bool:
    return "transcoder" in arch


def make_tensors(arch: str, seed: int = 0, d_in: int = D_IN, d_sae: int = D_SAE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d_out = D_OUT if is_transcoder(arch) else d_in
    t = {
        "W_enc": torch.randn(d_in, d_sae, generator=g) / d_in**0.5,
        "W_dec": torch.randn(d_sae, d_out, generator=g) / d_sae**0.5,
        "b_dec": torch.randn(d_out, generator=g) * 0.1,
    }
    if arch == "gated":
        t["b_gate"] = torch.randn(d_sae, generator=g) * 0.1
        t["b_mag"] = torch.randn(d_sae, generator=g) * 0.1
        t["r_mag"] = torch.randn(d_sae, generator=g) * 0.1
    else:
        t["b_enc"] = torch.randn(d_sae, generator=g) * 0.1
    if "jumprelu" in arch:
        t["threshold"] = torch.rand(d_sae, generator=g) * 0.3
    if arch == "skip_transcoder":
        t["W_skip"] = torch.randn(d_out, d_in, generator=g) * 0.1
    return t


def make_cfg(
    arch: str,
    hook: str = "blocks.0.hook_resid_pre",
    model: str = "organism",
    normalize: str = "none",
    d_in: int = D_IN,
    d_sae: int = D_SAE,
    **extra,
) -> dict:
    cfg = {
        "architecture": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": not is_transcoder(arch),
        "normalize_activations": normalize,
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.54.12",
            "model_name": model,
            "hook_name": hook,
            "hook_head_index": None,
            "prepend_bos": True,
            "context_size": 32,
            "model_from_pretrained_kwargs": {},
        },
    }
    if arch == "topk":
        cfg.update(k=K, rescale_acts_by_decoder_norm=False)
    if is_transcoder(arch):
        cfg["d_out"] = D_OUT
        cfg["metadata"]["hook_name_out"] = "blocks.0.hook_mlp_out"
    cfg.update(extra)
    return cfg


def write_saelens(directory: Path, cfg: dict, tensors: dict[str, torch.Tensor], sparsity: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "sae_weights.safetensors"))
    if sparsity:
        save_file({"sparsity": torch.linspace(-6, 0, cfg["d_sae"])}, str(directory / "sparsity.safetensors"))
    return directory


def _normalise(x: torch.Tensor, mode: str, d_in: int):
    if mode == "constant_norm_rescale":
        c = d_in**0.5 / x.norm(dim=-1, keepdim=True)
        return x * c, lambda y: y / c
    if mode == "layer_norm":
        mu = x.mean(-1, keepdim=True)
        std = (x - mu).std(-1, keepdim=True)
        return (x - mu) / (std + 1e-5), lambda y: y * std + mu
    return x, lambda y: y


def reference(cfg: dict, t: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, output) of the SAELens forward pass, written out densely."""
    arch = cfg["architecture"]
    xn, undo = _normalise(x, cfg.get("normalize_activations", "none"), cfg["d_in"])
    sae_in = xn - t["b_dec"] if cfg["apply_b_dec_to_input"] else xn
    if arch == "gated":
        gate = (sae_in @ t["W_enc"] + t["b_gate"]) > 0
        mag = torch.relu(sae_in @ (t["W_enc"] * t["r_mag"].exp()) + t["b_mag"])
        codes = gate.float() * mag
    else:
        pre = sae_in @ t["W_enc"] + t["b_enc"]
        if arch == "topk":
            values, idx = pre.topk(cfg["k"], dim=-1)
            codes = torch.zeros_like(pre).scatter(-1, idx, values.relu())
        elif "jumprelu" in arch:
            codes = pre * (pre > t["threshold"])
        else:
            codes = pre.relu()
    out = codes @ t["W_dec"] + t["b_dec"]
    if is_transcoder(arch):  # SAELens leaves a transcoder's output un-normalised
        if arch == "skip_transcoder":
            out = out + x @ t["W_skip"].T
    else:
        out = undo(out)
    return codes, out


def write_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "0" * 40) -> Path:
    """A Hugging Face hub cache (``models--org--name/snapshots/<rev>/...`` and ``refs/main``)
    holding ``files`` (path in the repository → local file to copy)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / revision
    for name, src in files.items():
        dst = snap / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(src).read_bytes())
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snap


def write_release_table(path: Path, releases: dict) -> Path:
    path.write_text(yaml.safe_dump(releases))
    return path
