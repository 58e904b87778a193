"""isozyme's global settings: :func:`config`.

``boundscheck`` (default on; the environment variable ``ISOZYME_BOUNDSCHECK=0`` turns it
off for the process): every traced element index and integer view index is checked
against its array's size when the compiled code runs (``OutOfBoundsError``).  The
setting is read when a function is traced, so changing it empties the compile cache:
every call that starts after the change runs code compiled with the new setting (a call
already running in another thread finishes with the code it started with).

``threads`` (default 1; the environment variable ``ISOZYME_THREADS`` sets it for the
process): the CPU target runs the outermost parallel loops (``scf.parallel``) on that
many threads (``runtime/thread_pool.py``).  ``threads=1`` compiles and runs every loop
serially.  The pool is opt-in (as numba's ``parallel=True``): with more than one thread
each parallel loop is compiled twice (a chunk function beside the serial path), which
made compilations about 1.75x longer in measurements, and a dispatch costs tens of
microseconds.

``disk_cache`` (default on; ``ISOZYME_DISK_CACHE=0`` turns it off for the process):
compiled CPU code is stored on disk (``$ISOZYME_CACHE_DIR``, see
:mod:`isozyme.runtime.disk_cache`) and a later process loads it instead of compiling.
Changing it does not empty the compile cache.
"""

from __future__ import annotations

import os


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _env_threads() -> int:
    value = os.environ.get("ISOZYME_THREADS", "").strip()
    if value == "":
        return 1
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"ISOZYME_THREADS must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"ISOZYME_THREADS must be a positive integer, got {value!r}")
    return n


#: The current settings (read by the frontend at trace time).
_SETTINGS: dict[str, bool | int] = {
    "boundscheck": _env_flag("ISOZYME_BOUNDSCHECK", True),
    "threads": _env_threads(),
    "disk_cache": _env_flag("ISOZYME_DISK_CACHE", True),
}


def boundscheck() -> bool:
    """Whether traced code gets run-time bounds checks (see :func:`config`)."""
    return bool(_SETTINGS["boundscheck"])


def threads() -> int:
    """How many threads run a parallel loop on the CPU (see :func:`config`)."""
    return int(_SETTINGS["threads"])


def disk_cache() -> bool:
    """Whether compiled CPU code is stored and looked up on disk (see :func:`config`)."""
    return bool(_SETTINGS["disk_cache"])


def config(
    *, boundscheck: bool | None = None, threads: int | None = None,
    disk_cache: bool | None = None,
) -> dict[str, bool | int]:
    """Change isozyme's global settings; return the previous ones.

    ``boundscheck``: check every array index of traced code at run time (the default;
    ``ISOZYME_BOUNDSCHECK=0`` in the environment starts the process with it off).  An
    index outside ``[-n, n)`` raises :class:`isozyme.OutOfBoundsError` naming the file,
    line, index and size, before any later write of the call (in a ``prange`` loop
    run on several threads, iterations after the failing one, which have no order,
    may have written their elements: the error names the lowest failing
    iteration, as a serial run would).  Off, indexing costs
    nothing extra and an out-of-bounds index is undefined behaviour, as in C.

    ``threads``: how many threads the CPU target runs the outermost parallel loops on
    (default 1, that is serial; ``ISOZYME_THREADS`` in the environment).
    A loop runs in parallel when it has enough work (trip count times body size) and
    its iterations cannot race (a reverse-mode loop that accumulates into a shared
    shadow with atomics stays serial).  ``threads=1`` runs everything serially.

    ``disk_cache``: store compiled CPU code on disk and load it in later processes
    (default on; ``ISOZYME_DISK_CACHE=0``; the directory is ``$ISOZYME_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/isozyme``, else ``~/.cache/isozyme``).  Changing it keeps the
    compile cache.

    Changing a setting empties the compile cache, so every function is traced again
    with the new setting.  The previous settings come back so that they can be
    restored: ``old = isozyme.config(boundscheck=False); ...; isozyme.config(**old)``.
    """
    from isozyme import api  # noqa: PLC0415

    # Under the compile lock: a compilation in flight finishes (and is cached) with the
    # old setting before the cache is emptied, and none starts until the new one is in.
    with api._COMPILE_LOCK:
        previous = dict(_SETTINGS)
        if boundscheck is not None:
            if not isinstance(boundscheck, bool):
                raise TypeError(f"boundscheck must be a bool, got {boundscheck!r}")
            _SETTINGS["boundscheck"] = boundscheck
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
                raise ValueError(f"threads must be a positive int, got {threads!r}")
            _SETTINGS["threads"] = threads
        if disk_cache is not None:
            if not isinstance(disk_cache, bool):
                raise TypeError(f"disk_cache must be a bool, got {disk_cache!r}")
            _SETTINGS["disk_cache"] = disk_cache
        # Code does not depend on where it is cached: only other settings empty the cache.
        if {k: v for k, v in _SETTINGS.items() if k != "disk_cache"} != {
                k: v for k, v in previous.items() if k != "disk_cache"}:
            api.clear_cache()
    return previous
