"""``inline``: inline every ``func.call`` of a function defined in the module.

xDSL has no general inliner.  The traced IR is small and call graphs from Python
helpers are acyclic, so inlining everything before AD is both simple and what Enzyme
wants (it differentiates optimized, inlined code).  Recursive calls are left alone.
Private functions left without callers are removed.

Calls with a user derivative rule (``isozyme.rules``: marked ``isozyme.rule``) must
reach AD as calls, so the pipeline runs this pass with ``keep_ruled`` before AD; after
AD they are inlined like any other call.

Calls are inlined top-down, in time linear in the size of the result: into the
functions nobody calls first, then the calls each inlined body brings in, so that every
op of the result is copied once.  (Inlining the calls of every function, callers and
callees alike, round after round, copied GradBench ``det``'s call tree about seven
times over.)  Functions still named afterwards (by a kept call or a symbol reference)
then get their own calls inlined too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from isozyme.compiler.ad_rules.registry import RULE_ATTR


def _inline_call(call: func.CallOp, callee: func.FuncOp) -> list[Operation]:
    """Replace ``call`` by a copy of ``callee``'s body; the ops inserted."""
    block = callee.body.block
    vmap: dict[SSAValue, SSAValue] = dict(zip(block.args, call.arguments))
    ip = InsertPoint.before(call)
    results: list[SSAValue] = []
    inserted: list[Operation] = []
    for op in block.ops:
        if isinstance(op, func.ReturnOp):
            results = [vmap.get(v, v) for v in op.operands]
            break
        inserted.append(new := op.clone(value_mapper=vmap))
        Rewriter.insert_op(new, ip)
    Rewriter.replace_op(call, [], results)
    return inserted


def _move_body(call: func.CallOp, callee: func.FuncOp) -> list[Operation]:
    """Replace ``call`` by ``callee``'s body itself, moved, and erase ``callee`` (a
    private function named by this call alone: copying would only waste time)."""
    block = callee.body.block
    for arg, value in zip(block.args, call.arguments, strict=True):
        arg.replace_all_uses_with(value)
    ret = block.last_op
    assert isinstance(ret, func.ReturnOp)
    results = list(ret.operands)
    moved = [op for op in block.ops if op is not ret]
    ip = InsertPoint.before(call)
    for op in moved:
        op.detach()
        Rewriter.insert_op(op, ip)
    Rewriter.replace_op(call, [], results)
    Rewriter.erase_op(callee)
    return moved


def _reference_counts(ops: Iterable[Operation]) -> Counter[str]:
    """How many calls and symbol-reference properties in ``ops`` name each symbol."""
    counts: Counter[str] = Counter()
    for top in ops:
        for o in top.walk():
            if isinstance(o, func.CallOp):
                counts[o.callee.string_value()] += 1
            for a in o.properties.values():
                if isinstance(a, SymbolRefAttr) and not isinstance(o, func.CallOp):
                    counts[a.string_value()] += 1
    return counts


def _calls_in(ops: Iterable[Operation]) -> Iterator[func.CallOp]:
    for op in ops:
        for o in op.walk():
            if isinstance(o, func.CallOp):
                yield o


@dataclass(frozen=True)
class InlinePass(ModulePass):
    """Inline all non-recursive calls of single-block functions; drop dead private ones.

    ``keep_ruled``: leave calls marked with a user rule (``isozyme.rule``) alone.
    """

    name = "inline"

    keep_ruled: bool = field(default=False, metadata={
        "help": "leave calls of functions with a user derivative rule (isozyme.rule) as calls"})

    def _inlinable(self, call: func.CallOp, callee: func.FuncOp | None) -> bool:
        return not (
            (self.keep_ruled and RULE_ATTR in call.attributes)
            or callee is None
            or len(callee.body.blocks) != 1
        )

    def _inline_into(
        self, fn: func.FuncOp, funcs: dict[str, func.FuncOp], refs: Counter[str]
    ) -> None:
        """Inline every inlinable call in ``fn``, then the calls those bring in
        (``refs``: the references to each function, kept up to date)."""
        # each pending call with the functions whose inlining brought it in: a call of
        # one of them is recursive and stays a call
        work: list[tuple[func.CallOp, frozenset[str]]] = [
            (c, frozenset((fn.sym_name.data,))) for c in _calls_in((fn,))]
        while work:
            call, chain = work.pop()
            name = call.callee.string_value()
            callee = funcs.get(name)
            if name in chain or not self._inlinable(call, callee):
                continue
            assert callee is not None
            inner = chain | {name}
            if refs[name] == 1 and _is_private(callee):
                inserted = _move_body(call, callee)
            else:
                inserted = _inline_call(call, callee)
                refs.update(_reference_counts(inserted))
            refs[name] -= 1
            work.extend((c, inner) for c in _calls_in(inserted))

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        """Inline, in place, the calls of ``op``'s functions; erase dead private ones."""
        funcs = {f.sym_name.data: f for f in op.ops if isinstance(f, func.FuncOp)}
        # functions no call names first: the private callees nobody names afterwards
        # are erased without having been expanded themselves
        called = {c.callee.string_value() for c in _calls_in(op.ops)}
        refs = _reference_counts(op.ops)
        for name, f in funcs.items():
            if name not in called:
                self._inline_into(f, funcs, refs)
        self._erase_dead(op, funcs)
        refs = _reference_counts(op.ops)
        for name, f in funcs.items():
            if name in called and f.parent is not None:
                self._inline_into(f, funcs, refs)
        self._erase_dead(op, funcs)

    @staticmethod
    def _erase_dead(op: ModuleOp, funcs: dict[str, func.FuncOp]) -> None:
        """Erase the private functions no call or symbol reference names, and those
        only erased functions named (counting references per function, once)."""
        names_in: dict[str, set[str]] = {}
        count = {n: 0 for n, f in funcs.items() if f.parent is not None}
        for top in op.ops:
            inside = _used_symbols_of(top)
            if isinstance(top, func.FuncOp) and top.sym_name.data in funcs:
                names_in[top.sym_name.data] = inside
            for n in inside:
                if n in count:
                    count[n] += 1
        dead = [n for n, c in count.items() if c == 0 and _is_private(funcs[n])]
        while dead:
            name = dead.pop()
            Rewriter.erase_op(funcs[name])
            for n in names_in.get(name, ()):
                if n in count and n != name:
                    count[n] -= 1
                    if count[n] == 0 and _is_private(funcs[n]):
                        dead.append(n)


def _is_private(f: func.FuncOp) -> bool:
    return f.sym_visibility is not None and f.sym_visibility.data == "private"


def _used_symbols_of(top: Operation) -> set[str]:
    """Symbols named by calls and symbol-reference properties in ``top``."""
    used: set[str] = set()
    for o in top.walk():
        if isinstance(o, func.CallOp):
            used.add(o.callee.string_value())
        for a in o.properties.values():
            if isinstance(a, SymbolRefAttr):
                used.add(a.string_value())
    return used
