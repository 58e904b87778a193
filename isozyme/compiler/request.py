"""Wrap a traced function in an autodiff request: the ``traced`` stage's entry point."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, Region

from isozyme.dialects.enzyme import AutoDiffOp, DerivativeSignature, ForwardDiffOp

REQUEST_NAME = "__iz_request"


def add_request(
    module: ModuleOp,
    fn_name: str,
    arg_types: Sequence[Attribute],
    result_types: Sequence[Attribute],
    sig: DerivativeSignature,
) -> None:
    """Append ``func.func @__iz_request`` holding one enzyme request on ``@fn_name``,
    laid out as ``sig`` says (:class:`DerivativeSignature`).

    The traced functions become private, so that only the request stays public (the
    runtime's entry point) and the primal function disappears once differentiated.
    """
    for op in module.ops:
        if isinstance(op, func.FuncOp):
            op.properties.pop("sym_visibility", None)
            op.attributes.pop("sym_visibility", None)
            op.sym_visibility = StringAttr("private")
    ins = sig.operand_types(arg_types, result_types)
    outs = sig.result_types(arg_types, result_types)
    block = Block(arg_types=ins)
    op_type = AutoDiffOp if sig.reverse else ForwardDiffOp
    req = op_type(
        fn_name, list(block.args), outs, sig.activities, sig.ret_activities,
        sig.width if sig.width != 1 else None,
    )
    block.add_ops([req, func.ReturnOp(*req.outputs)])
    module.body.block.add_op(
        func.FuncOp(REQUEST_NAME, FunctionType.from_lists(ins, outs), Region(block))
    )
