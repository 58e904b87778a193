"""Run one function of a textual IR module on the CPU, as ``mlir-cpu-runner`` does.

:func:`run_ir` parses the module with isozyme's dialects, expands the ``enzyme.fwddiff``
and ``enzyme.autodiff`` requests it holds by running autodiff's target-independent stages
after ``traced`` (``optimized``, ``differentiated``, ``simplified``: cf branches raised,
calls inlined, ``linalg`` and ``affine`` lowered to loops, derivatives generated and
simplified, as the pipeline does), lowers it to the ``llvm`` dialect,
JIT-compiles it and calls the entry function through its C entry point
(:mod:`isozyme.compiler.lowering.add_c_entry_points`).

Arguments: one Python value per parameter of the entry. Scalars (``f64``, ``f32``,
``i1``, ``i8``..``i64``, ``index``) are numbers; a ``memref`` of any rank is a nested
list (its shape is the list's) or a numpy array. A numpy array of the memref's dtype in
C order is passed without a copy, so the function's stores land in it; anything else
is copied into a new array. Either way :attr:`IRRunResult.args` holds the array after
the call. Every misuse (an unknown entry, a wrong number of arguments, a value that
does not fit its type or a static size) is an :class:`~isozyme.errors.IsozymeError`
raised before anything runs.

The entry may be a private function: lowering gives the entry, and only it, a C entry
point (``add-c-entry-points{only=F}``), and while the stages run the entry is public
in the runner's own copy of the module (``inline`` removes private functions without
callers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
    ModuleOp,
)
from xdsl.ir import Attribute
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import apply_lowering
from isozyme.compiler.lowering.add_c_entry_points import AddCEntryPointsPass
from isozyme.compiler.pipeline import Pipeline, Stage, stage_passes
from isozyme.compiler.targets import COMMON_STAGES
from isozyme.compiler.targets.cpu import CpuTarget
from isozyme.dialects.enzyme import AutoDiffOp, ForwardDiffOp
from isozyme.errors import IsozymeError, UnsupportedError
from isozyme.runtime.jit import compile_llvm_module
from isozyme.runtime.marshal import MemrefSpec, memref_spec
from isozyme.tools.common import parse_verify_location

__all__ = ["IRRunResult", "parse_ir", "expand_requests", "run_ir"]


@dataclass
class IRRunResult:
    """What one call of an IR function gave.

    ``results``: one value per result (``float``, ``int``, ``bool``, or a numpy array
    copied out of a memref result). ``args``: one value per argument: the numpy array
    of a memref argument after the call, a scalar argument as it was given.
    """

    results: list[Any] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def to_json(self) -> dict[str, list[Any]]:
        """``{"results": [...], "args": [...]}`` with arrays as nested lists."""
        return {
            "results": [_plain(v) for v in self.results],
            "args": [_plain(v) for v in self.args],
        }


def _plain(v: Any) -> Any:
    """``v`` with numpy arrays and scalars as Python lists and numbers."""
    if isinstance(v, np.ndarray | np.generic):
        return v.tolist()
    return v


def parse_ir(source: str, name: str = "<input>") -> ModuleOp:
    """Parse and verify IR text with isozyme's dialects.

    Raises :class:`IsozymeError` with ``NAME:LINE:COL: message`` on a parse error or
    an op that fails to verify while parsed (``arith.addi`` on ``f64``), and the
    verifier's message on an invalid module."""
    parser = Parser(make_context(), source, name)
    try:
        module = parser.parse_module()
    except ParseError as e:
        raise IsozymeError(f"{e.span.get_location()}: {e.msg}") from None
    except VerifyException as e:  # an op's types checked as the parser builds it
        first = next((s for s in str(e).splitlines() if s.strip()), "invalid IR")
        raise IsozymeError(
            f"{parse_verify_location(parser, name)}: does not verify: {first}") from None
    _verify(module, name)
    return module


def _verify(module: ModuleOp, name: str) -> None:
    try:
        module.verify()
    except VerifyException as e:
        first = next((s for s in str(e).splitlines() if s.strip()), "invalid IR")
        raise IsozymeError(f"{name} does not verify: {first}") from None


def has_requests(module: ModuleOp) -> bool:
    """Whether ``module`` holds an ``enzyme.fwddiff``/``enzyme.autodiff`` request."""
    return any(isinstance(op, ForwardDiffOp | AutoDiffOp) for op in module.walk())


def common_pipeline() -> Pipeline:
    """autodiff's target-independent stages after ``traced`` (``optimized``,
    ``differentiated``, ``simplified``), without target and without custom passes."""
    return Pipeline(tuple(Stage(s, stage_passes(s)) for s in COMMON_STAGES[1:]))


def expand_requests(module: ModuleOp) -> None:
    """Run autodiff's stages after ``traced`` on ``module``, in place: the ``enzyme``
    requests become calls of derivative functions, and hand-written ``cf``, ``linalg``
    and ``affine`` code is raised or lowered as the pipeline does for traced code, so
    that the CPU target can lower the result. Private functions without callers are
    removed (by ``inline``)."""
    common_pipeline().run(module, ctx=make_context())


def _functions(module: ModuleOp) -> dict[str, func.FuncOp]:
    """The module's functions with a body, by name."""
    return {
        f.sym_name.data: f
        for f in module.ops
        if isinstance(f, func.FuncOp) and f.body.blocks
    }


def _find_entry(module: ModuleOp, entry: str, name: str) -> func.FuncOp:
    entry = entry.removeprefix("@")
    funcs = _functions(module)
    if entry not in funcs:
        names = ", ".join(f"@{n}" for n in funcs) or "none"
        raise IsozymeError(f"no function @{entry} in {name}; functions: {names}")
    return funcs[entry]


def _slot_type(t: Attribute, what: str) -> str | MemrefSpec:
    """The runtime's slot type name of scalar type ``t``, or the memref's spec.

    ``i8`` and ``i16`` travel as ``i32``: the entry loads them from the first bytes of
    their 8-byte slot and stores results sign-extended (little-endian), which is what
    the ``i32`` slot code packs and reads."""
    if isinstance(t, MemRefType):
        try:
            spec = memref_spec(t)
        except TypeError as e:
            raise UnsupportedError(f"{what}: {e}") from None
        assert spec is not None
        return spec
    if isinstance(t, Float64Type):
        return "f64"
    if isinstance(t, Float32Type):
        return "f32"
    if isinstance(t, IndexType):
        return "index"
    if isinstance(t, IntegerType) and t.width.data in (1, 8, 16, 32, 64):
        w = t.width.data
        return "i1" if w == 1 else ("i32" if w < 32 else f"i{w}")
    raise UnsupportedError(
        f"{what} has type {t}, which isozyme run cannot pass "
        "(supported: f64, f32, i1, i8, i16, i32, i64, index, memref)"
    )


def _entry_type(slot: str | MemrefSpec) -> str:
    """The type name :meth:`CompiledModule.entry` takes for ``slot``."""
    return slot.text if isinstance(slot, MemrefSpec) else slot


def _scalar(value: Any, t: Attribute, what: str) -> Any:
    """Check scalar argument ``value`` against type ``t``; return what to pass."""
    if isinstance(t, Float64Type | Float32Type):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise IsozymeError(f"{what} ({t}) must be a number, got {value!r}")
        return float(value)
    width = 64 if isinstance(t, IndexType) else t.width.data  # type: ignore[union-attr]
    if width == 1:
        if value in (0, 1) and isinstance(value, bool | int | np.bool_ | np.integer):
            return bool(value)
        raise IsozymeError(f"{what} (i1) must be true/false or 0/1, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise IsozymeError(f"{what} ({t}) must be an integer, got {value!r}")
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    if not lo <= int(value) <= hi:
        raise IsozymeError(f"{what} ({t}) must be in [{lo}, {hi}], got {value}")
    return int(value)


def _array(value: Any, spec: MemrefSpec, what: str) -> np.ndarray:
    """Check memref argument ``value`` (nested list or array) against ``spec``; return
    the array to pass (``value`` itself when it already fits)."""
    if isinstance(value, np.ndarray):
        raw = value
    elif isinstance(value, list | tuple) or (
        spec.rank == 0 and isinstance(value, int | float | np.number)
    ):
        try:
            raw = np.array(value)
        except ValueError:
            raise IsozymeError(
                f"{what} ({spec.text}) must be a rectangular nested list"
            ) from None
    else:
        raise IsozymeError(
            f"{what} ({spec.text}) must be a nested list or an array, got {value!r}"
        )
    if raw.ndim != spec.rank:
        raise IsozymeError(
            f"{what} ({spec.text}) must have {spec.rank} dimension(s), "
            f"got shape {list(raw.shape)}"
        )
    for d, (want, got) in enumerate(zip(spec.shape, raw.shape)):
        if want is not None and want != got:
            raise IsozymeError(
                f"{what} ({spec.text}): size {got} of dimension {d} differs from "
                f"the static size {want}"
            )
    if raw.size:
        kind = spec.dtype.kind
        allowed = {"f": "biuf", "i": "biu", "b": "b"}[kind]
        if raw.dtype.kind not in allowed and not (kind == "b" and _zeros_ones(raw)):
            raise IsozymeError(
                f"{what} ({spec.text}) holds {raw.dtype.name} values, which do not fit "
                f"its element type"
            )
    contiguous = np.empty(raw.shape, spec.dtype).strides
    for d, (want, n) in enumerate(zip(spec.strides, raw.shape)):
        if want is not None and n > 1 and want * spec.dtype.itemsize != contiguous[d]:
            raise UnsupportedError(
                f"{what} ({spec.text}): static strides other than row-major are not "
                "supported by isozyme run"
            )
    if raw.dtype == spec.dtype and raw.flags.c_contiguous and raw.flags.writeable:
        return raw
    return np.array(raw, dtype=spec.dtype, order="C")


def _zeros_ones(a: np.ndarray) -> bool:
    return a.dtype.kind in "iu" and bool(np.isin(a, (0, 1)).all())


def _lower(module: ModuleOp, entry: str) -> None:
    """Lower ``module`` to the ``llvm`` dialect with the CPU target's passes, giving a
    C entry point to function ``entry`` alone (private or not; other functions need
    not be callable from C)."""
    passes = [
        AddCEntryPointsPass(only=entry) if isinstance(p, AddCEntryPointsPass) else p
        for p in CpuTarget().lowering_passes()
    ]
    apply_lowering(module, passes, make_context())


def run_ir(
    source: str | ModuleOp,
    entry: str,
    args: Sequence[Any] = (),
    *,
    name: str = "<input>",
) -> IRRunResult:
    """JIT-compile ``source`` (IR text or a module, which is not modified) and call
    function ``entry`` with ``args``; see the module docstring for the argument
    conventions. ``name`` is the file name used in parse errors."""
    if isinstance(source, ModuleOp):
        module = source.clone()
        _verify(module, name)
    else:
        module = parse_ir(source, name)
    fn = _find_entry(module, entry, name)
    fname = fn.sym_name.data
    ftype = fn.function_type
    params = list(ftype.inputs.data)
    if len(args) != len(params):
        raise IsozymeError(
            f"@{fname} takes {len(params)} argument(s) "
            f"({', '.join(map(str, params))}), got {len(args)}"
        )
    arg_slots = [_slot_type(t, f"argument {k} of @{fname}") for k, t in enumerate(params)]
    result_slots = [
        _slot_type(t, f"result {k} of @{fname}") for k, t in enumerate(ftype.outputs.data)
    ]
    passed: list[Any] = []
    for k, (value, t, slot) in enumerate(zip(args, params, arg_slots)):
        what = f"argument {k} of @{fname}"
        if isinstance(slot, MemrefSpec):
            passed.append(_array(value, slot, what))
        else:
            passed.append(_scalar(value, t, what))

    visibility = fn.sym_visibility
    fn.sym_visibility = None  # `inline` would drop a private entry without callers
    expand_requests(module)
    _find_entry(module, fname, name).sym_visibility = visibility
    _lower(module, fname)
    compiled = compile_llvm_module(module)
    call = compiled.entry(fname, [_entry_type(s) for s in arg_slots],
                          [_entry_type(s) for s in result_slots])
    results = call(*passed)
    return IRRunResult(
        results=[np.array(r) if isinstance(r, np.ndarray) else r for r in results],
        args=[
            p if isinstance(s, MemrefSpec) else a
            for a, p, s in zip(args, passed, arg_slots)
        ],
    )
