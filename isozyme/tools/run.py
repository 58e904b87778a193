"""``isozyme run FILE.mlir --entry F --args ... [--json]``: JIT-run a function of a
textual IR file on the CPU, as ``mlir-cpu-runner`` does (:mod:`isozyme.tools.ir_run`).

``--args`` words are numbers (``2``, ``-1.5``, ``1e-3``, ``nan``, ``inf``,
``true``/``false`` for ``i1``) or JSON lists of any nesting for memref arguments
(``[[1, 2], [3, 4]]``). The command prints each result on a line of its own (memrefs
as JSON lists), then one line ``arg K: [...]`` per memref argument with its contents
after the call. With ``--json`` a last line follows: one JSON object
``{"results": [...], "args": [...]}`` (``args``: the memref arguments' contents after
the call, the scalar arguments as given; non-finite numbers as ``NaN``/``Infinity``,
as Python's ``json`` writes them). Errors are one line on standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from isozyme.errors import IsozymeError


def add_run_parser(sub: Any) -> None:
    """Add the ``run`` subcommand to the subparsers ``sub`` of ``isozyme``."""
    r = sub.add_parser(
        "run", help="JIT-run a function of a textual IR file (.mlir) on the CPU"
    )
    r.add_argument("file", help="MLIR text file ('-' for stdin)")
    r.add_argument("--entry", required=True, help="the function to call (@ optional)")
    r.add_argument("--args", nargs="*", default=[],
                   help="one word per argument: a number, or a JSON list for a memref")
    r.add_argument("--json", action="store_true",
                   help='end with one JSON line {"results": [...], "args": [...]}')
    r.set_defaults(func=cmd_run)


def parse_arg_words(words: Sequence[str]) -> list[Any]:
    """The ``--args`` words as values: JSON numbers, booleans and lists, or anything
    ``float`` reads (``nan``, ``inf``); any other word is an :class:`IsozymeError`."""
    values: list[Any] = []
    for k, word in enumerate(words):
        try:
            value = json.loads(word)
        except ValueError:
            try:
                value = float(word)
            except ValueError:
                raise IsozymeError(
                    f"--args word {k + 1} ({word!r}) is not a number or a JSON list"
                ) from None
        if not isinstance(value, int | float | list):  # a JSON string, object, null
            raise IsozymeError(
                f"--args word {k + 1} ({word!r}) is not a number or a JSON list"
            )
        values.append(value)
    return values


def _text(v: Any) -> str:
    """One result or argument as printed: JSON (``true``, ``1.5``, ``[[1.0, 2.0]]``)."""
    if isinstance(v, np.ndarray | np.generic):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # nan, inf, -inf
    return json.dumps(v)


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    if path.is_dir():
        raise IsozymeError(f"{path} is a directory, not an IR file")
    if not path.is_file():
        raise IsozymeError(f"no such file: {path}")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise IsozymeError(f"cannot read {path}: {e}") from None


def run_file(
    file: str, entry: str, words: Sequence[str], as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run ``entry`` of IR file ``file`` with the ``--args`` ``words``; print the
    results and memref arguments (and the JSON line with ``as_json``) to ``out``."""
    from isozyme.tools.ir_run import run_ir  # noqa: PLC0415 (the JIT loads lazily)

    out = out or sys.stdout
    values = parse_arg_words(words)
    source = _read(file)
    result = run_ir(source, entry, values, name=file)
    for v in result.results:
        print(_text(v), file=out)
    for k, v in enumerate(result.args):
        if isinstance(v, np.ndarray):
            print(f"arg {k}: {_text(v)}", file=out)
    if as_json:
        print(json.dumps(result.to_json()), file=out)
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    """The ``run`` subcommand (called by ``isozyme.cli.main`` under its guard)."""
    return run_file(ns.file, ns.entry, ns.args, ns.json)
