"""``analysis/injectivity.py``: which induction variable an index is an injective
function of. The proof decides where a parallel adjoint needs no atomic and which host
loops may run as kernels, so the negatives matter as much as the positives."""

from __future__ import annotations

import pytest
from xdsl.dialects import scf
from xdsl.parser import Parser

from isozyme.compiler.analysis.injectivity import followed_iv
from isozyme.compiler.context import make_context

TEMPLATE = """
func.func @f(%c: index, %n: index, %buf: memref<?xindex>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %cz = arith.constant 0 : index
  "scf.parallel"(%c0, %c0, %n, %n, %c1, %c1) <{operandSegmentSizes = array<i32: 2, 2, 2, 0>}> ({
  ^bb0(%i: index, %j: index):
    scf.for %k = %c0 to %n step %c1 {
      BODY
      memref.store %v, %buf[%c0] : memref<?xindex>
    }
    scf.reduce
  }) : (index, index, index, index, index, index) -> ()
  func.return
}
"""

CASES = [
    ("arith.index_cast %i : index to index", "i"),
    ("arith.addi %i, %c : index", "i"),
    ("arith.subi %c, %j : index", "j"),
    ("arith.muli %c3, %i : index", "i"),
    ("arith.muli %i, %cz : index", None),             # i * 0
    ("arith.remsi %i, %c3 : index", None),            # i % 3
    ("arith.addi %i, %j : index", None),              # two ivs
    ("arith.addi %i, %k : index", None),              # an inner loop's index
    ("arith.muli %i, %c : index", None),              # times a value that may be 0
    ("memref.load %buf[%i] : memref<?xindex>", None),  # data-dependent
]


def _find(module, name: str):
    for op in module.walk():
        if isinstance(op, scf.ParallelOp):
            par = op
    ivs = list(par.body.block.args)
    store = [op for op in module.walk() if op.name == "memref.store"][-1]
    named = {"i": ivs[0], "j": ivs[1]}
    return par, ivs, store.operands[0], named.get(name)


@pytest.mark.parametrize("body, want", CASES)
def test_followed_iv(body: str, want: str | None) -> None:
    ctx = make_context()
    module = Parser(ctx, TEMPLATE.replace("BODY", "%v = " + body)).parse_module()
    par, ivs, v, expected = _find(module, want or "")
    assert followed_iv(v, par, ivs) is expected


def test_casts_are_followed_only_when_they_widen() -> None:
    ctx = make_context()
    cases = [
        # index -> i32 truncates: distinct indices may collide
        ("%t = arith.index_cast %i : index to i32\n      %w = arith.extsi %t : i32 to i64\n"
         "      %v = arith.index_cast %w : i64 to index", None),
        # index -> i64 -> index: the same 64 bits
        ("%t = arith.index_cast %i : index to i64\n      %v = arith.index_cast %t : i64 to index",
         0),
        # i32 -> i64 sign-extends: injective
        ("%t = arith.index_cast %i : index to i64\n      %u = arith.trunci %t : i64 to i32\n"
         "      %w = arith.extsi %u : i32 to i64\n      %v = arith.index_cast %w : i64 to index",
         None),
    ]
    for stmts, want in cases:
        module = Parser(ctx, TEMPLATE.replace("BODY", stmts)).parse_module()
        par, ivs, v, _ = _find(module, "")
        assert followed_iv(v, par, ivs) is (None if want is None else ivs[want]), stmts
