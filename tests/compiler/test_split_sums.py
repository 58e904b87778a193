"""``split-accumulations`` groups reassociable sums (vector forward mode's lanes), and
the batched forward code of a matvec is vectorized and right."""

import re

import numpy as np
from xdsl.parser import Parser

import isozyme as iz
from isozyme import BatchDuplicated, Const, Forward
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.split_accumulations import SUMS_PER_LOOP, SplitAccumulationsPass


def _lanes_module(n_lanes: int, flags: str, same_root: bool = False, args: bool = False) -> str:
    """A row of a matvec and ``n_lanes`` tangent lanes, as forward mode emits it: the
    primal sum (no flags) and one sum per lane (``flags``), each into its own
    allocation (or all into one when ``same_root``, or into arguments when ``args``)."""
    lines = []
    for k in range(n_lanes):
        buf = "%dy0" if same_root else f"%dy{k}"
        idx = f"%c{k}" if same_root else "%i"
        lines += [
            f"    %t{k} = memref.load %dx{k}[%k] : memref<?xf64>",
            f"    %p{k} = arith.mulf %t{k}, %a fastmath<contract> : f64",
            f"    %o{k} = memref.load {buf}[{idx}] : memref<?xf64>",
            f"    %s{k} = arith.addf %o{k}, %p{k}{flags} : f64",
            f"    memref.store %s{k}, {buf}[{idx}] : memref<?xf64>",
        ]
    dx_args = ", ".join(f"%dx{k}: memref<?xf64>" for k in range(n_lanes))
    dy_args = "".join(f", %dy{k}: memref<?xf64>" for k in range(n_lanes)) if args else ""
    allocs = "" if args else "\n".join(
        f"  %dy{k} = memref.alloc(%n) : memref<?xf64>" for k in range(n_lanes)
    )
    consts = "\n".join(f"  %c{k} = arith.constant {k} : index" for k in range(n_lanes))
    body = "\n".join(lines)
    return f"""
func.func @f(%A: memref<?x?xf64>, %x: memref<?xf64>, {dx_args}{dy_args}, %n: index, %i: index) {{
  %y = memref.alloc(%n) : memref<?xf64>
{allocs}
{consts}
  %z = arith.constant 0 : index
  %one = arith.constant 1 : index
  scf.for %k = %z to %n step %one {{
    %a = memref.load %A[%i, %k] : memref<?x?xf64>
    %xk = memref.load %x[%k] : memref<?xf64>
    %m = arith.mulf %a, %xk : f64
    %yo = memref.load %y[%i] : memref<?xf64>
    %ys = arith.addf %yo, %m : f64
    memref.store %ys, %y[%i] : memref<?xf64>
{body}
  }}
  func.return
}}
"""


def _loops_after_split(text: str) -> list[str]:
    ctx = make_context()
    m = Parser(ctx, text).parse_module()
    SplitAccumulationsPass().apply(ctx, m)
    m.verify()
    return str(m).split("scf.for")[1:]


def test_reassociable_sums_into_allocations_share_loops():
    lanes = SUMS_PER_LOOP + 2
    loops = _loops_after_split(_lanes_module(lanes, " fastmath<reassoc,contract>"))
    # the primal sum alone, then the lanes in groups of SUMS_PER_LOOP
    assert len(loops) == 1 + 2
    assert loops[0].count("memref.store") == 1
    assert [loop.count("memref.store") for loop in loops[1:]] == [SUMS_PER_LOOP, 2]
    # the shared load of A[i, k] is once per loop, not once per lane
    assert all(loop.count("%A") == 1 for loop in loops)


def test_sums_without_reassoc_or_into_one_buffer_or_arguments_stay_apart():
    lanes = 4
    assert len(_loops_after_split(_lanes_module(lanes, ""))) == 1 + lanes
    one_buffer = _lanes_module(lanes, " fastmath<reassoc,contract>", same_root=True)
    assert len(_loops_after_split(one_buffer)) == 1 + lanes
    into_args = _lanes_module(lanes, " fastmath<reassoc,contract>", args=True)
    assert len(_loops_after_split(into_args)) == 1 + lanes


def _sin_matvec(A, x):
    return np.sin(A @ x)


def test_batched_forward_matvec_is_vectorized_and_exact():
    rng = np.random.default_rng(3)
    A, x = rng.normal(size=(20, 20)), rng.normal(size=20)
    width = 8
    seeds = tuple(np.eye(20)[k] for k in range(width))
    llvm = iz.ir(Forward, _sin_matvec, Const(A), BatchDuplicated(x, seeds),
                 stage="llvm-ir-optimized")
    # the lanes' sums are vector adds, not one scalar chain per lane
    assert re.search(r"fadd reassoc contract <\d+ x double>", llvm)
    lanes = iz.autodiff(Forward, _sin_matvec, Const(A), BatchDuplicated(x, seeds))[0]
    J = np.cos(A @ x)[:, None] * A
    for k in range(width):
        np.testing.assert_allclose(lanes[k], J[:, k], rtol=1e-13, atol=1e-14)
    full = iz.jacobian(Forward, _sin_matvec, Const(A), x, chunk=width)[1]
    np.testing.assert_allclose(full, J, rtol=1e-13, atol=1e-14)
