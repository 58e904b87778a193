"""``wrap-serial-loops``: sequential host loops that touch memory become one-thread
kernels.

On the ``cuda`` target the host program reaches device memory one element (one
``cuMemcpy``, ~10 µs) at a time. The loops ``parallelize-host-loops`` cannot make
parallel stay sequential on the host: ``np.max``/``np.min``/``np.prod`` of a whole
array (an ``scf.for`` over a rank-0 accumulator) and their adjoints, a user's ``for i
in range(n): x[i] = ...`` over arguments, a scan ``y[i] = y[i - 1] + x[i]``. Run on the
host, each costs a copy per element access. This pass moves each such loop, unchanged,
into the body of a one-iteration ``scf.parallel``::

    %r = scf.for ... iter_args(...) { body }           // host: n element copies
    use(%r)

becomes::

    %buf = memref.alloc() : memref<1xT>
    scf.parallel (%k) = (0) to (1) step (1) {
      %r = scf.for ... iter_args(...) { body }         // one thread runs it all
      memref.store %r, %buf[0]
      scf.reduce
    }
    %r' = memref.load %buf[0]                          // one copy
    memref.dealloc %buf
    use(%r')

so that ``gpu-outline-parallel-loops`` makes it a kernel of a single working thread
(one block of 256 threads of which the first runs). Results of ``index`` or ``i1`` type
go through an ``i64`` buffer; results nothing uses get no buffer.

A loop is wrapped when it is an outermost ``scf.for``/``scf.while`` of a host function
(not inside an ``scf.parallel``: that is a kernel already) and

* it loads, stores or updates memory (``memref.load``/``store``/``atomic_rmw``): a
  loop of scalars alone costs nothing on the host;
* every op in it is one the CUDA printer prints (``arith``, ``math``, memref accesses
  and views, ``scf.for``/``if``/``while``) or an ``isz.check`` (the outlining reports it
  from the kernel and raises it on the host after the launch, the first failing
  iteration's, as on the CPU), and every value's type is a kernel type;
* it holds no ``scf.parallel`` (those are kernels of their own: the loop stays on the
  host, its inner sequential loops are considered in turn), no ``func.call`` (a
  kernel calls no host function), no ``enzyme`` cache op, no ``memref.copy``, and no
  ``memref.alloc``/``alloca``/``dealloc`` (a kernel has no allocator).

In a wrapped ``scf.for``, a rank-0 accumulator that the function allocated and that is
only loaded and stored (a whole-array max's ``memref<f64>``), directly in the loop's
body, is carried in ``iter_args`` (loaded once before the loop, stored once after it):
the kernel keeps it in a register instead of waiting, every iteration, for its own
store to reach memory (nothing tells the CUDA compiler that it aliases none of the
loop's arrays).

A loop that fails these is left on the host and the loops nested in it are considered
instead (a time loop around kernels keeps its loop; a serial loop in its body is
wrapped). Ops around the loop stay on the host: a rank-0 accumulator's init store
before a reduction loop and its load after it are one copy each.

The GPU targets run this pass after ``parallelize-host-loops`` and before
``gpu-outline-parallel-loops``; the CPU target never runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import IndexType, IntegerAttr, IntegerType, MemRefType, ModuleOp, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

# The op table of the CUDA printer is the one source of what a kernel may hold.
from isozyme.compiler.gpu.cuda_printer import c_type, supports
from isozyme.dialects.check import CheckOp
from isozyme.errors import UnsupportedError

#: Ops that touch memory one element at a time.
_ACCESSES = (memref.LoadOp, memref.StoreOp, memref.AtomicRMWOp)

#: Ops a one-thread kernel could print but that must stay on the host here.
_HOST_ONLY = (memref.AllocOp, memref.AllocaOp, memref.DeallocOp, scf.ParallelOp)

#: Terminators of the loops' regions (the printer prints them as part of the loop).
_TERMINATORS = (scf.YieldOp, scf.ConditionOp)


def _kernel_type(t: Attribute) -> bool:
    try:
        c_type(t)
    except UnsupportedError:
        return False
    return True


def serial_kernel_candidate(loop: scf.ForOp | scf.WhileOp) -> bool:
    """Whether ``loop`` may run, as it is, as the body of a one-thread kernel (see the
    module docstring): it touches memory and holds only what a kernel prints."""
    touches = False
    for op in loop.walk():
        if isinstance(op, _HOST_ONLY):
            return False
        if isinstance(op, _ACCESSES):
            touches = True
        if not (supports(op) or isinstance(op, (CheckOp, *_TERMINATORS))):
            return False
        values = [*op.operands, *op.results,
                  *(a for r in op.regions for b in r.blocks for a in b.args)]
        if not all(_kernel_type(v.type) for v in values):
            return False
    return touches


def _buffer_type(t: Attribute) -> Attribute:
    """The element type of a result's buffer (``index`` and ``i1`` through ``i64``)."""
    if isinstance(t, IndexType) or (isinstance(t, IntegerType) and t.width.data == 1):
        return i64
    return t


def wrap_in_one_thread(loop: scf.ForOp | scf.WhileOp) -> scf.ParallelOp:
    """Move ``loop`` into a one-iteration ``scf.parallel``; its used results go through
    ``memref<1xT>`` buffers stored in the wrapper and loaded after it."""
    before = Builder(InsertPoint.before(loop))
    zero = before.insert(arith.ConstantOp(IntegerAttr(0, IndexType()))).result
    one = before.insert(arith.ConstantOp(IntegerAttr(1, IndexType()))).result
    used = [r for r in loop.results if r.uses]
    buffers = [before.insert(memref.AllocOp([], [], MemRefType(_buffer_type(r.type), [1])))
               .memref for r in used]
    after = Builder(InsertPoint.after(loop))
    for res, buf in zip(used, buffers):
        value = after.insert(memref.LoadOp.get(buf, [zero])).res
        if value.type != res.type:
            cast = arith.IndexCastOp if isinstance(res.type, IndexType) else arith.TruncIOp
            value = after.insert(cast(value, res.type)).results[0]
        after.insert(memref.DeallocOp.get(buf))
        res.replace_all_uses_with(value)
    # Now nothing outside uses the loop: move it into the wrapper's body.
    body = Block(arg_types=[IndexType()])
    par = scf.ParallelOp([zero], [one], [one], Region(body))
    before.insert(par)
    loop.detach()
    body.add_op(loop)
    inside = Builder(InsertPoint.at_end(body))
    for res, buf in zip(used, buffers):
        value: SSAValue = res
        if isinstance(res.type, IndexType):
            value = inside.insert(arith.IndexCastOp(res, i64)).result
        elif value.type != _buffer_type(res.type):
            value = inside.insert(arith.ExtUIOp(res, i64)).result
        c0 = inside.insert(arith.ConstantOp(IntegerAttr(0, IndexType()))).result
        inside.insert(memref.StoreOp.get(value, buf, [c0]))
    inside.insert(scf.ReduceOp())
    if isinstance(loop, scf.ForOp):
        promote_accumulators(loop)
    return par


def _promotable(buf: SSAValue, loop: scf.ForOp) -> bool:
    """Whether rank-0 ``buf`` is fresh memory read and written only by loads and stores
    (and freed), those in ``loop`` all directly in its body: nothing else can alias
    it, every iteration's accesses run in body order."""
    if not isinstance(buf.owner, memref.AllocOp) or buf.type.get_shape():  # type: ignore[attr-defined]
        return False
    for use in buf.uses:
        op = use.operation
        if isinstance(op, memref.DeallocOp) or (
                isinstance(op, (memref.LoadOp, memref.StoreOp)) and op.memref is buf):
            if loop.is_ancestor(op) and op.parent_block() is not loop.body.block:
                return False
            continue
        return False
    return True


def promote_accumulators(loop: scf.ForOp) -> scf.ForOp:
    """Carry the rank-0 accumulators ``loop`` loads and stores (a whole-array max's
    ``memref<f64>``) in ``iter_args`` instead of memory: one load before the loop, one
    store after it. In a one-thread kernel each access of the accumulator would
    otherwise wait for the previous iteration's store (no compiler can tell that the
    accumulator aliases none of the loop's arrays). Returns the loop (a new one when
    something was promoted)."""
    bufs: dict[SSAValue, None] = {}
    for op in loop.body.block.ops:
        if isinstance(op, (memref.LoadOp, memref.StoreOp)) and _promotable(op.memref, loop):
            bufs[op.memref] = None
    if not bufs:
        return loop
    before = Builder(InsertPoint.before(loop))
    inits = [before.insert(memref.LoadOp.get(b, [])).res for b in bufs]
    body = loop.detach_region(loop.body)
    block = body.block
    current = {b: block.insert_arg(b.type.element_type, len(block.args))  # type: ignore[attr-defined]
               for b in bufs}
    for op in list(block.ops):
        if isinstance(op, memref.LoadOp) and op.memref in current:
            op.res.replace_all_uses_with(current[op.memref])
            Rewriter.erase_op(op)
        elif isinstance(op, memref.StoreOp) and op.memref in current:
            current[op.memref] = op.value
            Rewriter.erase_op(op)
    yield_op = block.last_op
    assert isinstance(yield_op, scf.YieldOp)
    Rewriter.replace_op(yield_op, scf.YieldOp(*yield_op.operands, *current.values()))
    new = scf.ForOp(loop.lb, loop.ub, loop.step, [*loop.iter_args, *inits], body)
    before.insert(new)
    n = len(loop.results)
    for old, res in zip(loop.results, new.results[:n]):
        old.replace_all_uses_with(res)
    Rewriter.erase_op(loop)
    after = Builder(InsertPoint.after(new))
    for b, res in zip(bufs, new.results[n:]):
        after.insert(memref.StoreOp.get(res, b, []))
    return new


def _wrap_in(region_holder: Operation) -> None:
    """Wrap the outermost candidate loops nested in ``region_holder``'s regions."""
    for region in region_holder.regions:
        for block in region.blocks:
            for op in list(block.ops):
                if isinstance(op, scf.ParallelOp):
                    continue  # a kernel already
                if isinstance(op, (scf.ForOp, scf.WhileOp)) and serial_kernel_candidate(op):
                    wrap_in_one_thread(op)
                    continue
                _wrap_in(op)


@dataclass(frozen=True)
class WrapSerialLoopsPass(ModulePass):
    """``wrap-serial-loops``: every outermost sequential host loop that touches memory
    and holds only what a kernel can run becomes the body of a one-iteration
    ``scf.parallel``, hence a one-thread kernel (see the module docstring)."""

    name = "wrap-serial-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        del ctx
        for f in op.body.block.ops:
            if isinstance(f, func.FuncOp):
                _wrap_in(f)
