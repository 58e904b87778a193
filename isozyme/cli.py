"""Command lines: ``isozyme diff``, ``isozyme demo`` and ``isozyme-opt``.

``isozyme diff FILE.py:FUNC --mode reverse --args 1.0 2.0 --print-ir all`` traces and
differentiates FUNC, prints the requested IR stages under a header line each, then the
result.  ``isozyme-opt FILE.mlir --passes inline,enzyme-differentiate,simplify-ad``
runs isozyme's passes on IR text (Enzyme-MLIR's ``enzyme.fwddiff``/``enzyme.autodiff``
included) and prints the result.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import isozyme as iz
from isozyme.compiler.pipeline import ALL_STAGES

_MODES = {
    "forward": iz.Forward,
    "forward-with-primal": iz.ForwardWithPrimal,
    "reverse": iz.Reverse,
    "reverse-with-primal": iz.ReverseWithPrimal,
}


def stage_header(stage: str) -> str:
    """The header line printed above each IR stage."""
    return f"// ===== isozyme IR stage: {stage} ====="


def load_function(target: str):
    """Load ``FILE.py:FUNC`` and return the function object."""
    if ":" not in target:
        raise SystemExit(f"isozyme: expected FILE.py:FUNC, got {target!r}")
    path_s, name = target.rsplit(":", 1)
    path = Path(path_s)
    if not path.is_file():
        raise SystemExit(f"isozyme: no such file: {path}")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    try:
        return getattr(module, name)
    except AttributeError:
        raise SystemExit(f"isozyme: {path} has no function {name!r}") from None


def annotate(mode: iz.Mode, values: Sequence[object], activities: Sequence[str] | None):
    """Wrap argument values in annotations from ``--activity`` words (or defaults)."""
    if activities is None:
        activities = [
            ("active" if mode.reverse else "dup") if isinstance(v, float) else "const"
            for v in values
        ]
    if len(activities) != len(values):
        raise SystemExit(
            f"isozyme: {len(values)} --args but {len(activities)} --activity words"
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
            raise SystemExit(f"isozyme: unknown activity {a!r} (active, const, dup)")
    return out


def parse_stages(spec: str | None) -> list[str]:
    """``a,b`` or ``all`` -> list of stage names."""
    if not spec:
        return []
    if spec == "all":
        return list(ALL_STAGES)
    stages = [s.strip() for s in spec.split(",") if s.strip()]
    for s in stages:
        if s not in ALL_STAGES:
            raise SystemExit(
                f"isozyme: unknown stage {s!r}; stages: {', '.join(ALL_STAGES)}, all"
            )
    return stages


def run_diff(fn, mode: iz.Mode, anns: Sequence[object], stages: Sequence[str], out=None) -> tuple:
    """Print the IR stages, then differentiate and print the result."""
    out = out or sys.stdout
    if stages:
        texts = iz.ir_stages(mode, fn, *anns, stages=stages)
        for s in stages:
            print(stage_header(s), file=out)
            print(texts[s].rstrip(), file=out)
            print(file=out)
    result = iz.autodiff(mode, fn, *anns)
    print(f"// ===== result: autodiff({mode}, {fn.__name__}, "
          f"{', '.join(map(repr, anns))}) =====", file=out)
    print(result, file=out)
    return result


def _cmd_diff(ns: argparse.Namespace) -> int:
    fn = load_function(ns.target)
    mode = _MODES[ns.mode]
    values = [ast.literal_eval(a) for a in ns.args]
    anns = annotate(mode, values, ns.activity)
    run_diff(fn, mode, anns, parse_stages(ns.print_ir))
    return 0


def _cmd_demo(ns: argparse.Namespace) -> int:
    from isozyme.examples import demo

    demo.main(print_ir=parse_stages(ns.print_ir or "traced,simplified,llvm-ir-optimized"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``isozyme`` command."""
    p = argparse.ArgumentParser(prog="isozyme", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diff", help="differentiate FILE.py:FUNC and print IR and result")
    d.add_argument("target", help="FILE.py:FUNC")
    d.add_argument("--mode", choices=sorted(_MODES), default="reverse")
    d.add_argument("--args", nargs="*", default=[], help="argument values (Python literals)")
    d.add_argument("--activity", nargs="*", default=None,
                   help="one of active/const/dup per argument")
    d.add_argument("--print-ir", default=None,
                   help=f"comma-separated stages ({', '.join(ALL_STAGES)}) or 'all'")
    d.set_defaults(func=_cmd_diff)
    demo = sub.add_parser("demo", help="differentiate a bundled example")
    demo.add_argument("--print-ir", default=None)
    demo.set_defaults(func=_cmd_demo)
    ns = p.parse_args(argv)
    try:
        return ns.func(ns)
    except iz.IsozymeError as e:
        print(f"isozyme: error: {e}", file=sys.stderr)
        return 1


def opt_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isozyme-opt``: run named passes on an MLIR file."""
    from xdsl.parser import Parser
    from xdsl.utils.exceptions import ParseError

    from isozyme.compiler.context import make_context
    from isozyme.compiler.passes import available_passes

    passes = available_passes()
    p = argparse.ArgumentParser(prog="isozyme-opt")
    p.add_argument("file", help="MLIR text file ('-' for stdin)")
    p.add_argument("--passes", default="",
                   help=f"comma-separated pass names: {', '.join(sorted(passes))}")
    ns = p.parse_args(argv)
    text = sys.stdin.read() if ns.file == "-" else Path(ns.file).read_text()
    ctx = make_context()
    try:
        module = Parser(ctx, text, ns.file).parse_module()
    except ParseError as e:
        print(f"isozyme-opt: {e}", file=sys.stderr)
        return 1
    for name in [s.strip() for s in ns.passes.split(",") if s.strip()]:
        if name not in passes:
            print(f"isozyme-opt: unknown pass {name!r}", file=sys.stderr)
            return 2
        passes[name]().apply(ctx, module)
    module.verify()
    print(module)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
