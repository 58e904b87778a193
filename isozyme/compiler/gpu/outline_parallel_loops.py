"""``gpu-outline-parallel-loops``: every outermost ``scf.parallel`` becomes a GPU kernel.

The contract is ``gpu_abi.md``'s ``gpu`` stage (see ``docs/gpu.md``).  For a loop in the
host function ``@f``::

    scf.parallel (%i, %j) = (%lb0, %lb1) to (%ub0, %ub1) step (%s0, %s1) { body }

the host keeps the launch::

    %n0 = max(0, ceildiv(ub0 - lb0, s0))      // trip count of each dimension
    %total = n0 * n1
    %grid = ceildiv(total, 256)
    scf.if (total > 0) {
      gpu.launch_func @isozyme_kernels::@f_k0 blocks in (%grid, 1, 1)
          threads in (256, 1, 1) args(<captured values>, %total, <lbs, steps, counts>)
    }

and ``gpu.module @isozyme_kernels`` gets the kernel, one iteration per thread::

    gpu.func @f_k0(...) kernel {
      %id = block_id.x * block_dim.x + thread_id.x
      scf.if (%id < %total) {
        %j = lb1 + (id mod n1) * s1 ; %i = lb0 + (id div n1) * s0   // first iv slowest
        body
      }
      gpu.return
    }

A loop with reductions is a grid-stride loop instead, launched on
``min(ceildiv(total, 256), MAX_REDUCTION_BLOCKS)`` blocks, so that its atomics do not
grow with the trip count::

    gpu.func @f_k0(...) kernel {
      %id = block_id.x * block_dim.x + thread_id.x
      %part = scf.for %k = %id to %total step (grid_dim.x * block_dim.x)
                iter_args(%p = <identity>) {
        ivs of %k ; body
        scf.yield (%p <combine> <reduced value>)
      }
      memref.atomic_rmw <kind> %part, %buffer[0]   // every thread, after its loop
      gpu.return
    }

Kernel arguments, in this order: the values defined outside the loop and used inside
it, in the order of their first use in the body; then ``total``; then the lower bound
and step of each dimension and the trip count of every dimension but the first
(delinearization); then the reduction buffers and the status buffer (kernels with
checks).  A value that is an ``arith.constant`` is cloned into the kernel
instead of passed, as upstream's kernel outlining sinks constants.

Reductions (``scf.reduce``): the host allocates a ``memref<1xT>`` per reduction,
stores the loop's init value in it and passes it last; each thread carries its partial
reductions through its grid-stride loop, from the kinds' identities (a thread with no
iteration keeps them), combining each iteration's value with the reduce region's
single combining op; after the loop every thread combines its partial into the buffer
with a ``memref.atomic_rmw`` of that op's kind, marked ``isozyme.warp_aggregate`` (the
CUDA printer combines a warp's values first: one atomic per warp); after the launch
the host loads the result and deallocates the buffer.  ``index`` reductions carry
``index`` partials and go through an ``i64`` buffer.

Run-time checks (``isz.check``) in a loop body: the kernel gets a last argument, the
host function's status buffer (``memref<?xi64>``); each check reports its failure there
and ends the thread, and the host re-emits the kernel's checks after the launch
(``kernel_checks.py``).  A kernel with checks combines its reductions with one atomic
per thread (no warp shuffle: a thread that fails leaves early).

Refused inside a kernel (``UnsupportedError`` naming the op): calls (the callee is a
host function) and ``enzyme`` cache ops.  A module without ``scf.parallel`` is left
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import arith, builtin, func, gpu, memref, scf
from xdsl.dialects.builtin import (
    FloatAttr,
    FunctionType,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    SymbolRefAttr,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.gpu.kernel_checks import (
    KernelCheck,
    add_status_buffer,
    checks_in,
    recheck_after_launch,
    report_failures,
    status_width,
)
from isozyme.compiler.ad_rules import combining_op_names
from isozyme.compiler.analysis.reductions import combining_kind, describe
from isozyme.dialects.memref_ext import atomic_rmw
from isozyme.errors import UnsupportedError
from isozyme.host_calls import HOST_CALL_ATTR

#: Threads per block of every launch (1-D blocks).
BLOCK_SIZE = 256

#: Most blocks of a launch whose kernel has reductions.  Such a kernel is a grid-stride
#: loop ending in one atomic per warp on one address per reduction, so its atomics are
#: bounded by ``MAX_REDUCTION_BLOCKS * BLOCK_SIZE / 32`` (8192), whatever the trip
#: count; one element per thread would issue ``total / 32`` of them, serialised in L2
#: (3e6 for 1e8 elements: milliseconds against the 0.2 ms of streaming the data).
#: 1024 blocks of 256 threads fill an H100/H200 (132 SMs x 2048 resident threads is
#: about 1056 such blocks), so fewer blocks would leave SMs idle and more only add
#: atomics.
MAX_REDUCTION_BLOCKS = 1024

#: Name of the ``gpu.module`` that holds the kernels.
KERNEL_MODULE = "isozyme_kernels"

#: The unit attribute upstream MLIR requires on a module holding a ``gpu.module``.
CONTAINER_ATTR = "gpu.container_module"

#: Unit attribute of a reduction's ``memref.atomic_rmw`` that every thread of the block
#: reaches (with the identity when it has no iteration) and whose result is unused: the
#: CUDA printer may combine the values of a warp first and issue one atomic per warp.
WARP_AGGREGATE_ATTR = "isozyme.warp_aggregate"

def _reduction_kind(region: Region) -> str:
    """The ``atomic_rmw`` kind of a reduce region whose body is one combining op of its
    two arguments followed by ``scf.reduce.return``."""
    kind = combining_kind(region)
    if kind is not None:
        return kind
    raise UnsupportedError(
        f"scf.reduce region ({describe(region)}) in a GPU kernel: only one combining op "
        f"of the two arguments is supported ({', '.join(combining_op_names())})"
    )


def _refuse_in_kernel(loop: scf.ParallelOp) -> None:
    """Raise for the ops a kernel body cannot hold."""
    for op in loop.body.walk():
        if isinstance(op, func.CallOp) and HOST_CALL_ATTR in op.attributes:
            name = op.attributes[HOST_CALL_ATTR].data  # type: ignore[attr-defined]
            raise UnsupportedError(
                f"a call of the Python function {name} inside a GPU kernel (scf.parallel "
                "body, isozyme.prange): a kernel cannot call Python; call it outside "
                "the prange loop, or compile for the cpu target"
            )
        if isinstance(op, func.CallOp):
            raise UnsupportedError(
                f"func.call @{op.callee.root_reference.data} inside a GPU kernel "
                "(scf.parallel body): calls are not outlined; inline the callee"
            )
        if op.name.startswith("enzyme."):
            raise UnsupportedError(
                f"{op.name} inside a GPU kernel (scf.parallel body): caches must be "
                "indexed buffers there"
            )


def _captured(loop: scf.ParallelOp) -> list[SSAValue]:
    """Values defined outside ``loop`` and used inside it, in order of first use."""
    seen: dict[SSAValue, None] = {}
    for op in loop.body.walk():
        for v in op.operands:
            if v not in seen and not _defined_inside(v, loop):
                seen[v] = None
    return list(seen)


def _defined_inside(v: SSAValue, loop: Operation) -> bool:
    owner = v.owner
    block = owner if isinstance(owner, Block) else owner.parent_block()
    while block is not None:
        parent = block.parent_op()
        if parent is loop:
            return True
        if parent is None:
            return False
        block = parent.parent_block()
    return False


def _is_constant(v: SSAValue) -> bool:
    return isinstance(v.owner, arith.ConstantOp)


class _Host:
    """Emits host-side index arithmetic before the loop."""

    def __init__(self, at: Operation) -> None:
        self.b = Builder(InsertPoint.before(at))

    def const(self, value: int) -> SSAValue:
        return self.b.insert(arith.ConstantOp(IntegerAttr(value, IndexType()))).result

    def op(self, op: Operation) -> SSAValue:
        return self.b.insert(op).results[0]


def _trip_counts(h: _Host, loop: scf.ParallelOp) -> list[SSAValue]:
    """``max(0, ceildiv(ub - lb, step))`` per dimension."""
    zero = h.const(0)
    counts = []
    for lb, ub, step in zip(loop.lowerBound, loop.upperBound, loop.step):
        span = h.op(arith.SubiOp(ub, lb))
        n = h.op(arith.CeilDivSIOp(span, step))
        counts.append(h.op(arith.MaxSIOp(n, zero)))
    return counts


class _Outliner:
    """Outlines the loops of one module into one ``gpu.module``."""

    def __init__(self, module: builtin.ModuleOp) -> None:
        self.module = module
        self.kernels: list[gpu.FuncOp] = []
        self.counter: dict[str, int] = {}

    def run(self) -> None:
        """Outline every outermost ``scf.parallel`` of every host function."""
        loops: list[tuple[str, scf.ParallelOp, SSAValue | None]] = []
        for f in self.module.body.block.ops:
            if not isinstance(f, func.FuncOp):
                continue
            found = [op for op in f.walk()
                     if isinstance(op, scf.ParallelOp) and not _nested_in_parallel(op)]
            for loop in found:
                _refuse_in_kernel(loop)
            # One status buffer per host function whose kernels hold checks.
            width = status_width(list(found))
            status = add_status_buffer(f, width) if width else None
            loops += [(f.sym_name.data, loop, status) for loop in found]
        for host_name, loop, status in loops:
            self.outline(host_name, loop, status)
        if not self.kernels:
            return
        gmod = gpu.ModuleOp(StringAttr(KERNEL_MODULE), Region(Block(self.kernels)))
        self.module.body.block.add_op(gmod)
        self.module.attributes[CONTAINER_ATTR] = UnitAttr()

    def kernel_name(self, host_name: str) -> str:
        n = self.counter.get(host_name, 0)
        self.counter[host_name] = n + 1
        return f"{host_name}_k{n}"

    def outline(self, host_name: str, loop: scf.ParallelOp,
                status: SSAValue | None) -> None:
        """Replace ``loop`` (in host function ``host_name``) by the launch of a new
        kernel; ``status`` is the function's check-status buffer, if it has one."""
        if not checks_in(loop):
            status = None
        reduce_op = loop.body.block.last_op
        assert isinstance(reduce_op, scf.ReduceOp)
        kinds = [_reduction_kind(r) for r in reduce_op.reductions]
        rank = len(loop.lowerBound)
        h = _Host(loop)
        counts = _trip_counts(h, loop)
        total = counts[0]
        for n in counts[1:]:
            total = h.op(arith.MuliOp(total, n))
        block = h.const(BLOCK_SIZE)
        grid = h.op(arith.CeilDivSIOp(total, block))
        if kinds:  # grid-stride loops: enough blocks to fill the GPU, no more
            grid = h.op(arith.MinSIOp(grid, h.const(MAX_REDUCTION_BLOCKS)))
        one = h.const(1)

        # Reduction buffers: memref<1xT> holding the init value (index via i64).
        buffers: list[SSAValue] = []
        zero = h.const(0)
        for init in loop.initVals:
            t = i64 if isinstance(init.type, IndexType) else init.type
            if t == IntegerType(1):
                raise UnsupportedError("scf.reduce of i1 values in a GPU kernel")
            buf = h.op(memref.AllocOp([], [], MemRefType(t, [1])))
            value = init
            if t != init.type:
                value = h.op(arith.IndexCastOp(init, i64))
            h.b.insert(memref.StoreOp.get(value, buf, [zero]))
            buffers.append(buf)

        # Kernel operands: captured values, total, then lbs/steps/counts.
        loop_values = [total]
        for d in range(rank):
            loop_values += [loop.lowerBound[d], loop.step[d]]
        loop_values += counts[1:]
        operands: dict[SSAValue, None] = {}
        sunk: dict[SSAValue, None] = {}
        for v in [*_captured(loop), *loop_values]:
            (sunk if _is_constant(v) else operands)[v] = None
        args = [*operands, *buffers]
        if status is not None:
            args.append(status)

        kernel = self.build_kernel(self.kernel_name(host_name), loop, args, list(sunk),
                                   total, counts, kinds, buffers, status is not None)
        checks: list[KernelCheck] = []
        if status is not None:
            checks = report_failures(kernel.body.block, kernel.body.block.args[-1])
        self.kernels.append(kernel)

        # The launch, skipped when there is no iteration.
        nonempty = h.op(arith.CmpiOp(total, zero, "sgt"))
        launch = gpu.LaunchFuncOp(
            SymbolRefAttr(KERNEL_MODULE, [StringAttr(kernel.sym_name.data)]),
            [grid, one, one], [block, one, one], kernelOperands=args,
        )
        launched = Block([launch])
        h.b.insert(scf.IfOp(nonempty, [], [launched]))
        # A kernel's failed check stops the host program right after the launch.
        if status is not None:
            recheck_after_launch(Builder(InsertPoint.at_end(launched)), status, checks,
                                 buffers)
        launched.add_op(scf.YieldOp())
        results: list[SSAValue] = []
        for res, buf in zip(loop.res, buffers):
            value = h.op(memref.LoadOp.get(buf, [zero]))
            if value.type != res.type:
                value = h.op(arith.IndexCastOp(value, res.type))
            h.b.insert(memref.DeallocOp.get(buf))
            results.append(value)
        Rewriter.replace_op(loop, [], results)

    def build_kernel(self, name: str, loop: scf.ParallelOp, args: list[SSAValue],
                     sunk: list[SSAValue], total: SSAValue, counts: list[SSAValue],
                     kinds: list[str], buffers: list[SSAValue],
                     checked: bool) -> gpu.FuncOp:
        """The ``gpu.func`` running ``loop``'s iterations (``checked``: its last
        argument is the status buffer): one per thread, or, with reductions, a
        grid-stride loop per thread ending in one atomic per reduction."""
        entry = Block(arg_types=[a.type for a in args])
        mapping: dict[SSAValue, SSAValue] = dict(zip(args, entry.args))
        b = Builder(InsertPoint.at_end(entry))
        for v in sunk:  # constants are cloned, not passed
            mapping[v] = b.insert(v.owner.clone()).results[0]  # type: ignore[union-attr]

        def ins(op: Operation) -> SSAValue:
            return b.insert(op).results[0]

        x = gpu.DimensionAttr(gpu.DimensionEnum.X)
        bid = ins(gpu.BlockIdOp(x))
        bdim = ins(gpu.BlockDimOp(x))
        tid = ins(gpu.ThreadIdOp(x))
        lin = ins(arith.AddiOp(ins(arith.MuliOp(bid, bdim)), tid))
        if not buffers:
            then = Block()
            inside = ins(arith.CmpiOp(lin, mapping[total], "slt"))
            b.insert(scf.IfOp(inside, [], Region(then)))
            _iteration(Builder(InsertPoint.at_end(then)), loop, lin, counts, mapping)
            then.add_op(scf.YieldOp())
        else:
            buffer_args = entry.args[len(args) - len(buffers) - checked:
                                     len(args) - checked]
            _stride_loop(b, loop, lin, bdim, mapping[total], counts, mapping, kinds,
                         buffer_args, warp_aggregate=not checked)
        b.insert(gpu.ReturnOp([]))
        ftype = FunctionType.from_lists([a.type for a in args], [])
        return gpu.FuncOp(name, ftype, Region(entry), kernel=True)


def _iteration(b: Builder, loop: scf.ParallelOp, lin: SSAValue, counts: list[SSAValue],
               mapping: dict[SSAValue, SSAValue]) -> list[SSAValue]:
    """At ``b``: the body of ``loop`` for linear iteration ``lin`` (delinearized into
    the ivs, the last varying fastest); return the values its ``scf.reduce`` reduces."""
    def ins(op: Operation) -> SSAValue:
        return b.insert(op).results[0]

    rank = len(loop.lowerBound)
    rest = lin
    ivs: list[SSAValue] = [lin] * rank
    for d in range(rank - 1, -1, -1):
        if d > 0:
            n = mapping[counts[d]]
            r = ins(arith.RemUIOp(rest, n))
            rest = ins(arith.DivUIOp(rest, n))
        else:
            r = rest
        scaled = ins(arith.MuliOp(r, mapping[loop.step[d]]))
        ivs[d] = ins(arith.AddiOp(mapping[loop.lowerBound[d]], scaled))
    for iv, new in zip(loop.body.block.args, ivs):
        mapping[iv] = new
    body_ops = list(loop.body.block.ops)
    reduce_op = body_ops.pop()
    assert isinstance(reduce_op, scf.ReduceOp)
    for op in body_ops:
        b.insert(op.clone(mapping))
    return [mapping.get(v, v) for v in reduce_op.args]


def _stride_loop(b: Builder, loop: scf.ParallelOp, lin: SSAValue, bdim: SSAValue,
                 total: SSAValue, counts: list[SSAValue],
                 mapping: dict[SSAValue, SSAValue], kinds: list[str],
                 buffers: Sequence[SSAValue], warp_aggregate: bool) -> None:
    """At ``b``: thread ``lin``'s grid-stride loop over ``loop``'s iterations
    (``for k = lin; k < total; k += gridDim.x * blockDim.x``) carrying its partial
    reductions from the kinds' identities, then one ``atomic_rmw`` per reduction into
    its buffer, which every thread reaches (a thread with no iteration contributes the
    identity); ``warp_aggregate`` marks them ``isozyme.warp_aggregate``."""
    def ins(op: Operation) -> SSAValue:
        return b.insert(op).results[0]

    reduce_op = loop.body.block.last_op
    assert isinstance(reduce_op, scf.ReduceOp)
    types = [v.type for v in loop.initVals]
    inits = []
    for kind, t in zip(kinds, types):
        identity = ins(_identity(kind, i64 if isinstance(t, IndexType) else t))
        if isinstance(t, IndexType):
            identity = ins(arith.IndexCastOp(identity, t))
        inits.append(identity)
    stride = ins(arith.MuliOp(ins(gpu.GridDimOp(gpu.DimensionAttr(gpu.DimensionEnum.X))),
                              bdim))
    body = Block(arg_types=[IndexType(), *types])
    for_op = b.insert(scf.ForOp(lin, total, stride, inits, Region(body)))
    inner = Builder(InsertPoint.at_end(body))
    values = _iteration(inner, loop, body.args[0], counts, mapping)
    combined = []
    for region, partial, value in zip(reduce_op.reductions, body.args[1:], values):
        # The region's one combining op (commutative: the order of its operands is free).
        lhs, rhs = region.block.args
        combine = region.block.first_op
        assert combine is not None
        combined.append(inner.insert(combine.clone({lhs: partial, rhs: value})).results[0])
    inner.insert(scf.YieldOp(*combined))
    zero = ins(arith.ConstantOp(IntegerAttr(0, IndexType())))
    for kind, part, buf in zip(kinds, for_op.results, buffers):
        if isinstance(part.type, IndexType):
            part = ins(arith.IndexCastOp(part, i64))
        rmw = b.insert(atomic_rmw(kind, part, buf, [zero]))
        # A thread whose check fails ends early and would miss the warp's shuffle:
        # with checks, one atomic per thread.
        if warp_aggregate:
            rmw.attributes[WARP_AGGREGATE_ATTR] = UnitAttr()


def _identity(kind: str, t: Attribute) -> arith.ConstantOp:
    """The identity of reduction ``kind`` on ``t`` (``-0.0`` for ``addf``: ``x + -0.0``
    is ``x`` for every ``x``; NaN for ``maxnumf``/``minnumf``, which ignore it)."""
    if isinstance(t, IntegerType):
        w = t.width.data
        ints = {"addi": 0, "muli": 1, "ori": 0, "xori": 0, "andi": -1, "maxu": 0,
                "minu": -1, "maxs": -(1 << (w - 1)), "mins": (1 << (w - 1)) - 1}
        return arith.ConstantOp(IntegerAttr(ints[kind], t))
    floats = {"addf": -0.0, "mulf": 1.0, "maximumf": float("-inf"),
              "minimumf": float("inf"), "maxnumf": float("nan"), "minnumf": float("nan")}
    if kind not in floats:
        raise UnsupportedError(f"scf.reduce of kind {kind} on {t} in a GPU kernel")
    return arith.ConstantOp(FloatAttr(floats[kind], t))


def _nested_in_parallel(op: Operation) -> bool:
    parent = op.parent_op()
    while parent is not None:
        if isinstance(parent, scf.ParallelOp):
            return True
        parent = parent.parent_op()
    return False


class OutlineParallelLoopsPass(ModulePass):
    """Outline every outermost ``scf.parallel`` into a ``gpu.func`` kernel of
    ``gpu.module @isozyme_kernels`` and launch it with ``gpu.launch_func``."""

    name = "gpu-outline-parallel-loops"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place."""
        _Outliner(op).run()
