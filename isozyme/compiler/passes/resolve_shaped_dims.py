"""``resolve-shaped-type-result-dims``: give every array size one SSA value, so that
whole-array code traced through helpers fuses.

isozyme traces on ranks, not shapes, and a helper function is traced without its caller:
inside ``def ode_fun(x, y)`` the sizes of ``x[1:]`` and ``y[:-1]`` are unrelated values
that may be 1 at run time, so ``x[1:] * y[:-1]`` carries a shape check and numpy's
broadcast views (a ``memref.subview`` whose stride is ``select(size == 1, 0, 1)``), and
so does every operation on the helper's result in the caller.  After inlining those
sizes are the same value in disguise (``memref.dim`` of an allocation sized by
``memref.dim`` of the argument ...), but the views hide the temporaries from
``linalg-fuse-elementwise`` (a producer is fused only into a consumer that reads its
buffer directly), so every operation streams its own temporary through memory, and
reverse mode caches them.  Like MLIR's pass of the same name, this one replaces
``memref.dim`` of an op result by the size the op was built with, and then folds what
that makes trivial:

* ``memref.dim`` of a ``memref.alloc`` (its size operand) or of a non rank-reducing
  ``memref.subview`` (its size);
* identical pure size computations (``arith`` on ``index``/``i1``, ``memref.dim``) are
  merged, scoped by dominance (a small CSE of its own: linear, unlike a general one);
* ``arith.cmpi`` of equal operands, of constants, and ``size == 1`` where the size is a
  dynamic size of an argument of the function being differentiated (the signature
  makes every size that is 1 a static 1, so a dynamic one is never 1);
* ``arith.select`` of a constant or between equal values, ``arith.andi``/``ori`` with a
  constant operand;
* ``isz.check`` of a condition that is constant true (it can never fail);
* a ``memref.subview`` with zero offsets, the source's sizes and unit strides (a stride
  ``select(size == 1, 0, 1)`` of a dimension of that size is unit: one element is read
  either way) is its source, for the ops that read or write through it
  (``linalg.generic``, ``memref.load``/``store``, ``memref.dim``, another subview).

Run after inlining and before ``linalg-fuse-elementwise``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    IntegerAttr,
    IntegerType,
    MemRefType,
    ModuleOp,
)
from xdsl.dialects.linalg.ops import GenericOp
from xdsl.ir import BlockArgument, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.dialects.check import CheckOp

_MAX_ROUNDS = 8

#: Pure ops on sizes and conditions that the scoped CSE merges.
_CSE_OPS = (arith.ConstantOp, arith.AddiOp, arith.SubiOp, arith.MuliOp, arith.MaxSIOp,
            arith.MinSIOp, arith.CmpiOp, arith.SelectOp, arith.AndIOp, arith.OrIOp,
            arith.IndexCastOp, memref.DimOp)

#: Ops that may read or write through an identity view's source instead of the view.
_VIEW_USERS = (GenericOp, memref.LoadOp, memref.StoreOp, memref.DimOp, memref.SubviewOp)

#: arith.cmpi predicates true of equal operands (eq, sle, sge, ule, uge).
_TRUE_ON_EQUAL = frozenset({0, 3, 5, 7, 9})


def _const_int(v: SSAValue) -> int | None:
    """The value of an integer or index ``arith.constant``, else None."""
    op = v.owner
    if isinstance(op, arith.ConstantOp) and isinstance(op.value, IntegerAttr):
        return op.value.value.data
    return None


def _is_i1(v: SSAValue) -> bool:
    return isinstance(v.type, IntegerType) and v.type.width.data == 1


def _public_functions(module: ModuleOp) -> set[str]:
    """Functions differentiated by a request whose array operands are all arguments of
    the request function: their dynamic argument sizes are never 1 (the signature)."""
    out: set[str] = set()
    blocked: set[str] = set()
    for op in module.walk():
        callee = op.properties.get("fn") or op.attributes.get("fn")
        if not op.name.startswith("enzyme.") or callee is None:
            continue
        name = callee.root_reference.data  # type: ignore[union-attr]
        parent = op.parent_op()
        ok = isinstance(parent, func.FuncOp) and parent.sym_name.data == "__iz_request" and all(
            isinstance(v, BlockArgument) and v.block is parent.body.block
            for v in op.operands if isinstance(v.type, MemRefType))
        (out if ok else blocked).add(name)
    # a function called anywhere else may get any sizes
    for op in module.walk():
        if isinstance(op, func.CallOp):
            blocked.add(op.callee.root_reference.data)
    return out - blocked


class _Folder:
    """One module's folding state: the functions whose argument sizes are never 1."""

    def __init__(self, module: ModuleOp) -> None:
        self.module = module
        self.public = _public_functions(module)
        self.changed = False

    # -- facts -------------------------------------------------------------------
    def _never_one(self, v: SSAValue) -> bool:
        """``v`` is a dynamic size of an argument of a public function."""
        dim = v.owner
        if not isinstance(dim, memref.DimOp):
            return False
        src, j = dim.source, _const_int(dim.index)
        if not isinstance(src, BlockArgument) or j is None:
            return False
        fn = src.block.parent_op()
        return (isinstance(fn, func.FuncOp) and src.block is fn.body.blocks.first
                and fn.sym_name.data in self.public and isinstance(src.type, MemRefType)
                and src.type.get_shape()[j] == DYNAMIC_INDEX)

    @staticmethod
    def _size_of(buf: SSAValue, j: int) -> SSAValue | int | None:
        """Size ``j`` of ``buf`` as its defining op states it (int: static)."""
        t = buf.type
        if not isinstance(t, MemRefType):
            return None
        shape = t.get_shape()
        if shape[j] != DYNAMIC_INDEX:
            return shape[j]
        op = buf.owner
        if isinstance(op, memref.AllocOp):
            return op.dynamic_sizes[sum(1 for s in shape[:j] if s == DYNAMIC_INDEX)]
        if isinstance(op, memref.SubviewOp):
            src_t = op.source.type
            if not isinstance(src_t, MemRefType) or len(src_t.get_shape()) != len(shape):
                return None  # rank-reducing: dimensions do not line up
            static = op.static_sizes.get_values()
            if static[j] != DYNAMIC_INDEX:
                return static[j]
            return op.sizes[sum(1 for s in static[:j] if s == DYNAMIC_INDEX)]
        return None

    def _same_size(self, a: SSAValue | int | None, buf: SSAValue, j: int) -> bool:
        """Whether ``a`` is size ``j`` of ``buf``."""
        if a is None:
            return False
        b = self._size_of(buf, j)
        if isinstance(a, SSAValue) and _const_int(a) is not None:
            a = _const_int(a)
        if isinstance(a, int) or isinstance(b, int):
            return a == b
        if a is b:
            return True
        d = a.owner
        return (isinstance(d, memref.DimOp) and d.source is buf
                and _const_int(d.index) == j)

    # -- rewrites ----------------------------------------------------------------
    def _replace(self, op: Operation, value: SSAValue) -> None:
        op.results[0].replace_all_uses_with(value)
        Rewriter.erase_op(op)
        self.changed = True

    def _constant(self, op: Operation, value: int) -> None:
        c = arith.ConstantOp(IntegerAttr(value, op.results[0].type))
        Rewriter.insert_op(c, InsertPoint.before(op))
        self._replace(op, c.result)

    def _fold(self, op: Operation) -> None:
        if isinstance(op, memref.DimOp):
            j = _const_int(op.index)
            size = None if j is None else self._size_of(op.source, j)
            if isinstance(size, SSAValue):
                self._replace(op, size)
            elif isinstance(size, int):
                self._constant(op, size)
        elif isinstance(op, arith.CmpiOp):
            pred = op.predicate.value.data
            lhs, rhs = _const_int(op.lhs), _const_int(op.rhs)
            if op.lhs is op.rhs:
                self._constant(op, int(pred in _TRUE_ON_EQUAL))
            elif pred in (0, 1) and lhs is not None and rhs is not None:
                self._constant(op, int((lhs == rhs) == (pred == 0)))
            elif pred in (0, 1) and ((rhs == 1 and self._never_one(op.lhs))
                                     or (lhs == 1 and self._never_one(op.rhs))):
                self._constant(op, int(pred == 1))
        elif isinstance(op, arith.SelectOp):
            c = _const_int(op.cond)
            if c is not None:
                self._replace(op, op.lhs if c else op.rhs)
            elif op.lhs is op.rhs:
                self._replace(op, op.lhs)
        elif isinstance(op, (arith.AndIOp, arith.OrIOp)) and _is_i1(op.result):
            absorbing = 0 if isinstance(op, arith.AndIOp) else 1
            for a, b in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
                c = _const_int(a)
                if c is None:
                    continue
                c &= 1
                if c == absorbing:
                    self._replace(op, a)
                else:
                    self._replace(op, b)
                return
        elif isinstance(op, CheckOp):
            if _const_int(op.cond) in (1, -1):
                Rewriter.erase_op(op)
                self.changed = True
        elif isinstance(op, memref.SubviewOp):
            self._fold_identity_view(op)

    def _unit_stride(self, op: memref.SubviewOp, j: int, size: SSAValue | int) -> bool:
        static = op.static_strides.get_values()
        if static[j] != DYNAMIC_INDEX:
            return static[j] == 1
        s = op.strides[sum(1 for v in static[:j] if v == DYNAMIC_INDEX)]
        if _const_int(s) == 1:
            return True
        # numpy's broadcast step select(size == 1, 0, 1): the size-1 case reads one element
        sel = s.owner
        if not (isinstance(sel, arith.SelectOp) and _const_int(sel.rhs) == 1
                and _const_int(sel.lhs) == 0):
            return False
        cmp = sel.cond.owner
        return (isinstance(cmp, arith.CmpiOp) and cmp.predicate.value.data == 0
                and _const_int(cmp.rhs) == 1
                and (cmp.lhs is size or self._same_size(cmp.lhs, op.result, j)
                     or self._same_size(cmp.lhs, op.source, j)))

    def _fold_identity_view(self, op: memref.SubviewOp) -> None:
        src_t, res_t = op.source.type, op.result.type
        if not isinstance(src_t, MemRefType) or not isinstance(res_t, MemRefType):
            return
        rank = len(src_t.get_shape())
        if len(res_t.get_shape()) != rank or src_t.element_type != res_t.element_type:
            return
        if any(v != 0 and v != DYNAMIC_INDEX for v in op.static_offsets.get_values()):
            return
        if any(_const_int(v) != 0 for v in op.offsets):
            return
        for j in range(rank):
            size = self._size_of(op.result, j)
            if size is None or not self._same_size(size, op.source, j):
                return
            if not self._unit_stride(op, j, size):
                return
        uses = [u for u in list(op.result.uses) if isinstance(u.operation, _VIEW_USERS)]
        for u in uses:
            u.operation.operands[u.index] = op.source
            self.changed = True

    # -- driver ------------------------------------------------------------------
    def _cse(self, region: Region, seen: dict) -> None:
        for block in region.blocks:
            scope = dict(seen)
            for op in list(block.ops):
                if isinstance(op, _CSE_OPS) and len(op.results) == 1:
                    key = (op.name, tuple(op.operands), tuple(op.result_types),
                           tuple(sorted((k, str(v)) for k, v in op.properties.items())),
                           tuple(sorted((k, str(v)) for k, v in op.attributes.items())))
                    prev = scope.get(key)
                    if prev is not None:
                        self._replace(op, prev)
                        continue
                    scope[key] = op.results[0]
                for r in op.regions:
                    self._cse(r, scope)

    def _ops(self) -> Iterator[Operation]:
        for fn in self.module.ops:
            if isinstance(fn, func.FuncOp):
                yield from list(fn.walk())

    def run(self) -> None:
        for _ in range(_MAX_ROUNDS):
            self.changed = False
            for fn in self.module.ops:
                if isinstance(fn, func.FuncOp):
                    self._cse(fn.body, {})
            for op in self._ops():
                if op.parent is None:
                    continue  # erased by an earlier fold this round
                self._fold(op)
            for op in self._ops():  # views and sizes nothing reads any more
                if isinstance(op, (memref.SubviewOp, *_CSE_OPS)) and op.parent is not None \
                        and all(not r.uses for r in op.results):
                    Rewriter.erase_op(op)
            if not self.changed:
                return


@dataclass(frozen=True)
class ResolveShapedTypeResultDimsPass(ModulePass):
    """Resolve ``memref.dim`` of op results to their sizes and fold the size checks,
    broadcast steps and identity views that become trivial (before fusion)."""

    name = "resolve-shaped-type-result-dims"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        _Folder(op).run()


__all__ = ["ResolveShapedTypeResultDimsPass"]
