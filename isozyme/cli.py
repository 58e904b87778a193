"""Command lines: ``isozyme diff``, ``isozyme run``, ``isozyme demo`` (and
``isozyme-opt``, in :mod:`isozyme.tools.opt`).

``isozyme diff FILE.py:FUNC --mode reverse --args 1.0 2.0 --print-ir all`` traces and
differentiates FUNC, prints the requested IR stages under a header line each, then the
result (``--target cuda`` prints that target's stages, ``gpu``, ``cuda`` and ``host``
included; custom passes inserted with :mod:`isozyme.pipeline` add ``after:<pass>``).
``isozyme run FILE.mlir --entry F --args 1.5 '[1, 2]' [--json]`` JIT-runs function F of
a textual IR file on the CPU, its ``enzyme.fwddiff``/``enzyme.autodiff`` requests
expanded first, and prints the results and the memref arguments after the call
(:mod:`isozyme.tools.run`).  ``isozyme-opt FILE.mlir -p enzyme,simplify-ad`` runs
isozyme's registered passes on IR text (Enzyme-MLIR's syntax included) and prints the
result.  See docs/cli.md and docs/research.md.

Every misuse (a bad option, a wrong number of ``--args`` or one that is not a Python
literal, a missing file or function, a file that fails to import, an unknown pass, a
closed output pipe, an error of isozyme or of the traced function) exits with a non-zero
status and one line on standard error, never a Python traceback; set the environment
variable ``ISOZYME_TRACEBACK=1`` to get the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import isozyme as iz
from isozyme.compiler.pipeline import ALL_STAGES
from isozyme.compiler.targets import TARGET_NAMES, stages_of
from isozyme.tools.common import OneLineParser as _Parser
from isozyme.tools.common import guarded as _guarded
from isozyme.tools.common import one_line

_MODES = {
    "forward": iz.Forward,
    "forward-with-primal": iz.ForwardWithPrimal,
    "reverse": iz.Reverse,
    "reverse-with-primal": iz.ReverseWithPrimal,
}


def stage_header(stage: str) -> str:
    """The header line printed above each IR stage."""
    return f"// ===== isozyme IR stage: {stage} ====="


def _import_error(path: Path, e: BaseException) -> str:
    """``importing PATH failed: TYPE: MESSAGE (line N)``, N the last line of PATH in the
    traceback (a SyntaxError's own line)."""
    line = None
    if not isinstance(e, SyntaxError):  # a SyntaxError's message names its line
        for frame in traceback.extract_tb(e.__traceback__):
            if os.path.abspath(frame.filename) == os.path.abspath(path):
                line = frame.lineno
    where = f" (line {line})" if line else ""
    return f"importing {path} failed: {type(e).__name__}: {e}{where}"


def load_function(target: str):
    """Load ``FILE.py:FUNC`` and return the function object."""
    if ":" not in target:
        raise SystemExit(f"isozyme: error: expected FILE.py:FUNC, got {target!r}")
    path_s, name = target.rsplit(":", 1)
    path = Path(path_s)
    if not path.is_file():
        raise SystemExit(f"isozyme: error: no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"isozyme: error: not a Python file: {path}")
    module = importlib.util.module_from_spec(spec)
    added = sys.modules.setdefault(path.stem, module) is module
    saved_path = list(sys.path)
    # the file's directory first, as `python FILE.py` does: sibling imports work
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 (the user's module raised while importing)
        if added:
            sys.modules.pop(path.stem, None)
        raise SystemExit(f"isozyme: error: {one_line(_import_error(path, e))}") from None
    finally:
        sys.path[:] = saved_path
    fn = getattr(module, name, None)
    if fn is None:
        raise SystemExit(f"isozyme: error: {path} has no function {name!r}")
    if not callable(fn):
        raise SystemExit(f"isozyme: error: {path}: {name!r} is not a function")
    return fn


def parse_args_values(texts: Sequence[str]) -> list[object]:
    """The ``--args`` words as Python values (``ast.literal_eval``); a word that is not
    a Python literal exits with a one-line message."""
    values = []
    for k, text in enumerate(texts):
        try:
            values.append(ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise SystemExit(
                f"isozyme: error: --args word {k + 1} ({text!r}) is not a Python literal "
                "(a number, True/False, a quoted string, a tuple...)"
            ) from None
    return values


def check_arity(fn, values: Sequence[object]) -> None:
    """Exit with a one-line message when ``fn`` cannot take ``len(values)`` arguments."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: let autodiff say
        return
    try:
        sig.bind(*values)
    except TypeError as e:
        params = ", ".join(sig.parameters)
        raise SystemExit(
            f"isozyme: error: {getattr(fn, '__name__', 'the function')}({params}) cannot "
            f"take the {len(values)} value(s) given by --args: {e}"
        ) from None


def annotate(mode: iz.Mode, values: Sequence[object], activities: Sequence[str] | None):
    """Wrap argument values in annotations from ``--activity`` words (or defaults)."""
    if activities is None:
        activities = [
            ("active" if mode.reverse else "dup") if isinstance(v, float) else "const"
            for v in values
        ]
    if len(activities) != len(values):
        raise SystemExit(
            f"isozyme: error: {len(values)} --args but {len(activities)} --activity words"
        )
    out = []
    for v, a in zip(values, activities):
        if a == "const":
            out.append(iz.Const(v))
        elif a == "active":
            out.append(iz.Active(v))
        elif a in ("dup", "duplicated"):
            out.append(iz.Duplicated(v, type(v)(1.0)))
        else:
            raise SystemExit(f"isozyme: error: unknown activity {a!r} (active, const, dup)")
    return out


def parse_stages(spec: str | None, target: str | None = None) -> list[str]:
    """``a,b`` or ``all`` -> list of stage names (of ``target``; default ``cpu``)."""
    if not spec:
        return []
    # stages_of includes the ``after:<pass>`` stages of active custom passes
    known = stages_of(target if target is not None else "cpu")
    if spec == "all":
        return list(known)
    stages = [s.strip() for s in spec.split(",") if s.strip()]
    for s in stages:
        if s not in known:
            raise SystemExit(
                f"isozyme: error: unknown stage {s!r}; stages: {', '.join(known)}, all"
            )
    return stages


def run_diff(
    fn, mode: iz.Mode, anns: Sequence[object], stages: Sequence[str], out=None,
    target: str | None = None, generic: bool = False,
) -> tuple:
    """Print the IR stages (MLIR's generic form with ``generic``), then differentiate
    and print the result (on ``target`` when given: ``isozyme.target``)."""
    out = out or sys.stdout
    if stages:
        texts = iz.ir_stages(mode, fn, *anns, stages=stages, target=target,
                             generic=generic)
        for s in stages:
            print(stage_header(s), file=out)
            print(texts[s].rstrip(), file=out)
            print(file=out)
    if target == "cuda":
        from isozyme.runtime.cuda import unavailable  # noqa: PLC0415

        reason = unavailable()
        if reason is not None:  # the IR above is all this machine can give
            print(f"// ===== result: not run on this machine: {one_line(reason)} =====",
                  file=out)
            return ()
    if target is not None:
        with iz.target(target):
            result = iz.autodiff(mode, fn, *anns)
    else:
        result = iz.autodiff(mode, fn, *anns)
    print(f"// ===== result: autodiff({mode}, {fn.__name__}, "
          f"{', '.join(map(repr, anns))}) =====", file=out)
    print(result, file=out)
    return result


def _cmd_diff(ns: argparse.Namespace) -> int:
    fn = load_function(ns.target)
    mode = _MODES[ns.mode]
    values = parse_args_values(ns.args)
    check_arity(fn, values)
    anns = annotate(mode, values, ns.activity)
    target = ns.compile_target
    stages = parse_stages(ns.print_ir, target)
    if not ns.timings:
        run_diff(fn, mode, anns, stages, target=target, generic=ns.print_op_generic)
        return 0
    with iz.timings.collect() as reports:
        try:
            run_diff(fn, mode, anns, stages, target=target, generic=ns.print_op_generic)
        finally:  # also when the compilation failed: how far it got, and how fast
            for report in reports:
                print(report.format(), file=sys.stderr)
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from isozyme.examples import demo

    demo.main(print_ir=parse_stages(ns.print_ir or "traced,simplified,llvm-ir-optimized"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``isozyme`` command."""
    p = _Parser(prog="isozyme", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff", help="differentiate FILE.py:FUNC and print IR and result")
    d.add_argument("target", help="FILE.py:FUNC")
    d.add_argument("--mode", choices=sorted(_MODES), default="reverse")
    d.add_argument("--args", nargs="*", default=[], help="argument values (Python literals)")
    d.add_argument("--activity", nargs="*", default=None,
                   help="one of active/const/dup per argument")
    d.add_argument("--print-ir", default=None,
                   help=f"comma-separated stages ({', '.join(ALL_STAGES)}; with a GPU "
                   "target also gpu, cuda, host) or 'all'")
    d.add_argument("--target", dest="compile_target", choices=TARGET_NAMES, default=None,
                   help="compilation target (default: cpu; cuda for device arrays)")
    d.add_argument("--print-op-generic", action="store_true",
                   help="print the MLIR stages of --print-ir in MLIR's generic form "
                   "(as mlir-opt --mlir-print-op-generic does)")
    d.add_argument("--timings", action="store_true",
                   help="print the time of tracing, each pass, lowering, LLVM "
                   "optimization and code generation of each compilation to stderr "
                   "(as ISOZYME_TIMINGS=1 does)")
    d.set_defaults(func=_cmd_diff)
    demo = sub.add_parser("demo", help="differentiate a bundled example")
    demo.add_argument("--print-ir", default=None)
    demo.set_defaults(func=_cmd_demo)
    from isozyme.tools.run import add_run_parser  # noqa: PLC0415

    add_run_parser(sub)  # isozyme run FILE.mlir --entry F --args ... [--json]
    ns = p.parse_args(argv)
    return _guarded("isozyme", lambda: ns.func(ns))


def opt_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isozyme-opt`` (kept for importers): :func:`isozyme.tools.opt.main`."""
    from isozyme.tools.opt import main as opt  # noqa: PLC0415

    return opt(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
