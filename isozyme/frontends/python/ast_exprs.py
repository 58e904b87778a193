"""The expression rewrite of converted code: calls, boolean operators, conditional
expressions, comparison chains and nested lambdas (see :mod:`.ast_transform`)."""

from __future__ import annotations

import ast

from .ast_analysis import contains
from .ast_ops import OPS, XOPS, ops_attr, ops_call, thunk, xops_call

# Calls that must see the caller's frame: leave them unconverted.
_FRAME_CALLS = frozenset({"locals", "globals", "vars", "super", "eval", "exec", "dir"})

_CMP_OPS = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}


class ExprConverter(ast.NodeTransformer):
    """Rewrites calls, boolean operators, conditional expressions and comparison chains
    inside expressions (and nested lambdas); reads of the variables in ``late`` (which
    a traced loop may leave unassigned) go through ``_iz_x_.read_var``."""

    def __init__(self, late: frozenset[str] = frozenset()) -> None:
        self.late = late

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and node.id in self.late:
            return ast.copy_location(xops_call("read_var", node), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in _FRAME_CALLS:
            return node
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                and node.func.value.id in (OPS, XOPS):
            return node
        new = ast.Call(func=ops_attr("converted_call"), args=[node.func, *node.args],
                       keywords=node.keywords)
        return ast.copy_location(new, node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if contains(node.values, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await)):
            return node
        name = "and_" if isinstance(node.op, ast.And) else "or_"
        return ast.copy_location(ops_call(name, *[thunk(v) for v in node.values]), node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return ast.copy_location(ops_call("not_", node.operand), node)
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        if contains([node.body, node.orelse], (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await)):
            return node
        new = ops_call("ifexp", node.test, thunk(node.body), thunk(node.orelse))
        return ast.copy_location(new, node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if len(node.ops) == 1 or contains(node, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await)):
            return node
        ops = ast.Tuple([ast.Constant(_CMP_OPS[type(o)]) for o in node.ops], ast.Load())
        new = ops_call("compare_chain", thunk(node.left), ops, *[thunk(c) for c in node.comparators])
        return ast.copy_location(new, node)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.generic_visit(node)
        return ast.copy_location(ops_call("converted_fn", node), node)
