"""``isozyme-opt``: run isozyme's passes on a textual IR file, as ``mlir-opt``/``xdsl-opt`` do.

    isozyme-opt FILE.mlir -p 'enzyme,simplify-ad,canonicalize' [-o OUT] [--print-op-generic]
    isozyme-opt FILE.mlir --passes inline,enzyme-differentiate --print-ir-after-all
    isozyme-opt --list-passes

The pipeline is written in xdsl-opt's spelling, ``name{option=value other=1,2},name``
(``-p``, ``--passes`` and ``--pass-pipeline`` are the same option; given several times,
the pipelines run one after the other); mlir-opt's ``builtin.module(...)`` around it is
accepted.  The input is parsed with every dialect of isozyme's IR (Enzyme-MLIR's
``enzyme.fwddiff``/``enzyme.autodiff`` included), verified, then each pass runs and the
module is verified again after it.  ``FILE`` ``-`` (or none) reads standard input.

Every error is ONE line on standard error and a non-zero status, never a traceback:
status 2 for a misuse of the command line (an unknown pass or option, a pipeline that does
not parse), 1 for a missing file, an input that does not parse (``FILE:LINE:COL``) or does
not verify, and a pass that fails or leaves IR that does not verify (naming the pass).
"""

from __future__ import annotations

import argparse
import io
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from xdsl.passes import ModulePass

from isozyme.errors import IsozymeError
from isozyme.tools.common import (
    OneLineParser,
    fail,
    guarded,
    one_line,
    parse_verify_location,
)

PROG = "isozyme-opt"

#: The header line ``--print-ir-after-all`` prints above each pass's output (mlir-opt's).
AFTER_HEADER = "// -----// IR Dump After {pass_} //----- //"


class OptError(Exception):
    """A failure ``isozyme-opt`` reports as one line with its exit ``status``."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


# -- the pass table ---------------------------------------------------------------------


def _registry():
    """isozyme's pass registry (imported on first use: it is slow to import)."""
    from isozyme.compiler.passes import registry  # noqa: PLC0415
    return registry


def option_line(opt) -> str:
    """One option of a pass (a registry ``PassOption``): ``name: type = default  help``."""
    default = " (required)" if opt.required else f" = {opt.default_text}"
    return f"{opt.name}: {opt.type}{default}" + (f"  {opt.help}" if opt.help else "")


def list_passes(out: typing.TextIO) -> None:
    """Print every registered pass, in the registry's order: its name and one-line
    description, then its options indented."""
    for info in _registry().registered_passes():
        print(f"{info.name}: {info.summary or '(no description)'}", file=out)
        for opt in info.options:
            print(f"    {option_line(opt)}", file=out)


# -- the pipeline -----------------------------------------------------------------------


def _strip_module_anchor(spec: str) -> str:
    """``builtin.module(a,b)`` (mlir-opt's spelling) -> ``a,b``."""
    s = spec.strip()
    if s.startswith("builtin.module(") and s.endswith(")"):
        return s[len("builtin.module("):-1]
    return s


def parse_pipeline(specs: Sequence[str]) -> list[ModulePass]:
    """The passes of the pipelines ``specs`` (xdsl-opt's spelling), in order; an unknown
    pass or option, or a spec that does not parse, is an :class:`OptError` (status 2)."""
    from xdsl.utils.arg_spec import parse_pipeline as xdsl_parse_pipeline  # noqa: PLC0415
    from xdsl.utils.exceptions import ArgSpecParseError  # noqa: PLC0415

    text = ",".join(s for s in (_strip_module_anchor(x) for x in specs) if s)
    if not text:
        return []
    try:
        arg_specs = list(xdsl_parse_pipeline(text))
    except ArgSpecParseError as e:  # a BaseException in xDSL: caught by name
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        col = next((ln.rsplit(":", 1)[1] for ln in lines if ln.startswith("pass-pipeline:")),
                   "?")
        raise OptError(f"pass pipeline {text!r} does not parse at column {col}: "
                       f"{lines[-1] if lines else e}", 2) from None
    registry = _registry()
    passes = []
    for spec in arg_specs:
        if spec.name not in registry.pass_names():
            raise OptError(
                f"unknown pass {spec.name!r}; passes: {', '.join(sorted(registry.pass_names()))} "
                f"(see {PROG} --list-passes)", 2)
        info = registry.pass_info(spec.name)
        try:
            passes.append(info.from_spec(spec))
        except IsozymeError as e:  # an unknown option, a value of the wrong type
            message = str(e)
            if "its options" not in message:
                opts = "; ".join(option_line(o) for o in info.options) or "none"
                message += f" (its options: {opts})"
            raise OptError(message, 2) from None
    return passes


def pass_spelling(p: ModulePass) -> str:
    """``p`` as a pipeline spells it (``inline{keep-ruled=true}``), options at their
    default left out."""
    return _registry().pipeline_spelling([p])


# -- input, passes, output --------------------------------------------------------------


def read_input(file: str) -> tuple[str, str]:
    """``(text, name)`` of the input file (``-``: standard input, named ``<stdin>``)."""
    if file == "-":
        return sys.stdin.read(), "<stdin>"
    path = Path(file)
    if not path.exists():
        raise OptError(f"no such file: {file}")
    if not path.is_file():
        raise OptError(f"not a file: {file}")
    try:
        return path.read_text(), file
    except (OSError, UnicodeDecodeError) as e:
        raise OptError(f"cannot read {file}: {e}") from None


def parse_module(ctx, text: str, name: str):
    """Parse and verify the input; a parse error, or an op that fails to verify while
    it is parsed, names ``FILE:LINE:COL``."""
    from xdsl.dialects.builtin import ModuleOp  # noqa: PLC0415
    from xdsl.parser import Parser  # noqa: PLC0415
    from xdsl.utils.exceptions import ParseError, VerifyException  # noqa: PLC0415

    parser = Parser(ctx, text, name)
    try:
        module = parser.parse_module()
    except ParseError as e:
        where = e.span.get_location() if e.span is not None else name
        raise OptError(f"{where}: does not parse: {e.msg}") from None
    except VerifyException as e:  # an op's types checked as the parser builds it
        raise OptError(f"{parse_verify_location(parser, name)}: does not verify: "
                       f"{_first_lines(e)}") from None
    if not isinstance(module, ModuleOp):  # pragma: no cover - parse_module wraps
        raise OptError(f"{name}: expected a builtin.module")
    try:
        module.verify()
    except VerifyException as e:
        raise OptError(f"{name} does not verify: {_first_lines(e)}") from None
    return module


def _first_lines(e: BaseException, n: int = 3) -> str:
    """The first ``n`` non-blank lines of an error (a verifier's message may hold the
    whole module)."""
    lines = [s for s in str(e).splitlines() if s.strip()]
    return one_line("\n".join(lines[:n])) + (" ..." if len(lines) > n else "")


def print_module(module, out: typing.TextIO, generic: bool) -> None:
    """Print ``module`` (the generic form of every op with ``generic``)."""
    from xdsl.printer import Printer  # noqa: PLC0415

    Printer(stream=out, print_generic_format=generic).print_op(module)
    print(file=out)


def run_passes(ctx, module, passes: Sequence[ModulePass],
               after: Callable[[ModulePass], None] | None = None) -> None:
    """Apply ``passes`` in order, verifying after each (``after(pass)`` then); a failure
    is an :class:`OptError` naming the pass."""
    from xdsl.utils.exceptions import VerifyException  # noqa: PLC0415


    for p in passes:
        try:
            p.apply(ctx, module)
        except IsozymeError as e:
            raise OptError(f"pass {p.name!r} failed: {e}") from None
        except Exception as e:  # noqa: BLE001 (the command line never shows a traceback)
            raise OptError(f"pass {p.name!r} failed: {type(e).__name__}: {e}") from e
        try:
            module.verify()
        except VerifyException as e:
            raise OptError(f"the IR after pass {p.name!r} does not verify: "
                           f"{_first_lines(e)}") from None
        if after is not None:
            after(p)


def _parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description="\n\n".join(__doc__.split("\n\n")[:2]),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default="-",
                   help="MLIR text file ('-' or none: standard input)")
    p.add_argument("-p", "--passes", "--pass-pipeline", dest="pipeline", action="append",
                   default=[], metavar="PIPELINE",
                   help="passes in xdsl-opt's spelling: 'a,b{option=value}' "
                   "(see --list-passes); repeated: run one after the other")
    p.add_argument("--print-ir-after-all", action="store_true",
                   help="print the IR after each pass on standard output, under a header line")
    p.add_argument("--print-op-generic", action="store_true",
                   help="print every op in MLIR's generic form")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="write the result to FILE instead of standard output")
    p.add_argument("--list-passes", action="store_true",
                   help="list the passes with their options and exit")
    return p


def _run(ns) -> int:
    if ns.list_passes:
        list_passes(sys.stdout)
        return 0
    passes = parse_pipeline(ns.pipeline)  # before reading anything
    text, name = read_input(ns.file)
    from isozyme.compiler.context import make_context  # noqa: PLC0415

    ctx = make_context()
    module = parse_module(ctx, text, name)

    def dump(p: ModulePass) -> None:
        print(AFTER_HEADER.format(pass_=pass_spelling(p)), file=sys.stdout)
        print_module(module, sys.stdout, ns.print_op_generic)

    run_passes(ctx, module, passes, dump if ns.print_ir_after_all else None)
    if ns.output is None:
        print_module(module, sys.stdout, ns.print_op_generic)
        return 0
    buf = io.StringIO()
    print_module(module, buf, ns.print_op_generic)
    try:
        Path(ns.output).write_text(buf.getvalue())
    except OSError as e:
        raise OptError(f"cannot write {ns.output}: {e.strerror or e}") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isozyme-opt``; returns the exit status."""
    ns = _parser().parse_args(argv)

    def run() -> int:
        try:
            return _run(ns)
        except OptError as e:
            return fail(PROG, str(e), e.status)

    return guarded(PROG, run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
