"""Error reporting for the Python frontend: locate the user's source line, build messages.

Errors raised while tracing must name the *user's* file and line, not a line inside
isozyme.  :func:`user_location` walks the Python stack outwards and returns the first
frame that does not belong to this package (converted user functions are compiled with
their original file name and line numbers, so their frames point at the user's code).
"""

from __future__ import annotations

import linecache
import os
import sys

from isozyme.errors import TraceError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# (filename, line) -> why the AST transform left a construct on that line as plain
# Python.  Consulted when a traced value is then used as a Python bool.
_UNCONVERTED: dict[tuple[str, int], str] = {}


def note_unconverted(filename: str, line: int, why: str) -> None:
    """Record that the statement at ``filename:line`` was left as plain Python and why."""
    _UNCONVERTED.setdefault((filename, line), why)


def unconverted_reason(filename: str, line: int) -> str | None:
    """The reason recorded by :func:`note_unconverted` for ``filename:line``, if any."""
    return _UNCONVERTED.get((filename, line))


def _is_internal(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)


def user_location() -> tuple[str, int]:
    """Return ``(filename, line)`` of the innermost stack frame outside this package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename) and not filename.startswith("<frozen"):
            return filename, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


def format_location(filename: str, line: int) -> str:
    """``file:line``, as used at the start of every TraceError message."""
    return f"{filename}:{line}"


def source_line(filename: str, line: int) -> str:
    """The stripped text of ``filename:line``, or an empty string when unavailable."""
    return linecache.getline(filename, line).strip()


def trace_error(
    construct: str, why: str, location: tuple[str, int] | None = None
) -> TraceError:
    """Build a :class:`TraceError` ``"{file}:{line}: cannot trace {construct}: {why}"``.

    ``location`` defaults to the innermost user frame.  The offending source line, when
    available, is appended on a second line.
    """
    filename, line = location if location is not None else user_location()
    message = f"{format_location(filename, line)}: cannot trace {construct}: {why}"
    text = source_line(filename, line)
    if text:
        message += f"\n    {text}"
    return TraceError(message)
