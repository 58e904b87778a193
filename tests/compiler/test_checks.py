"""The ``isz.check`` op: parsing and verification, what the generic passes may do with
it, its lowering (early return through the status record, through calls), the runtime's
errors, the ``hoist-checks`` pass on IR text, the AD passes and :func:`require`."""

from __future__ import annotations

import re

import numpy as np
import pytest
from xdsl.dialects import func, llvm, memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.transforms.common_subexpression_elimination import CommonSubexpressionElimination
from xdsl.transforms.dead_code_elimination import DeadCodeElimination
from xdsl.transforms.loop_invariant_code_motion import LoopInvariantCodeMotionPass
from xdsl.utils.exceptions import VerifyException

import isozyme as iz
from isozyme import OutOfBoundsError, ShapeError, UnsupportedError
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.lowering.convert_check_to_llvm import (
    CHECKS_ATTR,
    check_table,
    takes_status,
)
from isozyme.compiler.passes import available_passes
from isozyme.compiler.passes.hoist_checks import HoistChecksPass
from isozyme.dialects.check import CheckOp
from isozyme.runtime.jit import compile_llvm_module


def parse(src: str) -> ModuleOp:
    module = Parser(make_context(), src).parse_module()
    module.verify()
    return module


def checks_in(op) -> list[CheckOp]:
    return [o for o in op.walk() if isinstance(o, CheckOp)]


def loop_checks(module: ModuleOp) -> list[CheckOp]:
    """The checks inside some ``scf.for``."""
    return [c for c in checks_in(module) if isinstance(c.parent_op(), scf.ForOp)
            or any(isinstance(p, scf.ForOp) for p in _ancestors(c))]


def _ancestors(op):
    p = op.parent_op()
    while p is not None:
        yield p
        p = p.parent_op()


# --------------------------------------------------------------------------- the op


def test_parse_print_round_trip_and_generic_form():
    src = """
    func.func @f(%c: i1, %i: i64, %n: index) {
      isz.check %c, %i, %n {kind = "index", message = "f.py:3: index {0} size {1}"} : i64, index
      "isz.check"(%c) <{kind = "shape", message = "no values"}> : (i1) -> ()
      func.return
    }
    """
    module = parse(src)
    a, b = checks_in(module)
    assert a.kind.data == "index" and len(a.values) == 2 and len(b.values) == 0
    again = parse(str(module))
    assert str(again) == str(module)


@pytest.mark.parametrize("props, why", [
    ('{kind = "bogus", message = "m"}', "unknown kind"),
    ('{kind = "shape", message = "{1}"}', "only 1 value"),
    ('{kind = "shape", message = "{x}"}', "bad message"),
])
def test_verify_refuses_bad_checks(props, why):
    src = f"""
    func.func @f(%c: i1, %i: i64) {{
      isz.check %c, %i {props} : i64
      func.return
    }}
    """
    module = Parser(make_context(), src).parse_module()
    with pytest.raises(VerifyException, match=why):
        module.verify()


LOOP = """
func.func @f(%x: memref<?xf64>, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %d = memref.dim %x, %c0 : memref<?xf64>
  %ok = arith.cmpi ult, %c1, %d : index
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %a = memref.load %x[%c1] : memref<?xf64>
    isz.check %ok, %c1, %d {kind = "index", message = "m {0} {1}"} : index, index
    %b = memref.load %x[%c1] : memref<?xf64>
    %s = arith.addf %a, %b : f64
    %t = arith.addf %acc, %s : f64
    scf.yield %t : f64
  }
  func.return %r : f64
}
"""


def test_dce_and_licm_keep_the_check_in_place_and_cse_merges_loads_across_it():
    module = parse(LOOP)
    ctx = make_context()
    DeadCodeElimination().apply(ctx, module)
    LoopInvariantCodeMotionPass().apply(ctx, module)
    (check,) = checks_in(module)
    assert isinstance(check.parent_op(), scf.ForOp)  # not moved out by LICM
    CommonSubexpressionElimination().apply(ctx, module)
    # a check writes no memory: the second load of x[1] is the first one
    assert len([o for o in module.walk() if isinstance(o, memref.LoadOp)]) == 1
    assert len(checks_in(module)) == 1


# --------------------------------------------------------------------------- lowering


CALLS = """
func.func private @g(%i: i64, %n: i64) {
  %ok = arith.cmpi slt, %i, %n : i64
  isz.check %ok, %i, %n {kind = "shape", message = "i = {0}, n = {1}"} : i64, i64
  func.return
}
func.func private @h(%i: i64, %n: i64) -> i64 {
  func.call @g(%i, %n) : (i64, i64) -> ()
  %c2 = arith.constant 2 : i64
  %ok = arith.cmpi ne, %i, %c2 : i64
  isz.check %ok {kind = "unsupported", message = "two is not supported"}
  %r = arith.addi %i, %n : i64
  func.return %r : i64
}
func.func @f(%x: memref<?xf64>, %i: i64, %n: i64) -> f64 {
  %c0 = arith.constant 0 : index
  %v = arith.constant 7.0 : f64
  %m = func.call @h(%i, %n) : (i64, i64) -> i64
  memref.store %v, %x[%c0] : memref<?xf64>
  %k = arith.index_cast %i : i64 to index
  %d = memref.dim %x, %c0 : memref<?xf64>
  %ok = arith.cmpi ult, %k, %d : index
  isz.check %ok, %i, %d {kind = "index", message = "x[{0}] of size {1}"} : i64, index
  %e = memref.load %x[%k] : memref<?xf64>
  %mf = arith.sitofp %m : i64 to f64
  %r = arith.addf %e, %mf : f64
  func.return %r : f64
}
func.func @nochecks(%a: f64) -> f64 {
  func.return %a : f64
}
"""


def test_lowering_adds_the_status_pointer_to_checking_functions_and_their_callers():
    module = parse(CALLS)
    lower_to_llvm(module, make_context())
    fns = {f.sym_name.data: f for f in module.ops if isinstance(f, llvm.FuncOp)}
    assert all(takes_status(fns[n]) for n in ("g", "h", "f"))
    assert not takes_status(fns["nochecks"])
    assert not checks_in(module)
    table = check_table(module)
    assert sorted(k for k, _, _ in table) == ["index", "shape", "unsupported"]
    assert CHECKS_ATTR in module.attributes


def test_failing_check_returns_early_and_raises_with_values():
    module = parse(CALLS)
    lower_to_llvm(module, make_context())
    compiled = compile_llvm_module(module)
    f = compiled.entry("f", ["memref<?xf64>", "i64", "i64"], ["f64"])
    x = np.array([1.0, 2.0, 3.0])
    assert f(x, 1, 10) == (2.0 + 11.0,)
    assert x[0] == 7.0
    cases = [
        ((5, 3), ShapeError, "^i = 5, n = 3$"),  # in @g, two calls deep
        ((2, 3), UnsupportedError, "^two is not supported$"),  # in @h
        ((4, 10), OutOfBoundsError, r"^x\[4\] of size 3$"),  # in @f, after the store
        ((-1, 10), OutOfBoundsError, r"^x\[-1\] of size 3$"),
    ]
    for (i, n), err, msg in cases:
        y = np.array([1.0, 2.0, 3.0])
        with pytest.raises(err, match=msg):
            f(y, i, n)
        # the store comes after the calls: it lands only when the failing check is
        # the one after it
        assert y[0] == (7.0 if err is OutOfBoundsError else 1.0)
    assert f(x, 0, 1) == (7.0 + 1.0,)  # the status is reset by the next call
    g = compiled.entry("nochecks", ["f64"], ["f64"])
    assert g(1.5) == (1.5,)


# --------------------------------------------------------------------------- hoisting


def hoisted(src: str) -> ModuleOp:
    module = parse(src)
    HoistChecksPass().apply(make_context(), module)
    module.verify()
    return module


SIMPLE = """
func.func @f(%x: memref<?xf64>, %lb: index, %ub: index, %o: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %z = arith.constant 0.0 : f64
  %d = memref.dim %x, %c0 : memref<?xf64>
  %r = scf.for %i = %lb to %ub step %c1 iter_args(%acc = %z) -> (f64) {
    %t = arith.muli %i, %c2 : index
    %k = arith.addi %t, %o : index
    %ok = arith.cmpi ult, %k, %d : index
    isz.check %ok, %k, %d {kind = "index", message = "index {0} size {1}"} : index, index
    %ok2 = arith.cmpi ult, %k, %d : index
    isz.check %ok, %k, %d {kind = "index", message = "the same condition value"} : index, index
    %a = memref.load %x[%k] : memref<?xf64>
    %s = arith.addf %acc, %a : f64
    scf.yield %s : f64
  }
  func.return %r : f64
}
"""


def test_affine_check_leaves_the_loop_and_duplicates_go():
    module = hoisted(SIMPLE)
    assert not loop_checks(module)
    (check,) = checks_in(module)
    assert check.message.data == "index {0} size {1}"
    assert isinstance(check.next_op, scf.ForOp)


def _run_f(module, x, *args):
    lower_to_llvm(module, make_context())
    compiled = compile_llvm_module(module)
    ty = "memref<?xf64>"
    entry = compiled.entry("f", [ty] + ["index"] * len(args), ["f64"])
    return entry(x, *args)


@pytest.mark.parametrize("lb, ub, o", [
    (0, 3, 0), (0, 4, -1), (1, 4, 0), (0, 5, 0), (3, 3, 50), (4, 1, -9), (0, 1, 6), (-1, 2, 0),
])
def test_hoisted_check_fails_exactly_when_an_iteration_would(lb, ub, o):
    x = np.arange(7.0)
    ks = [2 * i + o for i in range(lb, ub)]
    bad = [k for k in ks if not 0 <= k < 7]
    if bad:
        with pytest.raises(OutOfBoundsError, match=r"^index -?\d+ size 7$") as info:
            _run_f(hoisted(SIMPLE), x, lb, ub, o)
        reported = int(str(info.value).split()[1])
        assert reported in (ks[0], ks[-1]) and reported in bad
    else:
        assert _run_f(hoisted(SIMPLE), x, lb, ub, o) == (float(sum(ks)),)


NOT_HOISTED = """
func.func @f(%x: memref<?xf64>, %idx: memref<?xindex>, %n: index, %s: index, %m: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %d = memref.dim %x, %c0 : memref<?xf64>
  %t = arith.constant true
  scf.for %i = %c0 to %n step %c1 {
    %k = memref.load %idx[%i] : memref<?xindex>
    %ok = arith.cmpi ult, %k, %d : index
    isz.check %ok, %k {kind = "index", message = "from a load {0}"} : index
    %ok2 = arith.cmpi ult, %i, %m : index
    isz.check %ok2, %i {kind = "index", message = "against a value that may be negative {0}"} : index
    %q = arith.muli %i, %i : index
    %ok3 = arith.cmpi ult, %q, %d : index
    isz.check %ok3, %q {kind = "index", message = "not affine {0}"} : index
    scf.if %t {
      %ok4 = arith.cmpi ult, %i, %d : index
      isz.check %ok4, %i {kind = "index", message = "in a branch {0}"} : index
    }
  }
  scf.for %i = %c0 to %n step %s {
    %ok5 = arith.cmpi ult, %i, %d : index
    isz.check %ok5, %i {kind = "index", message = "step not constant {0}"} : index
  }
  func.return
}
"""


def test_checks_that_cannot_be_hoisted_stay():
    module = hoisted(NOT_HOISTED)
    assert len(loop_checks(module)) == 5
    assert len(checks_in(module)) == 5


NESTED = """
func.func @f(%a: memref<?x?xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %m = memref.dim %a, %c0 : memref<?x?xf64>
  %n = memref.dim %a, %c1 : memref<?x?xf64>
  %r = scf.for %i = %c0 to %m step %c1 iter_args(%acc = %z) -> (f64) {
    %r2 = scf.for %j = %c0 to %n step %c1 iter_args(%acc2 = %acc) -> (f64) {
      %ok = arith.cmpi ult, %i, %m : index
      isz.check %ok, %i, %m {kind = "index", message = "axis 0: {0} {1}"} : index, index
      %neg = arith.cmpi slt, %j, %c0 : index
      %w = arith.addi %j, %n : index
      %jj = arith.select %neg, %w, %j : index
      %ok2 = arith.cmpi ult, %jj, %n : index
      isz.check %ok2, %j, %n {kind = "index", message = "axis 1: {0} {1}"} : index, index
      %v = memref.load %a[%i, %jj] : memref<?x?xf64>
      %s = arith.addf %acc2, %v : f64
      scf.yield %s : f64
    }
    scf.yield %r2 : f64
  }
  func.return %r : f64
}
"""


def test_nested_loops_hoist_repeatedly_including_wrapped_indices():
    module = hoisted(NESTED)
    assert not loop_checks(module)
    assert len(checks_in(module)) == 2


IN_BRANCH = """
func.func @f(%x: memref<?xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %d = memref.dim %x, %c0 : memref<?xf64>
  %r = scf.for %i = %c0 to %d step %c1 iter_args(%m = %z) -> (f64) {
    %ok = arith.cmpi ult, %i, %d : index
    isz.check %ok, %i, %d {kind = "index", message = "{0} {1}"} : index, index
    %v = memref.load %x[%i] : memref<?xf64>
    %gt = arith.cmpf ogt, %v, %m : f64
    %n = scf.if %gt -> (f64) {
      isz.check %ok, %i, %d {kind = "index", message = "again {0} {1}"} : index, index
      %w = memref.load %x[%i] : memref<?xf64>
      scf.yield %w : f64
    } else {
      scf.yield %m : f64
    }
    scf.yield %n : f64
  }
  func.return %r : f64
}
"""


def test_a_check_repeated_in_a_branch_goes_with_the_first():
    module = hoisted(IN_BRANCH)
    assert not loop_checks(module) and len(checks_in(module)) == 1


def test_hoist_pass_is_registered_and_in_the_optimized_stage():
    assert "hoist-checks" in available_passes()
    from isozyme.compiler.pipeline import STAGE_PASSES

    assert any(isinstance(p, HoistChecksPass) for p in STAGE_PASSES["optimized"]())


# --------------------------------------------------------------------------- AD


def gather(x, idx):
    s = 0.0
    for k in range(len(idx)):
        s += x[idx[k]] ** 2
    return s


def _func_checks(text: str) -> dict[str, int]:
    module = parse(text)
    return {f.sym_name.data: len(checks_in(f)) for f in module.ops if isinstance(f, func.FuncOp)}


def test_forward_mode_clones_checks_and_reverse_mode_keeps_them_in_the_forward_sweep():
    x, idx = np.arange(4.0), np.array([1, 3, -1])
    fwd = iz.ir(iz.Forward, gather, iz.Duplicated(x, np.zeros(4)), iz.Const(idx),
                stage="differentiated")
    counts = _func_checks(fwd)
    assert counts["gather"] == 2 and counts["fwddiffegather"] == 2
    rev = iz.ir(iz.Reverse, gather, iz.Active, iz.Duplicated(x, np.zeros(4)),
                iz.Const(idx), stage="differentiated")
    counts = _func_checks(rev)
    assert counts["gather"] == 2 and counts["diffegather"] == 2
    module = parse(rev)
    diffe = next(f for f in module.ops if isinstance(f, func.FuncOp)
                 and f.sym_name.data == "diffegather")
    loops = [op for op in diffe.body.block.ops if isinstance(op, scf.ForOp)]
    assert len(loops) == 2 and not checks_in(loops[1])  # the reverse loop
    # values: forward and reverse agree with finite differences
    dx = np.zeros(4)
    iz.autodiff(iz.Reverse, gather, iz.Active, iz.Duplicated(x, dx), iz.Const(idx))
    h = 1e-6
    fd = [(gather(x + h * e, idx) - gather(x - h * e, idx)) / (2 * h) for e in np.eye(4)]
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-9)
    (d,) = iz.autodiff(iz.Forward, gather, iz.Duplicated(x, np.ones(4)), iz.Const(idx))
    assert d == pytest.approx(sum(fd), rel=1e-6)
    dx = np.zeros(4)
    with pytest.raises(OutOfBoundsError, match="index 9 is out of bounds"):
        iz.autodiff(iz.Reverse, gather, iz.Active, iz.Duplicated(x, dx), iz.Const(np.array([0, 9])))
    assert not dx.any()


# --------------------------------------------------------------------------- require


def guard(cond, *values):
    """Replaced while tracing by the builder the test registers."""
    raise AssertionError("not traced")


def guarded(n, limit):
    guard(n < limit, n, limit)
    return n * 2


def test_require_emits_a_check_with_the_callers_location(monkeypatch):
    from isozyme.frontends.python import builtins_table
    from isozyme.frontends.python.runtime_checks import require

    builder = lambda c, *v: require(c, "shape", "n = {0} needs < {1}", *v)  # noqa: E731
    monkeypatch.setitem(builtins_table.TABLE, guard, builder)
    import inspect

    line = inspect.currentframe().f_lineno - 4
    assert iz.autodiff(iz.ForwardWithPrimal, guarded, iz.Const(2), iz.Const(5))[1] == 4
    with pytest.raises(ShapeError, match=rf"^{re.escape(__file__)}:{line}: n = 7 needs < 5$"):
        iz.autodiff(iz.ForwardWithPrimal, guarded, iz.Const(7), iz.Const(5))
    with pytest.raises(ValueError, match="unknown kind"):
        require(True, "nope", "m")
