"""Enzyme-MLIR's test inputs that isozyme refused or got wrong (issue 11, item 2):
functions with several blocks (``cf.br``/``cf.cond_br``/``cf.switch``, raised to
``scf`` by ``lift-cf-to-scf``), ``scf.for`` with ``i32`` bounds in reverse mode, and
loads through a memref-typed ``arith.select``.

The IR is written here, in Enzyme-MLIR's textual syntax (``enzyme.fwddiff`` /
``enzyme.autodiff`` requests), after the shapes of Enzyme's own tests
(``ForwardMode/branch.mlir``, ``branch-self-recursive.mlir``, ``executeop.mlir``,
``ReverseMode/arith.mlir``'s ``@select_ptr``).  Every derivative is checked against
central finite differences of the compiled primal, forward and reverse, for every
activity combination of the float arguments.  Each group of functions is compiled
once (one module, many entries) to keep the file fast.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.passes.lift_cf_to_scf import LiftCfToScfPass
from isozyme.compiler.pipeline import run_pipeline
from isozyme.errors import AnnotationError, UnsupportedError
from isozyme.runtime.jit import compile_llvm_module

H = 1e-6
DUP = "#enzyme.activity<enzyme_dup>"
CONST = "#enzyme.activity<enzyme_const>"
ACTIVE = "#enzyme.activity<enzyme_active>"
DUPNONEED = "#enzyme.activity<enzyme_dupnoneed>"
ACTIVENONEED = "#enzyme.activity<enzyme_activenoneed>"


def _requests(fn: str, types: list[str]) -> tuple[str, list[tuple]]:
    """``enzyme.fwddiff``/``enzyme.autodiff`` requests on ``@fn`` (returning one f64)
    for every activity combination of its f64 arguments (the others are const), and
    the entries ``(name, mode, activities, arg types, result types)`` that call them."""
    floats = [i for i, t in enumerate(types) if t == "f64"]
    text, entries = [], []
    params = ", ".join(f"%a{i}: {t}" for i, t in enumerate(types))
    for k, on in enumerate(itertools.product([True, False], repeat=len(floats))):
        if not any(on):
            continue
        active = {i for i, o in zip(floats, on) if o}
        # forward: dup for the active floats, one tangent argument each
        ops, tys, acts = [], [], []
        fparams = [params]
        for i, t in enumerate(types):
            ops.append(f"%a{i}")
            tys.append(t)
            if i in active:
                ops.append(f"%d{i}")
                tys.append(t)
                fparams.append(f"%d{i}: f64")
            acts.append(DUP if i in active else CONST)
        name = f"fwd_{fn}_{k}"
        text.append(f"""
func.func @{name}({', '.join(fparams)}) -> f64 {{
  %r = enzyme.fwddiff @{fn}({', '.join(ops)}) <{{activity=[{', '.join(acts)}], ret_activity=[{DUPNONEED}]}}> : ({', '.join(tys)}) -> f64
  func.return %r : f64
}}""")
        entries.append((name, "fwd", active, types + ["f64"] * len(active), ["f64"]))
        # reverse: active floats, one seed, one gradient per active argument
        acts = [ACTIVE if i in active else CONST for i in range(len(types))]
        outs = ", ".join(["f64"] * len(active))
        name = f"rev_{fn}_{k}"
        many = len(active) > 1
        lhs = f"%g:{len(active)}" if many else "%g"
        res = ", ".join(f"%g#{j}" for j in range(len(active))) if many else "%g"
        args = ", ".join(f"%a{i}" for i in range(len(types)))
        text.append(f"""
func.func @{name}({params}, %seed: f64) -> ({outs}) {{
  {lhs} = enzyme.autodiff @{fn}({args}, %seed) <{{activity=[{', '.join(acts)}], ret_activity=[{ACTIVENONEED}]}}> : ({', '.join(types)}, f64) -> ({outs})
  func.return {res} : {outs}
}}""")
        entries.append((name, "rev", active, types + ["f64"], ["f64"] * len(active)))
    return "\n".join(text), entries


def _compile(src: str):
    """Parse, differentiate and simplify (the pipeline's stages), lower and JIT."""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    run_pipeline(module, upto="simplified", ctx=ctx)
    module.verify()
    text = str(module)
    lower_to_llvm(module, ctx)
    return text, compile_llvm_module(module)


def _check_all(src: str, functions: dict[str, list[str]], points: dict[str, list[tuple]]):
    """Compile ``src`` plus requests on each of ``functions`` (name -> argument types)
    and check every request at every point against central finite differences."""
    reqs = [(_requests(fn, types), fn, types) for fn, types in functions.items()]
    text, cm = _compile(src + "".join(r[0][0] for r in reqs))
    for (_, entries), fn, types in reqs:
        primal = cm.entry(fn, types, ["f64"])
        for x in points[fn]:
            def fd(i: int) -> float:
                up, dn = list(x), list(x)
                up[i] += H
                dn[i] -= H
                return (primal(*up)[0] - primal(*dn)[0]) / (2 * H)

            grads = {i: fd(i) for i, t in enumerate(types) if t == "f64"}
            for name, mode, active, atypes, rtypes in entries:
                call = cm.entry(name, atypes, rtypes)
                if mode == "fwd":
                    # tangent direction: 1, 2, 3... on the active arguments
                    dirs = {i: 1.0 + j for j, i in enumerate(sorted(active))}
                    got = call(*x, *[dirs[i] for i in sorted(active)])[0]
                    want = sum(grads[i] * d for i, d in dirs.items())
                    assert got == pytest.approx(want, rel=1e-6, abs=1e-7), (name, x)
                else:
                    got = call(*x, 2.0)
                    want = [2.0 * grads[i] for i in sorted(active)]
                    assert list(got) == pytest.approx(want, rel=1e-6, abs=1e-7), (name, x)
    return text


# -- 1. functions with several blocks --------------------------------------------------
BRANCHES = """
func.func @diamond(%x: f64, %y: f64) -> f64 {
  %c = arith.cmpf ult, %x, %y : f64
  %xy = arith.mulf %x, %y : f64
  cf.cond_br %c, ^small(%xy : f64), ^large
^small(%p: f64):
  %s = math.sin %p : f64
  cf.br ^join(%s, %y : f64, f64)
^large:
  %e = arith.mulf %x, %x : f64
  cf.br ^join(%e, %x : f64, f64)
^join(%r: f64, %q: f64):
  %o = arith.mulf %r, %q : f64
  %o2 = arith.addf %o, %xy : f64
  func.return %o2 : f64
}

// a call of a multi-block function (not inlined: it is raised when its derivative is built)
func.func @calls_diamond(%x: f64, %y: f64) -> f64 {
  %d = func.call @diamond(%y, %x) : (f64, f64) -> f64
  %r = arith.mulf %d, %x : f64
  func.return %r : f64
}

func.func @select_blocks(%x: f64, %y: f64) -> f64 {
  %c = arith.cmpf ult, %x, %y : f64
  cf.cond_br %c, ^bb1(%x : f64), ^bb1(%y : f64)
^bb1(%r: f64):
  %r2 = arith.mulf %r, %r : f64
  func.return %r2 : f64
}

func.func @two_returns(%x: f64, %y: f64) -> f64 {
  %zero = arith.constant 0.0 : f64
  %c = arith.cmpf ogt, %x, %zero : f64
  cf.cond_br %c, ^pos, ^neg
^pos:
  %a = arith.mulf %x, %y : f64
  func.return %a : f64
^neg:
  %s = math.sin %y : f64
  %b = arith.mulf %s, %x : f64
  func.return %b : f64
}

func.func @while_loop(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  cf.br ^head(%c0, %x : index, f64)
^head(%i: index, %r: f64):
  %more = arith.cmpi slt, %i, %n : index
  cf.cond_br %more, ^body, ^exit
^body:
  %s = math.sin %r : f64
  %t = arith.mulf %s, %x : f64
  %c1 = arith.constant 1 : index
  %i1 = arith.addi %i, %c1 : index
  cf.br ^head(%i1, %t : index, f64)
^exit:
  %out = arith.mulf %r, %r : f64
  func.return %out : f64
}

func.func @do_while(%x: f64, %y: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  cf.br ^bb1(%c0, %x : index, f64)
^bb1(%i: index, %r: f64):
  %m = arith.mulf %r, %y : f64
  %sum = arith.addf %m, %x : f64
  %c1 = arith.constant 1 : index
  %i1 = arith.addi %i, %c1 : index
  %c = arith.cmpi ult, %i1, %n : index
  cf.cond_br %c, ^bb1(%i1, %sum : index, f64), ^bb2
^bb2:
  %o = arith.mulf %sum, %r : f64
  func.return %o : f64
}

func.func @loop_with_branch(%x: f64, %y: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1.0 : f64
  cf.br ^head(%c0, %x : index, f64)
^head(%i: index, %r: f64):
  %more = arith.cmpi slt, %i, %n : index
  cf.cond_br %more, ^test, ^exit
^test:
  %c = arith.cmpf olt, %r, %one : f64
  cf.cond_br %c, ^grow, ^shrink
^grow:
  %g = arith.addf %r, %y : f64
  %g2 = arith.addf %g, %r : f64
  cf.br ^latch(%g2 : f64)
^shrink:
  %s = math.sin %r : f64
  %s2 = arith.mulf %s, %y : f64
  cf.br ^latch(%s2 : f64)
^latch(%v: f64):
  %c1 = arith.constant 1 : index
  %i1 = arith.addi %i, %c1 : index
  cf.br ^head(%i1, %v : index, f64)
^exit:
  func.return %r : f64
}

// nested loops; the inner loop's exit test branches straight back to the outer header
func.func @nested_loops(%x: f64, %y: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  cf.br ^outer(%c0, %y : index, f64)
^outer(%i: index, %r: f64):
  %more = arith.cmpi slt, %i, %n : index
  cf.cond_br %more, ^inner(%c0, %r : index, f64), ^done
^inner(%j: index, %q: f64):
  %s = math.sin %q : f64
  %t = arith.mulf %s, %x : f64
  %q2 = arith.addf %t, %y : f64
  %j1 = arith.addi %j, %c1 : index
  %i1 = arith.addi %i, %c1 : index
  %again = arith.cmpi sle, %j1, %i : index
  cf.cond_br %again, ^inner(%j1, %q2 : index, f64), ^outer(%i1, %q2 : index, f64)
^done:
  func.return %r : f64
}

func.func @switch_region(%x: f64, %c: i32) -> f64 {
  %c2 = arith.constant 2.5 : f64
  %r:2 = scf.execute_region -> (f64, f64) {
    cf.switch %c : i32, [
      default: ^other,
      104: ^twice,
      113: ^square(%c2 : f64)
    ]
  ^square(%z: f64):
    %x2 = arith.mulf %x, %x : f64
    scf.yield %x2, %z : f64, f64
  ^twice:
    %x3 = arith.addf %x, %x : f64
    scf.yield %x3, %c2 : f64, f64
  ^other:
    %s = math.sin %x : f64
    cf.br ^square(%s : f64)
  }
  %res = arith.mulf %r#0, %r#1 : f64
  func.return %res : f64
}
"""


def test_multi_block_functions_forward_and_reverse():
    functions = {
        "diamond": ["f64", "f64"], "calls_diamond": ["f64", "f64"],
        "select_blocks": ["f64", "f64"],
        "two_returns": ["f64", "f64"], "while_loop": ["f64", "index"],
        "do_while": ["f64", "f64", "index"], "loop_with_branch": ["f64", "f64", "index"],
        "switch_region": ["f64", "i32"], "nested_loops": ["f64", "f64", "index"],
    }
    points = {
        "diamond": [(0.3, 0.8), (1.1, 0.4)],  # both arms
        "calls_diamond": [(0.3, 0.8), (1.1, 0.4)],
        "select_blocks": [(0.3, 0.8), (1.1, 0.4)],
        "two_returns": [(0.7, 0.4), (-0.6, 0.9)],
        "while_loop": [(0.9, 0), (0.9, 1), (0.9, 4)],
        "do_while": [(0.7, 0.6, 1), (0.7, 0.6, 3)],  # runs at least once
        "loop_with_branch": [(0.3, 0.45, 5), (1.3, 0.8, 3)],
        "switch_region": [(0.7, 104), (0.7, 113), (0.7, 7)],  # each case, the default
        "nested_loops": [(0.9, 0.3, 0), (0.9, 0.3, 3)],  # 0 and 1+2+3 inner iterations
    }
    text = _check_all(BRANCHES, functions, points)
    assert not re.search(r"\bcf\.", text)  # every branch was raised to scf


def test_lifted_structure():
    """The diamond becomes an scf.if, the loops scf.while (before region forwarding
    its arguments, the form reverse mode reverses), the execute_region is inlined."""
    ctx = make_context()
    module = Parser(ctx, BRANCHES).parse_module()
    LiftCfToScfPass().apply(ctx, module)
    module.verify()
    fns = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    assert all(len(f.body.blocks) == 1 for f in fns.values())
    names = {n: [o.name for o in f.walk()] for n, f in fns.items()}
    assert names["diamond"].count("scf.if") == 1
    assert names["two_returns"].count("scf.if") == 1
    assert names["two_returns"].count("func.return") == 1
    assert names["do_while"].count("scf.while") == 1
    assert names["loop_with_branch"].count("scf.while") == 1
    assert "scf.execute_region" not in names["switch_region"]
    assert names["switch_region"].count("scf.if") == 2  # two cases and the default
    assert names["nested_loops"].count("scf.while") == 2
    assert not any(n.startswith("cf.") for ns in names.values() for n in ns)


@pytest.mark.parametrize("body, what", [
    ("""
  cf.br ^head(%x : f64)
^head(%r: f64):
  %c = arith.cmpf olt, %r, %y : f64
  cf.cond_br %c, ^body, ^exit(%r : f64)
^body:
  %t = arith.mulf %r, %r : f64
  %d = arith.cmpf ogt, %t, %y : f64
  cf.cond_br %d, ^exit(%t : f64), ^head(%t : f64)
^exit(%o: f64):
  func.return %o : f64""", "a loop with several exits"),
    ("""
  %c = arith.cmpf olt, %x, %y : f64
  cf.cond_br %c, ^a(%x : f64), ^b(%y : f64)
^a(%p: f64):
  %d = arith.cmpf olt, %p, %y : f64
  cf.cond_br %d, ^b(%p : f64), ^exit(%p : f64)
^b(%q: f64):
  %e = arith.cmpf olt, %q, %x : f64
  cf.cond_br %e, ^a(%q : f64), ^exit(%q : f64)
^exit(%o: f64):
  func.return %o : f64""", "irreducible control flow"),
    ("""
  cf.br ^head(%x : f64)
^head(%r: f64):
  %t = arith.mulf %r, %y : f64
  cf.br ^head(%t : f64)""", "a loop without exit"),
])
def test_what_cannot_be_raised_is_refused(body, what):
    src = f"""
func.func private @f(%x: f64, %y: f64) -> f64 {{{body}
}}
func.func @d(%x: f64, %dx: f64, %y: f64) -> f64 {{
  %r = enzyme.fwddiff @f(%x, %dx, %y) <{{activity=[{DUP}, {CONST}], ret_activity=[{DUPNONEED}]}}> : (f64, f64, f64) -> f64
  func.return %r : f64
}}
"""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    with pytest.raises(UnsupportedError, match=f"lift-cf-to-scf: @f.*{what}"):
        run_pipeline(module, upto="differentiated", ctx=ctx)
    # not strict: the function is left as it is
    module = Parser(ctx, src).parse_module()
    LiftCfToScfPass(strict=False).apply(ctx, module)
    f = next(o for o in module.ops if isinstance(o, func.FuncOp))
    assert len(f.body.blocks) > 1


# -- 2. scf.for with integer (non-index) bounds in reverse mode --------------------------
I32_LOOPS = """
func.func @for_i32(%x: f64, %y: f64, %n: i32) -> f64 {
  %c0 = arith.constant 0 : i32
  %c1 = arith.constant 1 : i32
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %x) -> (f64) : i32 {
    %fi = arith.sitofp %i : i32 to f64
    %s = math.sin %acc : f64
    %t = arith.mulf %s, %y : f64
    %u = arith.addf %t, %fi : f64
    %v = arith.mulf %u, %x : f64
    scf.yield %v : f64
  }
  func.return %r : f64
}

func.func @nested_i64(%x: f64, %n: i64, %m: i64) -> f64 {
  %c0 = arith.constant 1 : i64
  %c2 = arith.constant 2 : i64
  %r = scf.for %i = %c0 to %n step %c2 iter_args(%acc = %x) -> (f64) : i64 {
    %r2 = scf.for %j = %c0 to %m step %c0 iter_args(%a = %acc) -> (f64) : i64 {
      %s = math.sin %a : f64
      %t = arith.mulf %s, %x : f64
      scf.yield %t : f64
    }
    %e = arith.mulf %r2, %acc : f64
    scf.yield %e : f64
  }
  func.return %r : f64
}
"""


def test_scf_for_with_integer_bounds():
    text = _check_all(I32_LOOPS, {"for_i32": ["f64", "f64", "i32"],
                           "nested_i64": ["f64", "i64", "i64"]},
               {"for_i32": [(0.6, 0.7, 0), (0.6, 0.7, 1), (0.6, 0.7, 4), (0.6, 0.7, -2)],
                "nested_i64": [(0.8, 6, 3), (0.8, 2, 2), (0.8, 1, 3)]})
    # values of the body are cached in buffers indexed by the iteration, as for index
    # bounds (no stack)
    assert "enzyme.push" not in text and "memref.alloc" in text


# -- 3. a memref-typed arith.select: the shadow is the select of the shadows --------------
SELECT_PTR = f"""
func.func @select_ptr(%c: i1, %a: memref<f64>, %b: memref<f64>) -> f64 {{
  %ptr = arith.select %c, %a, %b : memref<f64>
  %val = memref.load %ptr[] : memref<f64>
  %sq = arith.mulf %val, %val : f64
  return %sq : f64
}}

func.func @dselect_ptr(%c: i1, %a: memref<f64>, %da: memref<f64>, %b: memref<f64>, %db: memref<f64>, %dr: f64) {{
  enzyme.autodiff @select_ptr(%c, %a, %da, %b, %db, %dr)
    {{
      activity=[#enzyme<activity enzyme_const>, #enzyme<activity enzyme_dup>, #enzyme<activity enzyme_dup>],
      ret_activity=[#enzyme<activity enzyme_activenoneed>]
    }} : (i1, memref<f64>, memref<f64>, memref<f64>, memref<f64>, f64) -> ()
  return
}}

func.func @fselect_ptr(%c: i1, %a: memref<f64>, %da: memref<f64>, %b: memref<f64>, %db: memref<f64>) -> f64 {{
  %t = enzyme.fwddiff @select_ptr(%c, %a, %da, %b, %db)
    <{{activity=[{CONST}, {DUP}, {DUP}], ret_activity=[{DUPNONEED}]}}> : (i1, memref<f64>, memref<f64>, memref<f64>, memref<f64>) -> f64
  return %t : f64
}}

// in a loop (the shadow is selected per reverse iteration), with a store through it
func.func @select_in_loop(%x: f64, %a: memref<?xf64>, %b: memref<?xf64>, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %zero = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {{
    %m = arith.remsi %i, %c2 : index
    %even = arith.cmpi eq, %m, %c0 : index
    %p = arith.select %even, %a, %b : memref<?xf64>
    %v = memref.load %p[%i] : memref<?xf64>
    %w = arith.mulf %v, %x : f64
    memref.store %w, %p[%i] : memref<?xf64>
    %wv = arith.mulf %w, %v : f64
    %acc2 = arith.addf %acc, %wv : f64
    scf.yield %acc2 : f64
  }}
  return %r : f64
}}

func.func @rselect_in_loop(%x: f64, %a: memref<?xf64>, %da: memref<?xf64>, %b: memref<?xf64>, %db: memref<?xf64>, %n: index, %s: f64) -> f64 {{
  %g = enzyme.autodiff @select_in_loop(%x, %a, %da, %b, %db, %n, %s)
    <{{activity=[{ACTIVE}, {DUP}, {DUP}, {CONST}], ret_activity=[{ACTIVENONEED}]}}> : (f64, memref<?xf64>, memref<?xf64>, memref<?xf64>, memref<?xf64>, index, f64) -> f64
  return %g : f64
}}

func.func @fselect_in_loop(%x: f64, %dx: f64, %a: memref<?xf64>, %da: memref<?xf64>, %b: memref<?xf64>, %db: memref<?xf64>, %n: index) -> f64 {{
  %t = enzyme.fwddiff @select_in_loop(%x, %dx, %a, %da, %b, %db, %n)
    <{{activity=[{DUP}, {DUP}, {DUP}, {CONST}], ret_activity=[{DUPNONEED}]}}> : (f64, f64, memref<?xf64>, memref<?xf64>, memref<?xf64>, memref<?xf64>, index) -> f64
  return %t : f64
}}
"""

_R0 = "memref<f64>"
_R1 = "memref<?xf64>"


def test_select_of_memrefs_forward_and_reverse():
    text, cm = _compile(SELECT_PTR)
    # Enzyme-MLIR's expected reverse: the load's adjoint goes into the selected shadow
    assert "arith.select %c, %da, %db : memref<f64>" in text
    primal = cm.entry("select_ptr", ["i1", _R0, _R0], ["f64"])
    rev = cm.entry("dselect_ptr", ["i1", _R0, _R0, _R0, _R0, "f64"], [])
    fwd = cm.entry("fselect_ptr", ["i1", _R0, _R0, _R0, _R0], ["f64"])
    for c in (True, False):
        a, b = 0.7, -1.3

        def f(a_: float, b_: float) -> float:
            return primal(c, np.array(a_), np.array(b_))[0]

        ga = (f(a + H, b) - f(a - H, b)) / (2 * H)
        gb = (f(a, b + H) - f(a, b - H)) / (2 * H)
        da, db = np.array(0.5), np.array(0.25)  # the gradients are added to these
        rev(c, np.array(a), da, np.array(b), db, 2.0)
        assert float(da) == pytest.approx(0.5 + 2.0 * ga, rel=1e-7)
        assert float(db) == pytest.approx(0.25 + 2.0 * gb, rel=1e-7)
        assert (float(da) != 0.5) == c and (float(db) != 0.25) == (not c)
        t = fwd(c, np.array(a), np.array(1.0), np.array(b), np.array(3.0))[0]
        assert t == pytest.approx(ga * 1.0 + gb * 3.0, rel=1e-7)

    loop = cm.entry("select_in_loop", ["f64", _R1, _R1, "index"], ["f64"])
    rloop = cm.entry("rselect_in_loop", ["f64", _R1, _R1, _R1, _R1, "index", "f64"], ["f64"])
    floop = cm.entry("fselect_in_loop", ["f64", "f64", _R1, _R1, _R1, _R1, "index"], ["f64"])
    rng = np.random.default_rng(3)
    a0, b0, x, n = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5), 0.8, 5

    def g(x_: float, a_: np.ndarray, b_: np.ndarray) -> float:
        return loop(x_, a_.copy(), b_.copy(), n)[0]  # the function writes a and b

    def fd(k: int, which: str) -> float:
        e = np.zeros(5)
        e[k] = H
        if which == "a":
            return (g(x, a0 + e, b0) - g(x, a0 - e, b0)) / (2 * H)
        return (g(x, a0, b0 + e) - g(x, a0, b0 - e)) / (2 * H)

    gx = (g(x + H, a0, b0) - g(x - H, a0, b0)) / (2 * H)
    da, db = np.zeros(5), np.zeros(5)
    got_x = rloop(x, a0.copy(), da, b0.copy(), db, n, 1.0)[0]
    assert got_x == pytest.approx(gx, rel=1e-6)
    assert da == pytest.approx([fd(k, "a") for k in range(5)], rel=1e-6, abs=1e-9)
    assert db == pytest.approx([fd(k, "b") for k in range(5)], rel=1e-6, abs=1e-9)
    assert np.all(da[1::2] == 0) and np.all(db[0::2] == 0)  # even i reads a, odd b
    va, vb = rng.uniform(-1, 1, 5), rng.uniform(-1, 1, 5)
    t = floop(x, 0.5, a0.copy(), va.copy(), b0.copy(), vb.copy(), n)[0]
    want = (g(x + 0.5 * H, a0 + va * H, b0 + vb * H)
            - g(x - 0.5 * H, a0 - va * H, b0 - vb * H)) / (2 * H)
    assert t == pytest.approx(want, rel=1e-6)


IF_PTR = """
func.func private @if_ptr(%c: i1, %a: memref<f64>, %b: memref<f64>) -> f64 {
  %ptr = scf.if %c -> (memref<f64>) {
    scf.yield %a : memref<f64>
  } else {
    scf.yield %b : memref<f64>
  }
  %val = memref.load %ptr[] : memref<f64>
  return %val : f64
}
func.func @g(%c: i1, %a: memref<f64>, %da: memref<f64>, %b: memref<f64>, %db: memref<f64>, %dr: f64) {
  enzyme.autodiff @if_ptr(%c, %a, %da, %b, %db, %dr) {activity=[#enzyme<activity enzyme_const>, #enzyme<activity enzyme_dup>, #enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (i1, memref<f64>, memref<f64>, memref<f64>, memref<f64>, f64) -> ()
  return
}
"""

MIXED_SELECT = """
func.func private @select_ptr(%c: i1, %a: memref<f64>, %b: memref<f64>) -> f64 {
  %ptr = arith.select %c, %a, %b : memref<f64>
  %val = memref.load %ptr[] : memref<f64>
  return %val : f64
}
func.func @g(%c: i1, %a: memref<f64>, %b: memref<f64>, %db: memref<f64>, %dr: f64) {
  enzyme.autodiff @select_ptr(%c, %a, %b, %db, %dr) {activity=[#enzyme<activity enzyme_const>, #enzyme<activity enzyme_const>, #enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (i1, memref<f64>, memref<f64>, memref<f64>, f64) -> ()
  return
}
"""


def test_arrays_without_shadow_are_refused_not_ignored():
    # an array chosen by an scf.if has no shadow in reverse mode: refused (its loads'
    # adjoints were silently dropped, like select_ptr's)
    ctx = make_context()
    module = Parser(ctx, IF_PTR).parse_module()
    with pytest.raises(UnsupportedError,
                       match=r"reverse mode of 'memref.load'.*no shadow \(the result of 'scf.if'\)"):
        run_pipeline(module, upto="differentiated", ctx=ctx)
    # a Const array selected with a Duplicated one: refused before anything runs
    module = Parser(ctx, MIXED_SELECT).parse_module()
    with pytest.raises(AnnotationError, match="argument 1 of select_ptr is a Const array.*selects"):
        run_pipeline(module, upto="differentiated", ctx=ctx)


INDEX_SWITCH = """
func.func private @f(%x: f64, %i: index) -> f64 {
  %r = scf.index_switch %i -> f64
  case 1 {
    %y = arith.mulf %x, %x : f64
    scf.yield %y : f64
  }
  default {
    scf.yield %x : f64
  }
  func.return %r : f64
}
"""


@pytest.mark.parametrize("mode, request_", [
    ("forward", f"""
func.func @d(%x: f64, %dx: f64, %i: index) -> f64 {{
  %r = enzyme.fwddiff @f(%x, %dx, %i) <{{activity=[{DUP}, {CONST}], ret_activity=[{DUPNONEED}]}}> : (f64, f64, index) -> f64
  func.return %r : f64
}}"""),
    ("reverse", f"""
func.func @g(%x: f64, %i: index, %s: f64) -> f64 {{
  %r = enzyme.autodiff @f(%x, %i, %s) <{{activity=[{ACTIVE}, {CONST}], ret_activity=[{ACTIVENONEED}]}}> : (f64, index, f64) -> f64
  func.return %r : f64
}}"""),
])
def test_region_op_without_rule_is_refused_not_constant(mode, request_):
    """A region op AD has no rule for (scf.index_switch) whose results depend on active
    values is refused; its results were taken as constants (a zero derivative)."""
    ctx = make_context()
    module = Parser(ctx, INDEX_SWITCH + request_).parse_module()
    with pytest.raises(UnsupportedError, match=f"{mode} mode of 'scf.index_switch'"):
        run_pipeline(module, upto="differentiated", ctx=ctx)


GROW = f"""
func.func @grow(%x: f64) -> f64 {{
  %limit = arith.constant 10.0 : f64
  %k = arith.constant 1.5 : f64
  cf.br ^bb1(%x : f64)
^bb1(%r: f64):
  %m = arith.mulf %r, %k : f64
  %n = arith.addf %m, %x : f64
  %small = arith.cmpf olt, %n, %limit : f64
  cf.cond_br %small, ^bb1(%n : f64), ^bb2(%n : f64)
^bb2(%ret: f64):
  return %ret : f64
}}
func.func @dgrow(%x: f64, %dres: f64) -> f64 {{
  %r = enzyme.autodiff @grow(%x, %dres) <{{activity=[{ACTIVE}], ret_activity=[{ACTIVENONEED}]}}> : (f64, f64) -> f64
  return %r : f64
}}
"""


def test_reverse_only_request_on_a_loop_of_branches_through_run_ir():
    """Only an autodiff request (no forward one raises the function first), run with
    ``isozyme run``'s runner; the trip count depends on the data."""
    from isozyme.tools.ir_run import run_ir

    def grow(x: float) -> float:
        r = x
        while True:
            r = 1.5 * r + x
            if not r < 10.0:
                return r

    for x in (0.3, 2.0, 12.0):  # several iterations, one
        (got,) = run_ir(GROW, "dgrow", [x, 2.0]).results
        want = 2.0 * (grow(x + H) - grow(x - H)) / (2 * H)
        assert got == pytest.approx(want, rel=1e-6)
