"""AST nodes for calls into ``_iz_`` (the name converted code reaches isozyme's
builders through, :mod:`.ops`), shared by the AST passes."""

from __future__ import annotations

import ast

#: The name converted code calls isozyme's builders through.
OPS = "_iz_"
#: The name converted code reaches :mod:`.sequences` (iteration over arrays) through.
SEQ = "_iz_seq_"


def ops_attr(attr: str) -> ast.expr:
    """The expression ``_iz_.<attr>``."""
    return ast.Attribute(ast.Name(OPS, ast.Load()), attr, ast.Load())


def ops_call(attr: str, *args: ast.expr) -> ast.Call:
    """The call ``_iz_.<attr>(*args)``."""
    return ast.Call(func=ops_attr(attr), args=list(args), keywords=[])


def is_ops_call(e: ast.expr, attr: str) -> bool:
    """Whether ``e`` is ``_iz_.<attr>(...)``."""
    return isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) \
        and e.func.attr == attr and isinstance(e.func.value, ast.Name) \
        and e.func.value.id == OPS


def seq_call(attr: str, *args: ast.expr) -> ast.Call:
    """The call ``_iz_seq_.<attr>(*args)`` (:mod:`.sequences`)."""
    func = ast.Attribute(ast.Name(SEQ, ast.Load()), attr, ast.Load())
    return ast.Call(func=func, args=list(args), keywords=[])
