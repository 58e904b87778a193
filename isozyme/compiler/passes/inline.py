"""``inline``: inline every ``func.call`` of a function defined in the module.

xDSL has no general inliner.  The traced IR is small and call graphs from Python
helpers are acyclic, so inlining everything before AD is both simple and what Enzyme
wants (it differentiates optimized, inlined code).  Recursive calls are left alone.
Private functions left without callers are removed.

Calls with a user derivative rule (``isozyme.rules``: marked ``isozyme.rule``) must
reach AD as calls, so the pipeline runs this pass with ``keep_ruled`` before AD; after
AD they are inlined like any other call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.ad_rules.registry import RULE_ATTR

_MAX_ROUNDS = 64


def _inline_call(call: func.CallOp, callee: func.FuncOp) -> None:
    block = callee.body.block
    vmap: dict[SSAValue, SSAValue] = dict(zip(block.args, call.arguments))
    ip = InsertPoint.before(call)
    results: list[SSAValue] = []
    for op in block.ops:
        if isinstance(op, func.ReturnOp):
            results = [vmap.get(v, v) for v in op.operands]
            break
        Rewriter.insert_op(op.clone(value_mapper=vmap), ip)
    Rewriter.replace_op(call, [], results)


@dataclass(frozen=True)
class InlinePass(ModulePass):
    """Inline all non-recursive calls of single-block functions; drop dead private ones.

    ``keep_ruled``: leave calls marked with a user rule (``isozyme.rule``) alone.
    """

    name = "inline"

    keep_ruled: bool = field(default=False, metadata={
        "help": "leave calls of functions with a user derivative rule (isozyme.rule) as calls"})

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        funcs = {f.sym_name.data: f for f in op.ops if isinstance(f, func.FuncOp)}
        for _ in range(_MAX_ROUNDS):
            changed = False
            for call in [c for c in op.walk() if isinstance(c, func.CallOp)]:
                callee = funcs.get(call.callee.string_value())
                caller = call.parent_op()
                while caller is not None and not isinstance(caller, func.FuncOp):
                    caller = caller.parent_op()
                if (
                    (self.keep_ruled and RULE_ATTR in call.attributes)
                    or callee is None
                    or callee is caller
                    or len(callee.body.blocks) != 1
                ):
                    continue
                _inline_call(call, callee)
                changed = True
            if not changed:
                break
        used = {
            c.callee.string_value() for c in op.walk() if isinstance(c, func.CallOp)
        }
        for attr_op in op.walk():
            for a in attr_op.properties.values():
                if isinstance(a, SymbolRefAttr):
                    used.add(a.string_value())
        for name, f in funcs.items():
            if f.sym_visibility is not None and f.sym_visibility.data == "private" and name not in used:
                Rewriter.erase_op(f)
