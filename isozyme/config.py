"""isozyme's global settings: :func:`config`.

``boundscheck`` (default on; the environment variable ``ISOZYME_BOUNDSCHECK=0`` turns it
off for the process): every traced element index and integer view index is checked
against its array's size when the compiled code runs (``OutOfBoundsError``).  The
setting is read when a function is traced, so changing it empties the compile cache:
every call that starts after the change runs code compiled with the new setting (a call
already running in another thread finishes with the code it started with).

``threads`` (default: the number of cores this process may run on,
``os.sched_getaffinity``; the environment variable ``ISOZYME_THREADS`` sets it for the
process): the CPU target runs the outermost parallel loops (``scf.parallel``) on that
many threads (``runtime/thread_pool.py``).  ``threads=1`` compiles and runs every loop
serially, as without the setting.
"""

from __future__ import annotations

import os


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _env_threads() -> int:
    value = os.environ.get("ISOZYME_THREADS", "").strip()
    if value == "":
        return _usable_cores()
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
}


def boundscheck() -> bool:
    """Whether traced code gets run-time bounds checks (see :func:`config`)."""
    return bool(_SETTINGS["boundscheck"])


def threads() -> int:
    """How many threads run a parallel loop on the CPU (see :func:`config`)."""
    return int(_SETTINGS["threads"])


def config(
    *, boundscheck: bool | None = None, threads: int | None = None
) -> dict[str, bool | int]:
    """Change isozyme's global settings; return the previous ones.

    ``boundscheck``: check every array index of traced code at run time (the default;
    ``ISOZYME_BOUNDSCHECK=0`` in the environment starts the process with it off).  An
    index outside ``[-n, n)`` raises :class:`isozyme.OutOfBoundsError` naming the file,
    line, index and size, before any later write of the call.  Off, indexing costs
    nothing extra and an out-of-bounds index is undefined behaviour, as in C.

    ``threads``: how many threads the CPU target runs the outermost parallel loops on
    (default: the cores this process may use; ``ISOZYME_THREADS`` in the environment).
    A loop runs in parallel when it has enough work (trip count times body size) and
    its iterations cannot race (a reverse-mode loop that accumulates into a shared
    shadow with atomics stays serial).  ``threads=1`` runs everything serially.

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
        if _SETTINGS != previous:
            api.clear_cache()
    return previous
