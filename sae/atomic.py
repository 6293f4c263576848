"""Atomic writes: a reader sees the old file or the new one, never half of either.

Every file goes to a temporary sibling, is fsynced, then renamed over the target; the
parent directory is fsynced so the rename itself survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sae.errors import SaelabError

#: errors that mean "the disk is full", which a user can fix and must be told about plainly
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


@contextlib.contextmanager
def _full_disk_is_one_line(target: Path) -> Iterator[None]:
    """A full disk becomes a ``SaelabError`` naming the target; the previous version is untouched
    (the write went to a temporary sibling, removed on the way out)."""
    try:
        yield
    except Exception as e:
        # writers in other languages (safetensors' Rust core) report it in their message only
        if (isinstance(e, OSError) and e.errno in _NO_SPACE) or "No space left on device" in str(e):
            raise SaelabError(
                f"no space left on the device while writing {target}; the previous version, "
                f"if any, is intact (free some space and run the same command again)"
            ) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yields a temporary path next to ``target``; on success it replaces ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _full_disk_is_one_line(target):
            yield tmp_path
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual mode
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (checksums of checkpoints and cache shards)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | Path, obj: Any, indent: int | None = 2) -> None:
    write_text(target, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yields a temporary directory; on success it takes ``target``'s place whole.

    The previous directory is moved aside first and removed only after the new one is
    in place, so a crash leaves either the old or the new directory (plus a stray
    ``.old`` sibling at worst), never a mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with _full_disk_is_one_line(target):
            yield tmp
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                    os.chmod(f, 0o666 & ~_umask())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
