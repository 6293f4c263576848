"""``SAE``: a sparse autoencoder together with the hook(s) it reads and writes.

A family module (``sae.architectures``) knows nothing about language models or files; a
spliced SAE must know where it sits. ``SAE`` pairs the two, as SAELens's ``SAE`` does with
``cfg.metadata.hook_name``: ``hook_name`` is the hook it reads (in the lab's notation, so
one head of ``attn.hook_z`` is ``blocks.L.attn.hook_z[h]``, SAELens's ``hook_head_index``),
``hook_name_out`` the hook a transcoder writes (None for an SAE, which reads and writes the
same hook). ``SAE.from_pretrained`` / ``SAE.load_from_disk`` delegate to
``sae.saving.load_sae``; ``SAE.from_module`` wraps a module built in memory.

Encoding runs in stages (``pre_acts`` → ``activate`` → ``decode``) so that
``HookedSAETransformer`` can place ``hook_sae_acts_pre`` and ``hook_sae_acts_post``
between them, as SAELens does. A family that overrides ``encode`` as a whole (not the
staged ``pre_acts`` + ``inference_encode`` of the base class) is encoded with its own
``encode``; ``hook_sae_acts_pre`` then observes ``pre_acts`` but editing it changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sae.errors import ConfigError


@dataclass(frozen=True)
class SAEMetadata:
    """SAELens's ``cfg.metadata`` fields that splicing needs."""

    hook_name: str
    hook_head_index: int | None = None
    hook_name_out: str | None = None
    model_name: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SAEInfo:
    """A SAELens-style read-only ``cfg`` view: ``sae.cfg.d_sae``, ``sae.cfg.metadata.hook_name``."""

    architecture: str
    d_in: int
    d_sae: int
    d_out: int
    metadata: SAEMetadata


def _split_head(hook: str) -> tuple[str, int | None]:
    if hook.endswith("]") and "[" in hook:
        base, head = hook[:-1].split("[", 1)
        return base, int(head)
    return hook, None


def _cfg_of(result, where) -> tuple[nn.Module, dict]:
    """``(module, cfg_json)`` from whatever ``load_sae`` returns: ``(module, cfg)`` (the
    original signature) or the module alone (then its ``cfg.json`` is read from ``where``
    or an attribute holding it)."""
    if isinstance(result, tuple):
        module, cfg = result[0], result[1]
        return module, dict(cfg or {})
    module = result
    for attr in ("cfg_json", "cfg_dict", "saelens_cfg"):
        cfg = getattr(module, attr, None)
        if isinstance(cfg, dict):
            return module, dict(cfg)
    path = Path(str(where)) / "cfg.json"
    if path.is_file():
        return module, json.loads(path.read_text(encoding="utf-8"))
    return module, {}


class SAE(nn.Module):
    """A sparse autoencoder and its hook point(s); what ``HookedSAETransformer.add_sae`` splices.

    ``use_error_term`` is the default used when the SAE is spliced without saying (SAELens's
    attribute of the same name).
    """

    def __init__(
        self,
        module: nn.Module,
        hook_name: str,
        hook_name_out: str | None = None,
        model_name: str | None = None,
        cfg_dict: dict | None = None,
    ):
        super().__init__()
        if not hook_name:
            raise ConfigError("this SAE names no hook point (cfg.json has no hook_name); pass hook_name=...")
        self.module = module
        self.hook_name = hook_name
        self.hook_name_out = hook_name_out if hook_name_out and hook_name_out != hook_name else None
        self.model_name = model_name
        self.cfg_dict = dict(cfg_dict or {})
        self.use_error_term = False

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_module(
        cls, module: nn.Module, hook_name: str, hook_name_out: str | None = None, model_name: str | None = None
    ) -> SAE:
        """Wrap an in-memory module (a family's ``SparseAutoencoder``) with its hook(s)."""
        return cls(module, hook_name, hook_name_out, model_name)

    @classmethod
    def from_cfg(cls, module: nn.Module, cfg: dict) -> SAE:
        """The SAE of a loaded ``cfg.json`` (saelab's or SAELens's keys)."""
        from sae.saving import saved_hook, saved_model

        meta = cfg.get("metadata") or {}
        ours = cfg.get("saelab") or {}
        out = ours.get("hook_out") or meta.get("hook_name_out") or cfg.get("hook_name_out")
        return cls(module, saved_hook(cfg), out, saved_model(cfg), cfg)

    @classmethod
    def load(cls, path_or_release: str | os.PathLike, sae_id: str | None = None, device: str = "cpu") -> SAE:
        """Whatever ``sae.saving.load_sae`` reads (a directory; releases and ``hf://`` where it
        supports them), as an ``SAE``."""
        from sae.saving import load_sae

        if sae_id is None:
            result = load_sae(path_or_release, device=device)
        else:
            result = load_sae(path_or_release, sae_id, device=device)
        if isinstance(result, SAE):
            return result
        module, cfg = _cfg_of(result, path_or_release)
        return cls.from_cfg(module, cfg)

    @classmethod
    def from_pretrained(cls, release: str, sae_id: str | None = None, device: str = "cpu") -> SAE:
        """SAELens's entry point: a published SAE by release and id (or a path / ``hf://``)."""
        return cls.load(release, sae_id, device=device)

    @classmethod
    def load_from_disk(cls, path: str | os.PathLike, device: str = "cpu") -> SAE:
        """SAELens's entry point: an SAE directory (``cfg.json`` + ``sae_weights.safetensors``)."""
        return cls.load(path, device=device)

    def save_model(self, path: str | os.PathLike) -> Path:
        """Write the SAE in SAELens's layout (``sae.saving.save_sae``)."""
        from sae.saving import save_sae

        hook, head = _split_head(self.hook_name)
        meta = {"hook": self.hook_name, "tl_hook": hook, "head": head, "model": self.model_name}
        if self.hook_name_out:
            meta["hook_out"] = self.hook_name_out
        return save_sae(self.module, path, metadata=meta)

    # -- the SAELens view ----------------------------------------------------------------

    @property
    def cfg(self) -> SAEInfo:
        hook, head = _split_head(self.hook_name)
        d_in, d_sae = self.W_enc.shape
        return SAEInfo(
            architecture=getattr(getattr(self.module, "family", None), "saelens_architecture", None)
            or self.cfg_dict.get("architecture", type(self.module).__name__),
            d_in=int(d_in),
            d_sae=int(d_sae),
            d_out=int(self.W_dec.shape[1]),
            metadata=SAEMetadata(
                hook, head, self.hook_name_out, self.model_name, dict(self.cfg_dict.get("metadata") or {})
            ),
        )

    def _metadata(self) -> dict:
        return dict(self.cfg_dict.get("metadata") or {})

    @property
    def W_enc(self) -> torch.Tensor:
        return self.module.W_enc

    @property
    def W_dec(self) -> torch.Tensor:
        return self.module.W_dec

    @property
    def b_enc(self) -> torch.Tensor:
        return self.module.b_enc

    @property
    def b_dec(self) -> torch.Tensor:
        return self.module.b_dec

    @property
    def dtype(self) -> torch.dtype:
        return self.module.W_enc.dtype

    # -- encoding in stages --------------------------------------------------------------

    @property
    def staged(self) -> bool:
        """Whether ``encode`` is the base class's ``inference_encode(pre_acts(x))``."""
        from sae.architectures import SparseAutoencoder

        return isinstance(self.module, SparseAutoencoder) and type(self.module).encode is SparseAutoencoder.encode

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor | None:
        """Pre-activations ``[..., d_sae]`` (None for a module without ``pre_acts``)."""
        if not hasattr(self.module, "pre_acts"):
            return None
        return self.module.pre_acts(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """Codes from pre-activations (the inference rule), for staged modules."""
        return self.module.inference_encode(pre.reshape(-1, pre.shape[-1])).reshape(pre.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.encode(x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.module.decode(codes)

    def skip(self, x: torch.Tensor) -> torch.Tensor | None:
        """A skip transcoder's linear path: the module's ``skip(x)`` if it has one, else
        ``x @ W_skip.T`` with SAELens's ``W_skip [d_out, d_in]``; None without one."""
        if callable(getattr(self.module, "skip", None)):
            return self.module.skip(x)
        w = getattr(self.module, "W_skip", None)
        return x @ w.T.to(x.dtype) if isinstance(w, torch.Tensor) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction (a transcoder's prediction of its output hook)."""
        out = self.decode(self.encode(x))
        skip = self.skip(x)
        return out if skip is None else out + skip

    def extra_repr(self) -> str:
        out = f", hook_name_out={self.hook_name_out!r}" if self.hook_name_out else ""
        return f"hook_name={self.hook_name!r}{out}"
