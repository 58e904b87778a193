"""Wrap a traced function in an autodiff request: the ``traced`` stage's entry point."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import FunctionType, ModuleOp
from xdsl.ir import Attribute, Block, Region

from isozyme.dialects.enzyme import Activity, AutoDiffOp, ForwardDiffOp

REQUEST_NAME = "__iz_request"

_SHADOWED = (Activity.DUP, Activity.DUPNONEED)
_SEEDED = (Activity.ACTIVE, Activity.ACTIVENONEED)


def request_signature(
    arg_types: Sequence[Attribute],
    result_types: Sequence[Attribute],
    activities: Sequence[Activity],
    ret_activities: Sequence[Activity],
    reverse: bool,
) -> tuple[list[Attribute], list[Attribute]]:
    """Operand and result types of an ``enzyme.fwddiff``/``enzyme.autodiff`` request."""
    ins: list[Attribute] = []
    for t, a in zip(arg_types, activities):
        ins.append(t)
        if a in _SHADOWED:
            ins.append(t)
    outs: list[Attribute] = []
    if reverse:
        ins += [t for t, a in zip(result_types, ret_activities) if a in _SEEDED]
        outs += [
            t for t, a in zip(result_types, ret_activities)
            if a in (Activity.ACTIVE, Activity.CONST)
        ]
        outs += [t for t, a in zip(arg_types, activities) if a is Activity.ACTIVE]
    else:
        for t, a in zip(result_types, ret_activities):
            if a in (Activity.DUP, Activity.CONST):
                outs.append(t)
            if a in _SHADOWED:
                outs.append(t)
    return ins, outs


def add_request(
    module: ModuleOp,
    fn_name: str,
    arg_types: Sequence[Attribute],
    result_types: Sequence[Attribute],
    activities: Sequence[Activity],
    ret_activities: Sequence[Activity],
    reverse: bool,
) -> None:
    """Append ``func.func @__iz_request`` holding one enzyme request on ``@fn_name``.

    The traced functions become private, so that only the request stays public (the
    runtime's entry point) and the primal function disappears once differentiated.
    """
    for op in module.ops:
        if isinstance(op, func.FuncOp):
            op.sym_visibility = None
            op.properties.pop("sym_visibility", None)
            op.attributes.pop("sym_visibility", None)
            from xdsl.dialects.builtin import StringAttr

            op.sym_visibility = StringAttr("private")
    ins, outs = request_signature(arg_types, result_types, activities, ret_activities, reverse)
    block = Block(arg_types=ins)
    op_type = AutoDiffOp if reverse else ForwardDiffOp
    req = op_type(fn_name, list(block.args), outs, activities, ret_activities)
    block.add_ops([req, func.ReturnOp(*req.outputs)])
    module.body.block.add_op(
        func.FuncOp(REQUEST_NAME, FunctionType.from_lists(ins, outs), Region(block))
    )
