"""``enzyme-differentiate``: replace every autodiff request by a call of its derivative."""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter
from xdsl.traits import SymbolTable

from isozyme.compiler.ad.factory import DerivativeFactory
from isozyme.dialects.enzyme import AutoDiffOp, ForwardDiffOp
from isozyme.errors import UnsupportedError


@dataclass(frozen=True)
class DifferentiatePass(ModulePass):
    """Generate ``fwddiffe<f>``/``diffe<f>`` for each ``enzyme.fwddiff``/``enzyme.autodiff``
    and replace the request by a ``func.call`` of it."""

    name = "enzyme-differentiate"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        factory = DerivativeFactory(op)
        requests = [o for o in op.walk() if isinstance(o, (ForwardDiffOp, AutoDiffOp))]
        for req in requests:
            fn = SymbolTable.lookup_symbol(req, req.fn)
            if not isinstance(fn, func.FuncOp):
                raise UnsupportedError(f"{req.name}: {req.fn} is not a func.func")
            if req.batch_width != 1:
                raise UnsupportedError("batch (vector) mode, width > 1, is not supported yet")
            if isinstance(req, ForwardDiffOp):
                name = factory.forward(fn, req.activities, req.ret_activities)
            else:
                name = factory.reverse(fn, req.activities, req.ret_activities)
            call = func.CallOp(name, list(req.inputs), [r.type for r in req.outputs])
            Rewriter.replace_op(req, call)
