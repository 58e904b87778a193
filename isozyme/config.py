"""isozyme's global settings: :func:`config`.

``boundscheck`` (default on; the environment variable ``ISOZYME_BOUNDSCHECK=0`` turns it
off for the process): every traced element index and integer view index is checked
against its array's size when the compiled code runs (``OutOfBoundsError``).  The
setting is read when a function is traced, so changing it empties the compile cache:
every call that starts after the change runs code compiled with the new setting (a call
already running in another thread finishes with the code it started with).
"""

from __future__ import annotations

import os


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


#: The current settings (read by the frontend at trace time).
_SETTINGS: dict[str, bool] = {
    "boundscheck": _env_flag("ISOZYME_BOUNDSCHECK", True),
}


def boundscheck() -> bool:
    """Whether traced code gets run-time bounds checks (see :func:`config`)."""
    return _SETTINGS["boundscheck"]


def config(*, boundscheck: bool | None = None) -> dict[str, bool]:
    """Change isozyme's global settings; return the previous ones.

    ``boundscheck``: check every array index of traced code at run time (the default;
    ``ISOZYME_BOUNDSCHECK=0`` in the environment starts the process with it off).  An
    index outside ``[-n, n)`` raises :class:`isozyme.OutOfBoundsError` naming the file,
    line, index and size, before any later write of the call.  Off, indexing costs
    nothing extra and an out-of-bounds index is undefined behaviour, as in C.

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
        if _SETTINGS != previous:
            api.clear_cache()
    return previous
