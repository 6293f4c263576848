"""Hostile and broken files for the bad-input corpus and the security tests.

``pickle_payload(marker)`` is a pickle that runs ``touch marker`` when unpickled: offering it
to a loader and then checking that ``marker`` does not exist proves the loader never
unpickled it. ``torch_save_payload`` is the same payload in ``torch.save``'s zip layout.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest
import yaml

HOOK = "blocks.1.hook_resid_post"
#: valid configs the bad-input cases start from
BASES = yaml.safe_load((Path(__file__).resolve().parent / "bad_inputs" / "_bases.yaml").read_text())


class _Touch:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"W_enc": _Touch(marker)}, protocol=4)


def torch_save_payload(marker: Path, path: Path) -> None:
    import torch

    torch.save({"W_enc": _Touch(marker)}, path)


def saved_sae(directory: Path, d_sae: int = 64, k: int = 4, hook: str = HOOK) -> Path:
    """A small TopK SAE on the organism's residual stream, saved as saelab saves it."""
    import torch

    from sae.architectures import sae_class
    from sae.saving import save_sae

    cls = sae_class("topk")
    torch.manual_seed(0)
    sae = cls(cls.config_class(architecture="topk", d_in=128, d_sae=d_sae, k=k))
    return save_sae(sae, directory, metadata={"hook": hook, "model": "organism", "context_size": 32})


@pytest.fixture(scope="session")
def small_cache(tmp_path_factory, organism):
    """The activation cache of ``_bases.yaml``'s ``cache`` config (4 shards), built once."""
    from sae.cache import write_cache
    from sae.store import StoreConfig

    root = tmp_path_factory.mktemp("small_cache") / "cache"
    write_cache(StoreConfig(**BASES["cache"], cache_dir=str(root)), *organism, progress=False)
    return root


def tree(root: Path) -> dict[str, tuple]:
    """Every file and directory under ``root``: kind, size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir", st.st_mtime_ns)
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def tree_changes(before: dict, after: dict) -> list[str]:
    return (
        [f"new: {p}" for p in sorted(set(after) - set(before))]
        + [f"gone: {p}" for p in sorted(set(before) - set(after))]
        + [f"changed: {p}" for p in sorted(set(before) & set(after)) if before[p] != after[p]]
    )
