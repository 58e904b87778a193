"""``outline-parallel-loops-cpu``: the body of every outermost race-free ``scf.parallel``
becomes a function of a chunk of its first dimension, so that the CPU runs the chunks on
a worker pool (``runtime/thread_pool.py``).

For a loop in ``@f`` (the ``k``-th outermost one of ``@f``)::

    scf.parallel (%i, %j) = (%lb0, %lb1) to (%ub0, %ub1) step (%s0, %s1) { body }

the pass emits, in place of the loop::

    %n0 = max(0, ceildiv(ub0 - lb0, s0))            // trip count of each dimension
    %work = n0 * n1 * <ops of the body>     // nested loops: ops x their trip counts
    scf.if (%work >= MIN_PARALLEL_WORK) {
      func.call @__iz_pardispatch_f_k(%c0, %n0, %c0, <live-ins>)   // the pool runs chunks
    } else {
      func.call @__iz_par_f_k(%c0, %n0, %c0, <live-ins>)           // serially
    }

and two private functions::

    func.func private @__iz_par_f_k(%lo: index, %hi: index, %chunk: index, <live-ins>) {
      scf.for %t = %lo to %hi step 1 {
        %i = lb0 + t * s0
        scf.parallel (%j) = (%lb1) to (%ub1) step (%s1) { body }   // (1-D: body alone)
      }
    }
    func.func private @__iz_pardispatch_f_k(%lo, %hi, %chunk, <live-ins>) -> index {
      func.call @__iz_par_f_k(%lo, %hi, %c0, <live-ins>)
      func.return %c1            // chunks run
    }

The live-ins are the values defined outside the loop and used inside it (bounds of the
inner dimensions, ``lb0`` and ``s0`` included), in the order of first use; an
``arith.constant`` is cloned into the function instead, as the GPU outlining does.
``convert-parallel-dispatch-to-llvm`` later replaces the body of ``@__iz_pardispatch_…``
(by then an ``llvm.func``, with the check status argument when the body has checks) by
a call of the pool's ``__iz_parallel_for``.  Only the first dimension is split into
chunks; the others stay an ``scf.parallel`` that ``convert-parallel-to-for`` nests.

**Reductions** (``scf.reduce`` with operands whose reduce regions each combine with one
op that has an identity: ``addf``, ``mulf``, ``maximumf``, ``minimumf``, the integer
ones): the chunk function also takes its chunk index ``%chunk`` and one
``memref<MAX_CHUNKS x T>`` of partials per reduction; it reduces its range from the
identity (the inner dimensions' ``scf.parallel`` from the identity too, its results
combined into the chunk's) and stores the result at ``[%chunk]``.  The wrapper returns how many chunks ran
(one, until lowered); the caller combines the partials in chunk order starting from the
loop's init values, with the reduce region's op.  The serial path keeps the original
loop, so below the threshold its sum is bit-identical to the serial code.

A loop stays as it is (serial) when running its iterations at once could race or could
not be outlined: other reductions, ``memref.atomic_rmw`` (the reverse of a parallel loop
whose iterations accumulate into a shared shadow), calls (a host callback or a function
with side effects) and ``enzyme`` cache ops.

The CPU target runs this pass first. It reads ``isozyme.config(threads=N)`` when it runs
(the setting is part of every compilation, like ``boundscheck``, and changing it empties
the compile cache): with ``N == 1`` it leaves the module unchanged, so ``threads=1``
compiles exactly the serial code.
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, memref, scf
from xdsl.dialects.builtin import (
    AnyFloat,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.analysis.reductions import combining_kind
from isozyme.config import threads as configured_threads

#: Prefix of the outlined body functions, ``@__iz_par_<f>_<k>``.
BODY_PREFIX = "__iz_par_"
#: Prefix of the dispatch wrappers, ``@__iz_pardispatch_<f>_<k>``.
DISPATCH_PREFIX = "__iz_pardispatch_"
#: Work (trip count x ops of the body) from which a loop goes to the pool: a dispatch
#: costs tens of microseconds (thread wake-ups); this is ~100-200 us of serial work.
MIN_PARALLEL_WORK = 200_000
#: The most chunks a loop is split into (the size of a reduction's partials buffer).
MAX_CHUNKS = 64


def _serial_only(op: Operation) -> bool:
    """Whether ``op`` keeps its enclosing parallel loop serial (module docstring)."""
    return (
        isinstance(op, memref.AtomicRMWOp | func.CallOp)
        or op.name.startswith("enzyme.")
    )


def parallel_safe(par: scf.ParallelOp) -> bool:
    """Whether the iterations of ``par`` may run on several threads at once."""
    if not par.lowerBound or (par.initVals and not _reductions_supported(par)):
        return False
    return not any(_serial_only(o) for o in par.body.walk())


def _inside(root: Operation, v: SSAValue) -> bool:
    owner = v.owner
    op = owner.parent_op() if isinstance(owner, Block) else owner
    return op is not None and root.is_ancestor(op)


def _live_ins(par: scf.ParallelOp) -> list[SSAValue]:
    """Values defined outside ``par`` that its body and inner bounds use, by first use
    (the first dimension's ``lb`` and ``step`` first: the chunk function needs them)."""
    seen: dict[SSAValue, None] = {par.lowerBound[0]: None, par.step[0]: None}
    for dim in range(1, len(par.lowerBound)):
        for v in (par.lowerBound[dim], par.upperBound[dim], par.step[dim]):
            seen.setdefault(v, None)
    for o in par.body.walk():
        for v in o.operands:
            if not _inside(par, v):
                seen.setdefault(v, None)
    return list(seen)


def _trip_count(b: list[Operation], lb: SSAValue, ub: SSAValue, step: SSAValue,
                zero: SSAValue, one: SSAValue) -> SSAValue:
    """``max(0, ceildiv(ub - lb, step))`` (steps of ``scf.parallel`` are positive)."""
    span = arith.SubiOp(ub, lb)
    bump = arith.SubiOp(step, one)
    top = arith.AddiOp(span, bump)
    div = arith.DivSIOp(top, step)
    count = arith.MaxSIOp(div, zero)
    b += [span, bump, top, div, count]
    return count.result


#: Trip count assumed for a nested loop whose bounds are computed inside the body.
NESTED_TRIP_GUESS = 16


def _work(region_ops: list[Operation], pre: list[Operation], par: scf.ParallelOp,
          zero: SSAValue, one: SSAValue) -> SSAValue:
    """Ops the given ops run per iteration: nested loops count their body times their
    trip count, computed before ``par`` when their bounds are defined outside it
    (``NESTED_TRIP_GUESS`` otherwise)."""
    flat = 0
    terms: list[SSAValue] = []
    for o in region_ops:
        flat += 1
        if isinstance(o, scf.ForOp | scf.ParallelOp):
            bounds = (
                [(o.lb, o.ub, o.step)] if isinstance(o, scf.ForOp)
                else list(zip(o.lowerBound, o.upperBound, o.step, strict=True))
            )
            inner = _work(list(o.body.block.ops), pre, par, zero, one)
            for lb, ub, st in bounds:
                if any(_inside(par, v) for v in (lb, ub, st)):
                    trip = _const(pre, NESTED_TRIP_GUESS)
                else:
                    trip = _trip_count(pre, lb, ub, st, zero, one)
                mul = arith.MuliOp(inner, trip)
                pre.append(mul)
                inner = mul.result
            terms.append(inner)
        else:
            flat += sum(1 for r in o.regions for _ in r.walk())
    total = _const(pre, flat)
    for t in terms:
        add = arith.AddiOp(total, t)
        pre.append(add)
        total = add.result
    return total


def _const(b: list[Operation], value: int) -> SSAValue:
    c = arith.ConstantOp(IntegerAttr(value, IndexType()))
    b.append(c)
    return c.result


def _combine(block: Block, region: Region, acc: SSAValue, value: SSAValue) -> SSAValue:
    """Append to ``block`` a copy of the reduce ``region``'s body on ``(acc, value)``;
    return the combined value."""
    rblock = region.block
    mapping: dict[SSAValue, SSAValue] = {rblock.args[0]: acc, rblock.args[1]: value}
    for o in rblock.ops:
        if isinstance(o, scf.ReduceReturnOp):
            return mapping.get(o.result, o.result)
        block.add_op(o.clone(value_mapper=mapping))
    raise AssertionError("reduce region without scf.reduce.return")


def _identity(kind: str, t: Attribute) -> arith.ConstantOp | None:
    """The identity of reduction ``kind`` on ``t``, or None (then the loop stays serial).
    ``-0.0`` for ``addf`` (``x + -0.0`` is ``x`` for every ``x``)."""
    if isinstance(t, IntegerType):
        w = t.width.data
        ints = {"addi": 0, "muli": 1, "ori": 0, "xori": 0, "andi": -1, "maxu": 0,
                "minu": -1, "maxs": -(1 << (w - 1)), "mins": (1 << (w - 1)) - 1}
        return arith.ConstantOp(IntegerAttr(ints[kind], t)) if kind in ints else None
    floats = {"addf": -0.0, "mulf": 1.0, "maximumf": float("-inf"),
              "minimumf": float("inf")}
    if isinstance(t, AnyFloat) and kind in floats:
        return arith.ConstantOp(FloatAttr(floats[kind], t))
    return None


def _reductions_supported(par: scf.ParallelOp) -> bool:
    """Whether the reductions of ``par`` each combine with one op that has an identity."""
    reduce_op = par.body.block.last_op
    assert isinstance(reduce_op, scf.ReduceOp)
    for region, v in zip(reduce_op.reductions, par.initVals, strict=True):
        kind = combining_kind(region)
        if kind is None or _identity(kind, v.type) is None:
            return False
    return True


def _outline(par: scf.ParallelOp, fn_name: str, k: int, module: builtin.ModuleOp) -> None:
    """Replace ``par`` (inside ``@fn_name``) by the dispatch (module docstring)."""
    # -- the call site (built first: the work estimate reads the body in place)
    pre: list[Operation] = []
    zero = _const(pre, 0)
    one = _const(pre, 1)
    counts = [
        _trip_count(pre, lb, ub, st, zero, one)
        for lb, ub, st in zip(par.lowerBound, par.upperBound, par.step, strict=True)
    ]
    work = _work(list(par.body.block.ops), pre, par, zero, one)
    for c in counts:
        mul = arith.MuliOp(work, c)
        pre.append(mul)
        work = mul.result
    threshold = _const(pre, MIN_PARALLEL_WORK)
    big = arith.CmpiOp(work, threshold, "sge")
    pre.append(big)
    Rewriter.insert_op(pre, InsertPoint.before(par))

    original = par
    inits = list(par.initVals)
    if inits:
        # The serial path keeps the loop itself (its sum in the serial order); the
        # chunk function gets a copy.
        par = par.clone()
    live = _live_ins(par)
    passed = [v for v in live if not isinstance(v.owner, arith.ConstantOp)]
    body_name = f"{BODY_PREFIX}{fn_name}_{k}"
    dispatch_name = f"{DISPATCH_PREFIX}{fn_name}_{k}"
    index = IndexType()
    partial_types = [MemRefType(v.type, [MAX_CHUNKS]) for v in inits]
    arg_types = [index, index, index, *partial_types, *(v.type for v in passed)]

    # -- the chunk function: constants cloned, live-ins as arguments, a loop of chunks
    entry = Block(arg_types=arg_types)
    lo, hi, chunk = entry.args[:3]
    partials = entry.args[3:3 + len(inits)]
    args = entry.args[3 + len(inits):]
    mapping: dict[SSAValue, SSAValue] = dict(zip(passed, args, strict=True))
    for v in live:
        if isinstance(v.owner, arith.ConstantOp):
            clone = v.owner.clone()
            entry.add_op(clone)
            mapping[v] = clone.result
    one_in = arith.ConstantOp(IntegerAttr(1, index))
    entry.add_op(one_in)
    body = par.body.block
    reduce_op = body.last_op
    assert isinstance(reduce_op, scf.ReduceOp)
    identities = []
    for region, v in zip(reduce_op.reductions, inits, strict=True):
        ident = _identity(combining_kind(region) or "", v.type)
        assert ident is not None
        entry.add_op(ident)
        identities.append(ident.result)
    loop_block = Block(arg_types=[index, *(v.type for v in inits)])
    t, *accs = loop_block.args
    scaled = arith.MuliOp(t, mapping[par.step[0]])
    iv0 = arith.AddiOp(mapping[par.lowerBound[0]], scaled)
    loop_block.add_ops([scaled, iv0])
    # Uses inside the loop of the live-ins now read the function's arguments.
    for v in live:
        for use in list(v.uses):
            if par.is_ancestor(use.operation) and use.operation is not par:
                use.operation.operands[use.index] = mapping[v]
    body.args[0].replace_all_uses_with(iv0.result)
    body.erase_arg(body.args[0])
    if len(par.lowerBound) == 1:
        for o in list(body.ops):
            if o is reduce_op:
                break
            o.detach()
            loop_block.add_op(o)
        combined = [
            _combine(loop_block, region, acc, value)
            for region, acc, value in zip(reduce_op.reductions, accs, reduce_op.args,
                                          strict=True)
        ]
    else:
        # The other dimensions stay one parallel loop; its reductions start from the
        # identities and its results combine into the chunk's accumulators.
        par.body.detach_block(body)
        inner = scf.ParallelOp(
            [mapping[v] for v in par.lowerBound[1:]],
            [mapping[v] for v in par.upperBound[1:]],
            [mapping[v] for v in par.step[1:]],
            Region(body),
            identities,
        )
        loop_block.add_op(inner)
        combined = [
            _combine(loop_block, region, acc, value)
            for region, acc, value in zip(reduce_op.reductions, accs, inner.results,
                                          strict=True)
        ]
    loop_block.add_op(scf.YieldOp(*combined))
    chunk_loop = scf.ForOp(lo, hi, one_in.result, identities, loop_block)
    entry.add_op(chunk_loop)
    for result, buf in zip(chunk_loop.results, partials, strict=True):
        entry.add_op(memref.StoreOp.get(result, buf, [chunk]))
    entry.add_op(func.ReturnOp())
    body_fn = func.FuncOp(body_name, (arg_types, []), Region(entry), visibility="private")
    if inits:
        par.erase()  # the copy's ops now live in the chunk function

    # -- the wrapper: one chunk (chunk 0) here; the pool's chunk count once lowered
    wrapper_entry = Block(arg_types=arg_types)
    w_lo = wrapper_entry.args[0]
    w_zero = arith.ConstantOp(IntegerAttr(0, index))
    w_one = arith.ConstantOp(IntegerAttr(1, index))
    wrapper_entry.add_ops([
        w_zero, w_one,
        func.CallOp(body_name, [w_lo, wrapper_entry.args[1], w_zero.result,
                                *wrapper_entry.args[3:]], []),
        func.ReturnOp(w_one.result),
    ])
    wrapper = func.FuncOp(
        dispatch_name, (arg_types, [index]), Region(wrapper_entry), visibility="private"
    )
    module.body.block.add_ops([body_fn, wrapper])

    if not inits:
        call_args = [zero, counts[0], zero, *passed]
        dispatch = scf.IfOp(
            big,
            [],
            [func.CallOp(dispatch_name, call_args, [index]), scf.YieldOp()],
            [func.CallOp(body_name, call_args, []), scf.YieldOp()],
        )
        Rewriter.insert_op(dispatch, InsertPoint.before(original))
        Rewriter.erase_op(original)
        return

    # -- reductions: partials per chunk, combined in chunk order from the init values
    then = Block()
    bufs = [memref.AllocOp.get(v.type, shape=[MAX_CHUNKS]) for v in inits]
    then.add_ops(bufs)
    n_chunks = func.CallOp(dispatch_name, [zero, counts[0], zero, *bufs, *passed], [index])
    then.add_op(n_chunks)
    fold_block = Block(arg_types=[index, *(v.type for v in inits)])
    kk, *facc = fold_block.args
    folded = []
    for region, acc, buf in zip(reduce_op.reductions, facc, bufs, strict=True):
        load = memref.LoadOp.get(buf, [kk])
        fold_block.add_op(load)
        folded.append(_combine(fold_block, region, acc, load.res))
    fold_block.add_op(scf.YieldOp(*folded))
    fold = scf.ForOp(zero, n_chunks.res[0], one, inits, fold_block)
    then.add_op(fold)
    then.add_ops([memref.DeallocOp.get(b) for b in bufs])
    then.add_op(scf.YieldOp(*fold.results))
    dispatch = scf.IfOp(big, [v.type for v in inits], Region(then), Region(Block()))
    Rewriter.insert_op(dispatch, InsertPoint.before(original))
    for old, new in zip(original.results, dispatch.results, strict=True):
        old.replace_all_uses_with(new)
    original.detach()
    else_block = dispatch.false_region.block
    else_block.add_ops([original, scf.YieldOp(*original.results)])


class OutlineParallelLoopsCpuPass(ModulePass):
    """Outline each outermost race-free ``scf.parallel`` into a chunk function and a
    dispatch wrapper, for the CPU's worker pool (see the module docstring)."""

    name = "outline-parallel-loops-cpu"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite every function of ``op`` in place (nothing with ``threads=1``)."""
        if configured_threads() <= 1:
            return
        for fn in [f for f in op.ops if isinstance(f, func.FuncOp)]:
            if fn.sym_name.data.startswith((BODY_PREFIX, DISPATCH_PREFIX)):
                continue
            outer = [
                p for p in fn.walk()
                if isinstance(p, scf.ParallelOp) and not _nested_in_parallel(p, fn)
            ]
            k = 0
            for par in outer:
                if parallel_safe(par):
                    _outline(par, fn.sym_name.data, k, op)
                    k += 1


def _nested_in_parallel(op: Operation, stop: Operation) -> bool:
    cur = op.parent_op()
    while cur is not None and cur is not stop:
        if isinstance(cur, scf.ParallelOp):
            return True
        cur = cur.parent_op()
    return False
