"""Keep the memory compiled code frees for its next call (glibc's malloc).

A reverse-mode call allocates its tape (the caches of every loop, sized once from the
trip counts) at entry and frees it at exit.  glibc serves a block of more than 128 KiB
with ``mmap`` and returns it with ``munmap``, and trims the top of the heap once more
than 128 KiB of it is free: every call of a gradient with a few MB of tape then maps
fresh pages and takes a page fault per 4 KiB (GMM, d = 10, k = 25, n = 1000: ~950
faults and ~20 % of the gradient's time per call).

:func:`keep_freed_memory` raises both thresholds once per process, when the first
compiled code is loaded: blocks up to :data:`MMAP_THRESHOLD` come from the heap, and
up to :data:`TRIM_THRESHOLD` of free heap stays mapped, so the second call reuses the
first call's pages.  This is process-wide (numpy's large temporaries are served the same
way) and bounded; ``release_freed_code`` still gives everything back with
``malloc_trim``.  ``ISOZYME_KEEP_FREED_MEMORY=0`` turns it off; on a C library without
``mallopt`` it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import threading

#: Blocks up to this size are served from the heap, not ``mmap`` (glibc's own ceiling
#: for its adaptive threshold on 64-bit systems).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap kept mapped instead of trimmed.
TRIM_THRESHOLD = 64 << 20

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_DONE = False
_LOCK = threading.Lock()


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once (see the module docstring); whether they are set."""
    global _DONE
    with _LOCK:
        if _DONE:
            return True
        if os.environ.get("ISOZYME_KEEP_FREED_MEMORY", "1") == "0":
            return False
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        _DONE = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        return _DONE
