"""Parallel loops in the compiler: ``convert-parallel-to-for`` (the CPU's way of running
``scf.parallel`` and ``memref.atomic_rmw``) and ``convert-linalg-to-parallel-loops``.

Each test parses hand-written IR, runs the pass, checks the IR's shape and then runs it
on the CPU through isozyme's LLVM lowering, against numbers computed with numpy.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.transforms.lower_affine import LowerAffinePass

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.lowering.convert_parallel_to_for import (
    ATOMIC_RMW_KIND,
    ConvertParallelToForPass,
)
from isozyme.runtime import compile_llvm_module

V = "memref<?xf64, strided<[?], offset: ?>>"
M = "memref<?x?xf64, strided<[?, ?], offset: ?>>"
VI = "memref<?xi64, strided<[?], offset: ?>>"


def parse(src: str) -> ModuleOp:
    module = Parser(make_context(), src).parse_module()
    module.verify()
    return module


def sequentialised(src: str) -> ModuleOp:
    module = parse(src)
    ConvertParallelToForPass().apply(make_context(), module)
    module.verify()
    return module


def run(module: ModuleOp, name: str, args: list, results: list):
    lower_to_llvm(module)
    return compile_llvm_module(module).entry(name, args, results)


def names(module: ModuleOp) -> list[str]:
    return [op.name for op in module.walk()]


def parallel(ivs: list[str], lbs: list[str], ubs: list[str], steps: list[str],
             inits: list[str], init_types: list[str], body: str) -> str:
    """Generic-form ``scf.parallel`` (xDSL has no custom syntax for it)."""
    k = len(ivs)
    operands = ", ".join(lbs + ubs + steps + inits)
    types = ", ".join(["index"] * 3 * k + init_types)
    results = "(" + ", ".join(init_types) + ")"
    args = ", ".join(f"{iv}: index" for iv in ivs)
    return (
        f'"scf.parallel"({operands}) <{{operandSegmentSizes = array<i32: {k}, {k}, {k}, '
        f'{len(inits)}>}}> ({{\n  ^bb0({args}):\n{body}\n  }}) : ({types}) -> {results}'
    )


_REDUCTIONS = 0


def reduce(values: list[str], types: list[str], combiners: list[str]) -> str:
    """Generic-form ``scf.reduce`` with one ``arith`` combiner per value."""
    global _REDUCTIONS
    _REDUCTIONS += 1
    # SSA names are unique per reduce op: nested regions may not redefine a name.
    regions = ", ".join(
        f"""{{
      ^bb0(%lhs{_REDUCTIONS}_{i}: {t}, %rhs{_REDUCTIONS}_{i}: {t}):
        %red{_REDUCTIONS}_{i} = {c} %lhs{_REDUCTIONS}_{i}, %rhs{_REDUCTIONS}_{i} : {t}
        scf.reduce.return %red{_REDUCTIONS}_{i} : {t}
      }}"""
        for i, (t, c) in enumerate(zip(types, combiners))
    )
    if not values:
        return '    "scf.reduce"() : () -> ()'
    return (
        f'    "scf.reduce"({", ".join(values)}) ({regions}) : '
        f'({", ".join(types)}) -> ()'
    )


# ---- convert-parallel-to-for -------------------------------------------------------

SQUARES = f"""
func.func @squares(%x: {V}, %y: {V}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %x, %c0 : {V}
  {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], [], [], f'''
    %v = memref.load %x[%i] : {V}
    %s = arith.mulf %v, %v : f64
    memref.store %s, %y[%i] : {V}
''' + reduce([], [], []))}
  func.return
}}
"""


def test_1d_becomes_one_for_loop_and_runs() -> None:
    module = sequentialised(SQUARES)
    ops = names(module)
    assert "scf.parallel" not in ops and "scf.reduce" not in ops
    assert ops.count("scf.for") == 1
    loop = next(o for o in module.walk() if isinstance(o, scf.ForOp))
    assert not loop.iter_args and isinstance(loop.body.block.last_op, scf.YieldOp)
    x = np.linspace(-2.0, 3.0, 7)
    y = np.zeros(7)
    run(module, "squares", [V, V], [])(x, y)
    np.testing.assert_array_equal(y, x * x)


OUTER = f"""
func.func @outer(%x: {V}, %y: {V}, %a: {M}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %n = memref.dim %x, %c0 : {V}
  %m = memref.dim %y, %c0 : {V}
  {parallel(["%i", "%j"], ["%c0", "%c1"], ["%n", "%m"], ["%c1", "%c2"], [], [], f'''
    %u = memref.load %x[%i] : {V}
    %v = memref.load %y[%j] : {V}
    %p = arith.mulf %u, %v : f64
    memref.store %p, %a[%i, %j] : {M}
''' + reduce([], [], []))}
  func.return
}}
"""


def test_2d_becomes_a_nest_first_iv_outermost_with_bounds_and_steps() -> None:
    module = sequentialised(OUTER)
    loops = [o for o in module.walk() if isinstance(o, scf.ForOp)]
    assert len(loops) == 2 and loops[1].parent_op() is loops[0]
    assert loops[0].ub.name_hint == "n" and loops[1].ub.name_hint == "m"
    assert loops[1].lb.name_hint == "c1" and loops[1].step.name_hint == "c2"
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([5.0, 7.0, 11.0, 13.0, 17.0])
    a = np.full((3, 5), -1.0)
    run(module, "outer", [V, V, M], [])(x, y, a)
    expected = np.full((3, 5), -1.0)
    expected[:, 1::2] = np.outer(x, y)[:, 1::2]
    np.testing.assert_array_equal(a, expected)


SUM_2D = f"""
func.func @sum(%a: {M}, %z: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %a, %c0 : {M}
  %m = memref.dim %a, %c1 : {M}
  %r = {parallel(["%i", "%j"], ["%c0", "%c0"], ["%n", "%m"], ["%c1", "%c1"], ["%z"], ["f64"], f'''
    %v = memref.load %a[%i, %j] : {M}
''' + reduce(["%v"], ["f64"], ["arith.addf"]))}
  func.return %r : f64
}}
"""


def test_addf_reduction_is_carried_through_the_nest() -> None:
    module = sequentialised(SUM_2D)
    loops = [o for o in module.walk() if isinstance(o, scf.ForOp)]
    assert len(loops) == 2
    assert all(len(loop.iter_args) == 1 for loop in loops)
    # The outer loop starts from the init value, the inner from the outer's accumulator.
    assert loops[0].iter_args[0].name_hint == "z"
    assert loops[1].iter_args[0] is loops[0].body.block.args[1]
    # The reduce body is inlined: accumulator first, then the iteration's value.
    add = next(o for o in loops[1].body.block.ops if o.name == "arith.addf")
    assert add.operands[0] is loops[1].body.block.args[1]
    a = np.arange(12.0).reshape(3, 4) ** 2
    (r,) = run(module, "sum", [M, "f64"], ["f64"])(a, 0.5)
    assert r == a.sum() + 0.5


TWO_REDUCTIONS = f"""
func.func @sum_prod(%x: {V}) -> (f64, f64, f64) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %one = arith.constant 1.0 : f64
  %ninf = arith.constant 0xFFF0000000000000 : f64
  %n = memref.dim %x, %c0 : {V}
  %s, %p, %mx = {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%zero", "%one", "%ninf"],
                          ["f64", "f64", "f64"], f'''
    %v = memref.load %x[%i] : {V}
''' + reduce(["%v", "%v", "%v"], ["f64", "f64", "f64"],
             ["arith.addf", "arith.mulf", "arith.maxnumf"]))}
  func.return %s, %p, %mx : f64, f64, f64
}}
"""


def test_several_reductions_each_with_its_region() -> None:
    module = sequentialised(TWO_REDUCTIONS)
    (loop,) = [o for o in module.walk() if isinstance(o, scf.ForOp)]
    assert len(loop.iter_args) == 3
    x = np.array([1.5, -2.0, 3.0, 0.25])
    s, p, mx = run(module, "sum_prod", [V], ["f64", "f64", "f64"])(x)
    assert (s, p, mx) == (x.sum(), x.prod(), x.max())
    # an empty loop returns the init values
    assert run(sequentialised(TWO_REDUCTIONS), "sum_prod", [V], ["f64"] * 3)(
        np.zeros(0)
    ) == (0.0, 1.0, -np.inf)


_ROW = parallel(["%j"], ["%c0"], ["%m"], ["%c1"], ["%zero"], ["f64"], f"""
      %v = memref.load %a[%i, %j] : {M}
""" + reduce(["%v"], ["f64"], ["arith.addf"]))
_ROWS = parallel(["%i"], ["%c0"], ["%n"], ["%c1"], ["%zero"], ["f64"], f"""
    %r = {_ROW}
    memref.store %r, %rows[%i] : {V}
""" + reduce(["%r"], ["f64"], ["arith.addf"]))
NESTED = f"""
func.func @rowsums(%a: {M}, %rows: {V}) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %n = memref.dim %a, %c0 : {M}
  %m = memref.dim %a, %c1 : {M}
  %t = {_ROWS}
  func.return %t : f64
}}
"""


def test_nested_parallel_loops() -> None:
    module = sequentialised(NESTED)
    assert names(module).count("scf.for") == 2 and "scf.parallel" not in names(module)
    a = np.arange(1.0, 13.0).reshape(4, 3)
    rows = np.zeros(4)
    (t,) = run(module, "rowsums", [M, V], ["f64"])(a, rows)
    np.testing.assert_array_equal(rows, a.sum(axis=1))
    assert t == a.sum()


NO_IVS = f"""
func.func @once(%x: {V}, %z: f64) -> f64 {{
  %c0 = arith.constant 0 : index
  %r = {parallel([], [], [], [], ["%z"], ["f64"], f'''
    %v = memref.load %x[%c0] : {V}
''' + reduce(["%v"], ["f64"], ["arith.addf"]))}
  func.return %r : f64
}}
"""


def test_parallel_without_ivs_runs_once() -> None:
    module = sequentialised(NO_IVS)
    assert "scf.for" not in names(module) and "scf.parallel" not in names(module)
    (r,) = run(module, "once", [V, "f64"], ["f64"])(np.array([2.5]), 1.0)
    assert r == 3.5


HISTOGRAM = f"""
func.func @scatter_add(%idx: {VI}, %w: {V}, %h: {V}) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = memref.dim %idx, %c0 : {VI}
  {parallel(["%i"], ["%c0"], ["%n"], ["%c1"], [], [], f'''
    %k64 = memref.load %idx[%i] : {VI}
    %k = arith.index_cast %k64 : i64 to index
    %v = memref.load %w[%i] : {V}
    %old = "memref.atomic_rmw"(%v, %h, %k) <{{kind = {ATOMIC_RMW_KIND["addf"]} : i64}}> : (f64, {V}, index) -> f64
''' + reduce([], [], []))}
  func.return
}}
"""


def test_atomic_addf_scatter_with_conflicting_indices() -> None:
    module = sequentialised(HISTOGRAM)
    ops = names(module)
    assert "memref.atomic_rmw" not in ops
    assert ops.count("memref.load") == 3 and ops.count("memref.store") == 1
    idx = np.array([0, 2, 2, 1, 2, 0], dtype=np.int64)
    w = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    h = np.array([0.5, 0.0, 0.0])
    run(module, "scatter_add", [VI, V, V], [])(idx, w, h)
    expected = np.array([0.5, 0.0, 0.0])
    np.add.at(expected, idx, w)
    np.testing.assert_array_equal(h, expected)


def _rmw_src(kind: str, elem: str) -> str:
    t = f"memref<?x{elem}, strided<[?], offset: ?>>"
    return f"""
func.func @rmw(%m: {t}, %v: {elem}) -> {elem} {{
  %c1 = arith.constant 1 : index
  %old = "memref.atomic_rmw"(%v, %m, %c1) <{{kind = {ATOMIC_RMW_KIND[kind]} : i64}}> : ({elem}, {t}, index) -> {elem}
  func.return %old : {elem}
}}
"""


@pytest.mark.parametrize(
    ("kind", "elem", "mem", "value", "new"),
    [
        ("addf", "f64", 2.5, 4.0, 6.5),
        ("mulf", "f64", 2.5, 4.0, 10.0),
        ("maximumf", "f64", 2.5, 4.0, 4.0),
        ("maxnumf", "f64", 2.5, np.nan, 2.5),
        ("minimumf", "f64", 2.5, -1.0, -1.0),
        ("minnumf", "f64", 2.5, 4.0, 2.5),
        ("assign", "f64", 2.5, 4.0, 4.0),
        ("addf", "f32", 2.5, 4.0, 6.5),
        ("addi", "i64", 7, -3, 4),
        ("muli", "i64", 7, -3, -21),
        ("maxs", "i64", 7, -3, 7),
        ("mins", "i64", 7, -3, -3),
        ("andi", "i64", 6, 3, 2),
        ("ori", "i64", 6, 3, 7),
        ("xori", "i64", 6, 3, 5),
    ],
)
def test_atomic_rmw_kinds_return_the_old_value(kind, elem, mem, value, new) -> None:
    module = sequentialised(_rmw_src(kind, elem))
    assert "memref.atomic_rmw" not in names(module)
    t = f"memref<?x{elem}, strided<[?], offset: ?>>"
    dtype = {"f64": np.float64, "f32": np.float32, "i64": np.int64}[elem]
    m = np.array([0, mem, 0], dtype=dtype)
    (old,) = run(module, "rmw", [t, elem], [elem])(m, value)
    assert old == mem
    assert m[1] == new and m[0] == 0 and m[2] == 0


def test_atomic_rmw_unknown_kind_is_a_lowering_error() -> None:
    from isozyme.compiler.lowering import LoweringError

    module = parse(_rmw_src("addf", "f64").replace("kind = 0", "kind = 99"))
    with pytest.raises(LoweringError, match="kind 99"):
        ConvertParallelToForPass().apply(make_context(), module)


def test_atomic_rmw_kind_numbering_is_upstream_mlir() -> None:
    # arith::AtomicRMWKind in upstream MLIR's ArithBase.td (alphabetical since xori).
    assert [k for k, _ in sorted(ATOMIC_RMW_KIND.items(), key=lambda kv: kv[1])] == [
        "addf", "addi", "andi", "assign", "maximumf", "maxnumf", "maxs", "maxu",
        "minimumf", "minnumf", "mins", "minu", "mulf", "muli", "ori", "xori",
    ]
    assert isinstance(
        next(o for o in parse(_rmw_src("mulf", "f64")).walk()
             if isinstance(o, memref.AtomicRMWOp)).kind.value.data, int
    )


# ---- convert-linalg-to-parallel-loops ----------------------------------------------

from xdsl.dialects.linalg.ops import GenericOp  # noqa: E402

from isozyme.compiler.passes.convert_linalg_to_parallel_loops import (  # noqa: E402
    ConvertLinalgToParallelLoopsPass,
)

MD = "memref<?x?xf64>"
VD = "memref<?xf64>"


def generic(maps: list[str], iterators: list[str], ins: list[tuple[str, str]],
            outs: list[tuple[str, str]], body: str) -> str:
    """``linalg.generic`` text; ``ins``/``outs`` are ``(value, type)`` pairs."""
    types = [t for _, t in ins + outs]
    elems = [re.match(r"memref<(?:[?\d]+x)*(\w+)", t).group(1) if t.startswith("memref")
             else t for t in types]
    args = ", ".join(f"%a{k}: {e}" for k, e in enumerate(elems))
    maps_text = ", ".join(f"affine_map<{m}>" for m in maps)
    its = ", ".join(f'"{i}"' for i in iterators)
    ins_text = ", ".join(v for v, _ in ins)
    ins_types = ", ".join(t for _, t in ins)
    outs_text = ", ".join(v for v, _ in outs)
    outs_types = ", ".join(t for _, t in outs)
    return (
        f"linalg.generic {{indexing_maps = [{maps_text}], iterator_types = [{its}]}} "
        f"ins({ins_text} : {ins_types}) outs({outs_text} : {outs_types}) {{\n"
        f"  ^bb0({args}):\n{body}\n  }}"
    )


def parallelised(src: str) -> ModuleOp:
    """``src`` after convert-linalg-to-parallel-loops (checked: no linalg op left)."""
    module = parse(src)
    ConvertLinalgToParallelLoopsPass().apply(make_context(), module)
    module.verify()
    assert not any(isinstance(o, GenericOp) for o in module.walk())
    return module


def on_cpu(module: ModuleOp, name: str, args: list, results: list):
    ConvertParallelToForPass().apply(make_context(), module)
    module.verify()
    return run(module, name, args, results)


def loop_shape(module: ModuleOp) -> list[tuple[str, int]]:
    """The loops, outermost first: ``("parallel", #ivs)`` or ``("for", 1)``."""
    out = []
    for o in module.walk():
        if isinstance(o, scf.ParallelOp):
            out.append(("parallel", len(o.lowerBound)))
        elif isinstance(o, scf.ForOp):
            out.append(("for", 1))
    return out


AXPY_2D = f"""
func.func @axpy(%a: f64, %x: {MD}, %y: {MD}, %z: {MD}) {{
  {generic(["(d0, d1) -> ()", "(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0, d1)"],
           ["parallel", "parallel"], [("%a", "f64"), ("%x", MD), ("%y", MD)], [("%z", MD)], '''
    %m = arith.mulf %a0, %a1 : f64
    %s = arith.addf %m, %a2 : f64
    linalg.yield %s : f64''')}
  func.return
}}
"""


def test_elementwise_becomes_one_parallel_loop_over_all_dimensions() -> None:
    module = parallelised(AXPY_2D)
    assert loop_shape(module) == [("parallel", 2)]
    (par,) = [o for o in module.walk() if isinstance(o, scf.ParallelOp)]
    assert [o.name for o in par.body.block.ops].count("memref.store") == 1
    x = np.arange(6.0).reshape(2, 3)
    y = np.ones((2, 3))
    z = np.zeros((2, 3))
    on_cpu(module, "axpy", ["f64", MD, MD, MD], [])(0.5, x, y, z)
    np.testing.assert_array_equal(z, 0.5 * x + y)


ROWSUM = f"""
func.func @rowsum(%a: {MD}, %s: {VD}) {{
  {generic(["(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0)"], ["parallel", "reduction"],
           [("%a", MD)], [("%s", VD)], '''
    %r = arith.addf %a1, %a0 : f64
    linalg.yield %r : f64''')}
  func.return
}}
"""


def test_reduction_dimension_is_a_sequential_loop_inside_the_parallel_one() -> None:
    module = parallelised(ROWSUM)
    assert loop_shape(module) == [("parallel", 1), ("for", 1)]
    loop = next(o for o in module.walk() if isinstance(o, scf.ForOp))
    assert isinstance(loop.parent_op(), scf.ParallelOp)
    a = np.arange(12.0).reshape(3, 4) ** 2
    s = np.full(3, 0.5)
    on_cpu(module, "rowsum", [MD, VD], [])(a, s)
    np.testing.assert_array_equal(s, 0.5 + a.sum(axis=1))


COLSUM = f"""
func.func @colsum(%a: {MD}, %s: {VD}) {{
  {generic(["(d0, d1) -> (d0, d1)", "(d0, d1) -> (d1)"], ["reduction", "parallel"],
           [("%a", MD)], [("%s", VD)], '''
    %r = arith.addf %a1, %a0 : f64
    linalg.yield %r : f64''')}
  func.return
}}
"""


def test_parallel_dimensions_move_outside_reductions() -> None:
    module = parallelised(COLSUM)
    assert loop_shape(module) == [("parallel", 1), ("for", 1)]
    (par,) = [o for o in module.walk() if isinstance(o, scf.ParallelOp)]
    load = next(o for o in module.walk() if isinstance(o, memref.LoadOp)
                and o.memref.name_hint == "a")
    # a[d0, d1]: d1 is the parallel loop's variable, d0 the inner for's
    assert load.indices[1] is par.body.block.args[0]
    a = np.arange(12.0).reshape(3, 4) ** 2
    s = np.zeros(4)
    on_cpu(module, "colsum", [MD, VD], [])(a, s)
    np.testing.assert_array_equal(s, a.sum(axis=0))


MATMUL = f"""
func.func @matmul(%a: {MD}, %b: {MD}, %c: {MD}) {{
  {generic(["(i, j, k) -> (i, k)", "(i, j, k) -> (k, j)", "(i, j, k) -> (i, j)"],
           ["parallel", "parallel", "reduction"], [("%a", MD), ("%b", MD)], [("%c", MD)], '''
    %p = arith.mulf %a0, %a1 : f64
    %r = arith.addf %a2, %p : f64
    linalg.yield %r : f64''')}
  func.return
}}
"""


def test_matmul() -> None:
    module = parallelised(MATMUL)
    assert loop_shape(module) == [("parallel", 2), ("for", 1)]
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(12.0).reshape(3, 4) - 5.0
    c = np.zeros((2, 4))
    on_cpu(module, "matmul", [MD, MD, MD], [])(a, b, c)
    np.testing.assert_array_equal(c, a @ b)


def total_src(body: str, elem: str = "f64", out: str = "memref<f64>",
              out_map: str = "(d0, d1) -> ()", ins: list[tuple[str, str]] | None = None) -> str:
    """A full reduction of a 2-D array into ``out`` with ``body`` (``%a0`` the element,
    ``%a1`` the output's value)."""
    a = f"memref<?x?x{elem}>"
    ins = ins if ins is not None else [("%a", a)]
    maps = ["(d0, d1) -> (d0, d1)"] * len(ins) + [out_map]
    return f"""
func.func @total(%a: {a}, %s: {out}) {{
  {generic(maps, ["reduction", "reduction"], ins, [("%s", out)], body)}
  func.return
}}
"""


TOTAL = total_src("""
    %r = arith.addf %a1, %a0 : f64
    linalg.yield %r : f64""")


def sequential_sum(init: float, values) -> float:
    """Left to right, as the sequential loop adds."""
    s = init
    for v in np.asarray(values).ravel():
        s = s + v
    return s


def the_parallel_loop(module: ModuleOp) -> scf.ParallelOp:
    (par,) = [o for o in module.walk() if isinstance(o, scf.ParallelOp)]
    return par


def test_full_sum_is_one_parallel_reduction_over_every_dimension() -> None:
    module = parallelised(TOTAL)
    assert loop_shape(module) == [("parallel", 2)]
    par = the_parallel_loop(module)
    # init = the output's value; the result stored back; nothing of %s in the loop
    (init,) = par.initVals
    assert isinstance(init.owner, memref.LoadOp) and init.owner.memref.name_hint == "s"
    (use,) = par.res[0].uses
    assert isinstance(use.operation, memref.StoreOp)
    assert use.operation.memref.name_hint == "s"
    assert not any(isinstance(o, (memref.LoadOp, memref.StoreOp))
                   and o.memref.name_hint == "s" for o in par.walk())
    reduce = par.body.block.last_op
    assert isinstance(reduce, scf.ReduceOp)
    (region,) = reduce.reductions
    combine = region.block.first_op
    assert combine.name == "arith.addf"
    assert list(combine.operands) == list(region.block.args)  # the accumulator first
    a = np.random.default_rng(1).standard_normal((3, 5))
    s = np.array(1.0)
    on_cpu(module, "total", [MD, "memref<f64>"], [])(a, s)
    assert s == sequential_sum(1.0, a)  # the sequential loop's order, bit for bit


def test_full_sum_keeps_the_operand_order_of_addf_e_out() -> None:
    module = parallelised(total_src("""
    %sq = arith.mulf %a0, %a0 : f64
    %r = arith.addf %sq, %a1 : f64
    linalg.yield %r : f64"""))
    reduce = the_parallel_loop(module).body.block.last_op
    (region,) = reduce.reductions
    combine = region.block.first_op
    assert list(combine.operands) == list(region.block.args)[::-1]  # addf(x, acc)
    a = np.random.default_rng(2).standard_normal((4, 3))
    s = np.array(-0.5)
    on_cpu(module, "total", [MD, "memref<f64>"], [])(a, s)
    assert s == sequential_sum(-0.5, a * a)


def test_integer_full_sum_reduces_by_addi() -> None:
    mi = "memref<?x?xi64>"
    module = parallelised(total_src("""
    %r = arith.addi %a1, %a0 : i64
    linalg.yield %r : i64""", elem="i64", out="memref<i64>"))
    reduce = the_parallel_loop(module).body.block.last_op
    assert reduce.reductions[0].block.first_op.name == "arith.addi"
    a = np.arange(-6, 6, dtype=np.int64).reshape(3, 4) ** 3
    s = np.array(7, dtype=np.int64)
    on_cpu(module, "total", [mi, "memref<i64>"], [])(a, s)
    assert s == 7 + a.sum()


def test_full_sum_into_one_element_of_a_vector() -> None:
    # an output map with constant results: every iteration updates s[1]
    module = parallelised(total_src("""
    %r = arith.addf %a1, %a0 : f64
    linalg.yield %r : f64""", out=VD, out_map="(d0, d1) -> (1)"))
    assert loop_shape(module) == [("parallel", 2)]
    LowerAffinePass().apply(make_context(), module)
    a = np.random.default_rng(3).standard_normal((2, 3))
    s = np.array([5.0, 0.25, 6.0])
    on_cpu(module, "total", [MD, VD], [])(a, s)
    assert s.tolist() == [5.0, sequential_sum(0.25, a), 6.0]


@pytest.mark.parametrize(("name", "body", "expected"), [
    ("product", """
    %r = arith.mulf %a1, %a0 : f64
    linalg.yield %r : f64""", lambda s, a: s * np.prod(a)),
    ("maximum", """
    %r = arith.maximumf %a1, %a0 : f64
    linalg.yield %r : f64""", lambda s, a: max(s, a.max())),
    # the output read twice: its contribution depends on the accumulator
    ("output used in the term", """
    %m = arith.mulf %a1, %a0 : f64
    %r = arith.addf %a1, %m : f64
    linalg.yield %r : f64""", None),
    ("sum also used elsewhere", """
    %r = arith.addf %a1, %a0 : f64
    %t = arith.mulf %r, %r : f64
    linalg.yield %t : f64""", None),
], ids=lambda p: p if isinstance(p, str) and "\n" not in p else "")
def test_other_full_reductions_stay_sequential(name, body, expected) -> None:
    module = parallelised(total_src(body))
    assert loop_shape(module) == [("for", 1), ("for", 1)]
    assert not any(isinstance(o, scf.ReduceOp) for o in module.walk())
    if expected is not None:
        a = np.random.default_rng(4).uniform(0.5, 1.5, (2, 3))
        s = np.array(1.5)
        on_cpu(module, "total", [MD, "memref<f64>"], [])(a, s)
        assert s == pytest.approx(expected(1.5, a), rel=1e-14)


def test_a_full_sum_reading_its_own_output_stays_sequential() -> None:
    # s is an input too: running the iterations in parallel would change what they read
    src = f"""
func.func @total(%a: {MD}, %s: memref<f64>) {{
  {generic(["(d0, d1) -> (d0, d1)", "(d0, d1) -> ()", "(d0, d1) -> ()"],
           ["reduction", "reduction"], [("%a", MD), ("%s", "memref<f64>")],
           [("%s", "memref<f64>")], '''
    %t = arith.mulf %a0, %a1 : f64
    %r = arith.addf %a2, %t : f64
    linalg.yield %r : f64''')}
  func.return
}}
"""
    module = parallelised(src)
    assert loop_shape(module) == [("for", 1), ("for", 1)]
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    s = np.array(1.0)
    on_cpu(module, "total", [MD, "memref<f64>"], [])(a, s)
    want = 1.0
    for v in a.ravel():
        want = want + v * want
    assert s == want


def test_partial_sums_keep_their_sequential_reduction_loop() -> None:
    # np.sum(A, axis=1): a parallel output dimension; the reduction stays an scf.for
    module = parallelised(ROWSUM)
    assert loop_shape(module) == [("parallel", 1), ("for", 1)]
    assert all(not o.args for o in module.walk() if isinstance(o, scf.ReduceOp))


TRANSPOSE_INDEX = f"""
func.func @tr(%a: {MD}, %t: {MD}) {{
  {generic(["(d0, d1) -> (d0, d1)", "(d0, d1) -> (d1, d0)"], ["parallel", "parallel"],
           [("%a", MD)], [("%t", MD)], '''
    %i = linalg.index 0 : index
    %i64 = arith.index_cast %i : index to i64
    %f = arith.sitofp %i64 : i64 to f64
    %r = arith.addf %a0, %f : f64
    linalg.yield %r : f64''')}
  func.return
}}
"""


def test_transposed_output_and_linalg_index() -> None:
    module = parallelised(TRANSPOSE_INDEX)
    assert loop_shape(module) == [("parallel", 2)]
    a = np.arange(6.0).reshape(2, 3)
    t = np.zeros((3, 2))
    on_cpu(module, "tr", [MD, MD], [])(a, t)
    np.testing.assert_array_equal(t, (a + np.arange(2.0)[:, None]).T)


BROADCAST_WRITE = f"""
func.func @last(%a: {MD}, %s: {VD}) {{
  {generic(["(d0, d1) -> (d0, d1)", "(d0, d1) -> (d0)"], ["parallel", "parallel"],
           [("%a", MD)], [("%s", VD)], '''
    linalg.yield %a0 : f64''')}
  func.return
}}
"""


def test_a_parallel_dimension_no_output_indexes_stays_sequential() -> None:
    # s[d0] is written once per d1: running d1 in parallel would race.
    module = parallelised(BROADCAST_WRITE)
    assert loop_shape(module) == [("parallel", 1), ("for", 1)]
    a = np.arange(6.0).reshape(2, 3)
    s = np.zeros(2)
    on_cpu(module, "last", [MD, VD], [])(a, s)
    np.testing.assert_array_equal(s, a[:, -1])  # the sequential loop's last write


RANK0 = f"""
func.func @scale(%x: memref<f64>, %y: memref<f64>) {{
  {generic(["() -> ()", "() -> ()"], [], [("%x", "memref<f64>")], [("%y", "memref<f64>")], '''
    %two = arith.constant 2.0 : f64
    %r = arith.mulf %a0, %two : f64
    linalg.yield %r : f64''')}
  func.return
}}
"""


def test_rank_0_generic_is_inlined() -> None:
    module = parallelised(RANK0)
    assert loop_shape(module) == []
    y = np.array(0.0)
    on_cpu(module, "scale", ["memref<f64>", "memref<f64>"], [])(np.array(1.25), y)
    assert y == 2.5


def test_tensor_semantics_are_refused() -> None:
    from xdsl.utils.exceptions import PassFailedException

    src = """
func.func @f(%x: tensor<4xf64>) -> tensor<4xf64> {
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
       iterator_types = ["parallel"]} ins(%x : tensor<4xf64>) outs(%x : tensor<4xf64>) {
  ^bb0(%a: f64, %b: f64):
    linalg.yield %a : f64
  } -> tensor<4xf64>
  func.return %r : tensor<4xf64>
}
"""
    with pytest.raises(PassFailedException, match="tensor results"):
        ConvertLinalgToParallelLoopsPass().apply(make_context(), parse(src))


# Whole-array numpy code as the frontend traces it: the same numbers through
# convert-linalg-to-parallel-loops as through convert-linalg-to-loops (the pipeline's).
def _np_programs():
    def dot(x, y):
        return np.sum(x * y)

    def matvec(a, x):
        return np.sum(a @ x)

    def colmax(a):
        return np.sum(np.max(a, axis=0))

    def relu_mean(a):
        return np.mean(np.maximum(a, 0.0))

    def symmetric(a):
        return np.sum((a + a.T) * a)

    def outer(x, y):
        return np.sum(np.outer(x, y) ** 2)

    return [(dot, ["v", "v"]), (matvec, ["m", "v"]), (colmax, ["m"]),
            (relu_mean, ["m"]), (symmetric, ["m"]), (outer, ["v", "v"])]


@pytest.mark.parametrize(("fn", "kinds"), _np_programs(), ids=lambda p: getattr(p, "__name__", ""))
def test_frontend_whole_array_code(fn, kinds) -> None:
    from xdsl.dialects.builtin import f64
    from xdsl.transforms.convert_linalg_to_loops import ConvertLinalgToLoopsPass

    from isozyme.frontends.python import array_memref_type, trace
    from tests.frontends.ir_eval import evaluate

    types = [array_memref_type(1 if k == "v" else 2, f64) for k in kinds]
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(4) if k == "v" else rng.standard_normal((4, 4)) for k in kinds]
    traced = trace(fn, types)
    assert any(isinstance(o, GenericOp) for o in traced.module.walk())  # whole-array code
    mine = traced.module.clone()
    ConvertLinalgToParallelLoopsPass().apply(make_context(), mine)
    assert any(isinstance(o, scf.ParallelOp) for o in mine.walk())
    ConvertParallelToForPass().apply(make_context(), mine)
    mine.verify()
    reference = traced.module.clone()
    ConvertLinalgToLoopsPass().apply(make_context(), reference)
    got = evaluate(mine, traced.func_name, *[a.copy() for a in args])
    expected = evaluate(reference, traced.func_name, *[a.copy() for a in args])
    assert got == expected
    assert got[0] == pytest.approx(fn(*args), rel=1e-12)
