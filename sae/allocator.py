"""Keep freed CPU memory in the heap for reuse, like a caching allocator.

PyTorch leaves CPU allocations to the C library. glibc serves each block above its mmap
threshold with a fresh ``mmap`` and hands a heap top above its trim threshold back to
the kernel; both start at 128 KiB and adapt only partly. A loop that allocates and frees
the same multi-megabyte blocks — the mixing buffer's emissions (16 MiB per hook), the
trainer's batches, an SAE step's ``[batch, d_sae]`` pre-activations (256 MiB at 4096 ×
16384) — then pays a page fault and a page of zeroing per 4 KiB on every round. So the
tuning turns ``mmap`` off for blocks (``M_MMAP_MAX`` 0: the threshold alone stops at
32 MiB, glibc's maximum, which left the pre-activations ~65k faults a step), keeps the
threshold at that maximum for whoever turns ``mmap`` back on, and raises the trim
threshold to 1 GiB: freed blocks stay in the heap and are reused. ``saelab bench
allocator`` measures the organism's three-hook harvest both ways, side by side.

The cost: up to ``TRIM_THRESHOLD`` of freed memory at the heap's top, and any freed block
below it, stays mapped to the process instead of returning to the system (glibc's other
arenas, those of threads, still ``mmap`` a block larger than their 64 MiB heaps).
``SAELAB_MALLOC_TUNING=0`` turns the tuning off; an explicit ``MALLOC_MMAP_MAX_``,
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the environment wins over it.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 32 * 2**20  # glibc refuses more (half its 64 MiB heap size)
TRIM_THRESHOLD = 2**30
MMAP_MAX = 0  # blocks mmapped at once: none, every block comes from the heap
OPT_OUT = "SAELAB_MALLOC_TUNING"
#: glibc's environment name of each setting → its ``mallopt`` parameter (from <malloc.h>)
_MALLOPT = {"MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_MAX_": -4}
_ENV = {
    "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD,
    "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD,
    "MALLOC_MMAP_MAX_": MMAP_MAX,
}


def on_glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return False


def settings() -> dict[str, int] | None:
    """The settings this process tree runs with, or None when the C library's defaults apply."""
    if not on_glibc() or os.environ.get(OPT_OUT, "1") == "0":
        return None
    if any(name in os.environ for name in _ENV):
        return {name: int(os.environ.get(name, value)) for name, value in _ENV.items()}
    return dict(_ENV)


def keep_freed_memory() -> dict[str, int] | None:
    """Apply ``settings()`` to this process (``mallopt``) and to its children (the
    environment); returns what was applied. A no-op off glibc or when opted out."""
    wanted = settings()
    if wanted is None or any(name in os.environ for name in _ENV):
        return wanted  # off, or values glibc already read at start-up (the user's, or ours)
    libc = ctypes.CDLL(None)
    if not all(libc.mallopt(_MALLOPT[name], value) for name, value in wanted.items()):
        return None
    for name, value in _ENV.items():
        os.environ[name] = str(value)
    return wanted
