"""``convert-isz-check-to-llvm``: lower ``isz.check`` to an early return with a status.

Runs after ``convert-func-to-llvm``/``convert-cf-to-llvm`` (everything else is ``llvm``
then) and before ``add-c-entry-points``.

**The status record.** A failing check must stop the whole compiled call, from any depth
of loops and calls, so that no later write happens, and tell the Python caller which
check failed with which values. Every function that contains a check, or calls one that
does, gets a hidden trailing ``!llvm.ptr %status`` argument pointing at a record of
8-byte slots: ``status[0]`` is 0 while all is well and the 1-based id of the failing
check otherwise, ``status[1 + k]`` its ``k``-th value (sign-extended to ``i64``). The C
entry point puts the record in its ``out`` buffer right after the result slots and
zeroes ``status[0]`` before the call (``add_c_entry_points.py``); the runtime tests it
after the call (one integer test) and raises. The record lives in the caller's buffer,
not in a global, so concurrent calls do not share it.

**The lowering.** ``isz.check %c, %v...`` splits its block: ``llvm.cond_br
llvm.expect(%c, true), ^continue, ^fail``; ``^fail`` stores the id and the values and
returns (``llvm.mlir.undef`` of the result type, which nobody reads). After a call of a
function that takes the status, the caller tests ``status[0]`` and returns the same way.
Memory allocated before the failure is leaked (only on this error path).

The check table (id -> kind, message, number of values) is stored on the module as the
attribute ``isz.checks``; the runtime reads it with :func:`check_table`. Public
functions that take the status carry the unit attribute ``isz.status``.
"""

from __future__ import annotations

from xdsl.builder import Builder
from xdsl.context import Context
from xdsl.dialects import builtin, llvm
from xdsl.dialects.builtin import (
    ArrayAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    ModuleOp,
    UnitAttr,
    i1,
    i64,
)
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.lowering._common import declare_function
from isozyme.dialects.check import CheckOp

#: Module attribute holding the check table: one ``[kind, message, n_values]`` per id.
CHECKS_ATTR = "isz.checks"
#: Unit attribute of an ``llvm.func`` whose last argument is the status pointer.
STATUS_ATTR = "isz.status"

_PTR = llvm.LLVMPointerType()
_EXPECT = "llvm.expect.i1"


def check_table(module: ModuleOp) -> tuple[tuple[str, str, int], ...]:
    """The ``(kind, message, n_values)`` of each check id (id ``k`` at index ``k - 1``)
    of a lowered module; empty when the module has no checks."""
    attr = module.attributes.get(CHECKS_ATTR)
    if not isinstance(attr, ArrayAttr):
        return ()
    out = []
    for entry in attr.data:
        kind, message, n = entry.data  # type: ignore[attr-defined]
        out.append((kind.data, message.data, n.value.data))
    return tuple(out)


def takes_status(f: llvm.FuncOp) -> bool:
    """Whether ``f``'s last argument is the hidden status pointer."""
    return STATUS_ATTR in f.attributes


def _const(b: Builder, value: int, t: IntegerType = i64) -> SSAValue:
    return b.insert(llvm.ConstantOp(IntegerAttr(value, t), t)).result


def _slot(b: Builder, status: SSAValue, k: int) -> SSAValue:
    if k == 0:
        return status
    return b.insert(llvm.GEPOp(status, [k], i64)).result


def _as_i64(b: Builder, v: SSAValue) -> SSAValue:
    t = v.type
    if isinstance(t, IndexType) or t == i64:
        return v
    assert isinstance(t, IntegerType)
    if t.width.data > 64:
        return b.insert(llvm.TruncOp(v, i64)).results[0]
    ext = llvm.ZExtOp(v, i64) if t == i1 else llvm.SExtOp(v, i64)
    return b.insert(ext).results[0]


def _return_undef(b: Builder, f: llvm.FuncOp) -> None:
    out_t = f.function_type.output
    if isinstance(out_t, llvm.LLVMVoidType):
        b.insert(llvm.ReturnOp())
    else:
        b.insert(llvm.ReturnOp(b.insert(llvm.UndefOp(out_t)).res))


def _fail_block(f: llvm.FuncOp) -> tuple[Block, Builder]:
    """A new block at the end of ``f`` (the caller fills it, then returns)."""
    block = Block()
    f.body.add_block(block)
    return block, Builder(InsertPoint.at_end(block))


def _branch_out(
    op: Operation, ok: SSAValue, f: llvm.FuncOp, fail: Block, expect: bool
) -> None:
    """Split ``op``'s block after ``op`` and branch to ``fail`` unless ``ok``."""
    block = op.parent_block()
    assert block is not None and op.next_op is not None
    rest = block.split_before(op.next_op)
    b = Builder(InsertPoint.at_end(block))
    if expect:
        ok = b.insert(
            llvm.CallOp(_EXPECT, ok, _const(b, 1, i1), return_type=i1)
        ).returned  # type: ignore[assignment]
    b.insert(llvm.CondBrOp(ok, rest, [], fail, []))


class ConvertCheckToLLVMPass(ModulePass):
    """Lower every ``isz.check`` to a conditional early return through the status
    record (see the module docstring); add the status pointer to the functions that
    need it and forward it through their calls."""

    name = "convert-isz-check-to-llvm"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        """Rewrite ``op`` in place; record the check table on it."""
        funcs = {
            f.sym_name.data: f
            for f in op.ops
            if isinstance(f, llvm.FuncOp) and f.body.blocks
        }
        checks: dict[str, list[CheckOp]] = {}
        for name, f in funcs.items():
            found = [c for c in f.walk() if isinstance(c, CheckOp)]
            if found:
                checks[name] = found
        if not checks:
            return
        # Functions that need the status: those with checks and their callers.
        needs = set(checks)
        calls: dict[str, list[llvm.CallOp]] = {}
        for name, f in funcs.items():
            calls[name] = [
                c for c in f.walk()
                if isinstance(c, llvm.CallOp) and c.callee is not None
                and c.callee.string_value() in funcs
            ]
        changed = True
        while changed:
            changed = False
            for name, cs in calls.items():
                if name not in needs and any(
                    c.callee.string_value() in needs for c in cs  # type: ignore[union-attr]
                ):
                    needs.add(name)
                    changed = True
        declare_function(op, _EXPECT, [i1, i1], i1)
        status_of: dict[str, SSAValue] = {}
        for name in needs:
            f = funcs[name]
            entry = f.body.blocks[0]
            status_of[name] = entry.insert_arg(_PTR, len(entry.args))
            ft = f.function_type
            f.properties["function_type"] = llvm.LLVMFunctionType(
                [*ft.inputs.data, _PTR], ft.output, ft.is_variadic
            )
            f.attributes[STATUS_ATTR] = UnitAttr()
        table: list[ArrayAttr] = []
        for name, found in checks.items():
            f, status = funcs[name], status_of[name]
            for check in found:
                table.append(ArrayAttr([
                    check.kind, check.message, IntegerAttr(len(check.values), i64)
                ]))
                fail, b = _fail_block(f)
                b.insert(llvm.StoreOp(_const(b, len(table)), status))
                for k, v in enumerate(check.values):
                    b.insert(llvm.StoreOp(_as_i64(b, v), _slot(b, status, 1 + k)))
                _return_undef(b, f)
                _branch_out(check, check.cond, f, fail, expect=True)
                Rewriter.erase_op(check)
        # Forward the status through calls and leave when the callee failed.
        for name in needs:
            f, status = funcs[name], status_of[name]
            for c in calls[name]:
                if c.callee.string_value() not in needs:  # type: ignore[union-attr]
                    continue
                new = llvm.CallOp(
                    c.callee,
                    *c.args,
                    status,
                    return_type=c.returned.type if c.returned is not None else None,
                )
                Rewriter.replace_op(c, new)
                b = Builder(InsertPoint.after(new))
                code = b.insert(llvm.LoadOp(status, i64)).dereferenced_value
                ok = b.insert(
                    llvm.ICmpOp(
                        code, _const(b, 0),
                        IntegerAttr(llvm.ICmpPredicateFlag.EQ.to_int(), i64),
                    )
                ).res
                fail, fb = _fail_block(f)
                _return_undef(fb, f)
                _branch_out(ok.owner, ok, f, fail, expect=True)
        op.attributes[CHECKS_ATTR] = ArrayAttr(table)


__all__ = [
    "CHECKS_ATTR",
    "STATUS_ATTR",
    "ConvertCheckToLLVMPass",
    "check_table",
    "takes_status",
]
