"""What every isozyme command line shares: one-line errors and no tracebacks.

Every misuse or failure of a command exits with a non-zero status and ONE line on
standard error, ``PROG: error: MESSAGE``; the environment variable
``ISOZYME_TRACEBACK=1`` shows the traceback of an unexpected error instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from isozyme.errors import IsozymeError


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` with one-line errors: ``PROG: error: MESSAGE (see PROG --help)``,
    exit status 2 (argparse's usual status), no usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: str) -> str:
    """``text`` on one line: its non-blank lines, stripped, joined with `` | ``."""
    return " | ".join(s.strip() for s in str(text).splitlines() if s.strip())


def parse_verify_location(parser: object, name: str) -> str:
    """``NAME:LINE:COL`` of the op whose verification failed while ``parser`` (an xDSL
    ``Parser``) read it: xDSL checks an op's types when the op is built, after its
    text, so the op is the one ending before the parser's position (its line, and
    the column where that line's text starts). ``NAME`` alone when unknown."""
    try:
        text: str = parser.lexer.input.content  # type: ignore[attr-defined]
        end = parser.pos  # type: ignore[attr-defined]
    except AttributeError:
        return name
    last = len(text[:end].rstrip()) - 1
    if last < 0:
        return name
    line_start = text.rfind("\n", 0, last) + 1
    line = text.count("\n", 0, last) + 1
    line_text = text[line_start:last + 1]
    col = len(line_text) - len(line_text.lstrip()) + 1
    return f"{name}:{line}:{col}"


def fail(prog: str, message: str, status: int = 1) -> int:
    """Print ``PROG: error: MESSAGE`` as one line on standard error; return ``status``."""
    try:
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
    except OSError:  # standard error is closed too: nothing left to tell
        pass
    return status


def silence_stdout() -> None:
    """After a closed pipe: point standard output at /dev/null, so that the final flush
    at exit does not fail again (Python's recommended handling of EPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (redirected in tests)
        pass


def guarded(prog: str, run: Callable[[], int]) -> int:
    """Run a command; turn every error into one line on standard error and a non-zero
    status (1; 130 for Ctrl-C).  ``SystemExit`` (argparse, one-line messages) passes."""
    try:
        status = run()
        sys.stdout.flush()  # a closed pipe fails here, not in the flush at exit
        return status
    except BrokenPipeError:
        silence_stdout()
        return fail(prog, "standard output was closed (broken pipe)")
    except KeyboardInterrupt:
        return fail(prog, "interrupted", 130)
    except IsozymeError as e:
        return fail(prog, str(e))
    except Exception as e:  # noqa: BLE001 (the command line never shows a traceback)
        if os.environ.get("ISOZYME_TRACEBACK"):
            raise
        return fail(prog, f"{type(e).__name__}: {e}")
