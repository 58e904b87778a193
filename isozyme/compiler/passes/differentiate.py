"""``enzyme-differentiate``: replace every autodiff request by a call of its derivative.

Requests may be nested: a traced function ``f`` that calls ``autodiff`` holds an
``enzyme.autodiff``/``enzyme.fwddiff`` on ``g`` while a request on ``f`` is pending
(forward over reverse for Hessian-vector products, reverse over reverse...).  Inner
requests are differentiated first, in waves: a request is ready when no function it
reaches (its target and, transitively, the functions that one calls or requests)
still holds a pending request.  After each wave with requests still pending the calls
of the new derivatives are inlined, so the outer derivative differentiates the code the
inner AD emitted (shadow buffers, caches, reversed loops) like any other code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, SymbolRefAttr
from xdsl.ir import Operation
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter
from xdsl.traits import SymbolTable

from isozyme.compiler.ad.factory import DerivativeFactory
from isozyme.compiler.passes.inline import InlinePass
from isozyme.dialects.enzyme import AutoDiffOp, ForwardDiffOp
from isozyme.errors import UnsupportedError

_Request = ForwardDiffOp | AutoDiffOp


def _referenced(op: Operation) -> set[str]:
    """The symbols ``op`` and the ops nested in it call or request."""
    names: set[str] = set()
    for o in op.walk():
        for a in o.properties.values():
            if isinstance(a, SymbolRefAttr):
                names.add(a.string_value())
    return names


def _reachable(module: ModuleOp, root: str) -> set[str]:
    """``root`` and every function reachable from it through calls and requests."""
    funcs = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in funcs:
            continue
        seen.add(name)
        todo.extend(_referenced(funcs[name]) - seen)
    return seen


def _enclosing_function(op: Operation) -> str | None:
    parent = op.parent_op()
    while parent is not None and not isinstance(parent, func.FuncOp):
        parent = parent.parent_op()
    return parent.sym_name.data if parent is not None else None


def _ready(module: ModuleOp, pending: list[_Request]) -> list[_Request]:
    """The pending requests whose target reaches no function holding a pending
    request."""
    holders = {_enclosing_function(r) for r in pending}
    return [r for r in pending
            if not (_reachable(module, r.fn.string_value()) & holders)]


@dataclass(frozen=True)
class DifferentiatePass(ModulePass):
    """Generate ``fwddiffe<f>``/``diffe<f>`` for each ``enzyme.fwddiff``/``enzyme.autodiff``
    and replace the request by a ``func.call`` of it, inner requests first.

    Functions with ``cf`` branches are raised to ``scf`` (``lift-cf-to-scf``) when
    their derivative is built (:class:`~isozyme.compiler.ad.factory.DerivativeFactory`)."""

    name = "enzyme-differentiate"
    #: builds and names the derivatives (the ``enzyme`` pass names them as Enzyme does)
    factory_class: ClassVar[type[DerivativeFactory]] = DerivativeFactory

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        while True:
            # collected again each wave: inlining may have moved (cloned) requests
            pending: list[_Request] = [
                o for o in op.walk() if isinstance(o, (ForwardDiffOp, AutoDiffOp))
            ]
            if not pending:
                return
            ready = _ready(op, pending)
            if not ready:
                raise UnsupportedError(
                    f"{pending[0].name} @{pending[0].fn.string_value()}: the function "
                    "differentiates itself (a recursive nested autodiff)")
            factory = self.factory_class(op)
            for req in ready:
                self._replace(factory, req)
            if len(ready) < len(pending):
                # The outer requests differentiate the inner derivatives' code itself.
                InlinePass(keep_ruled=True).apply(ctx, op)

    @staticmethod
    def _replace(factory: DerivativeFactory, req: _Request) -> None:
        fn = SymbolTable.lookup_symbol(req, req.fn)
        if not isinstance(fn, func.FuncOp):
            raise UnsupportedError(f"{req.name}: {req.fn} is not a func.func")
        name = factory.derivative(fn, req.signature)
        call = func.CallOp(name, list(req.inputs), [r.type for r in req.outputs])
        Rewriter.replace_op(req, call)
