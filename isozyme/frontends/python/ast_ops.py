"""AST nodes for calls into ``_iz_`` (the name converted code reaches isozyme's
builders through, :mod:`.ops`), shared by the AST passes."""

from __future__ import annotations

import ast

#: The name converted code calls isozyme's builders through.
OPS = "_iz_"
#: The name converted code reaches :mod:`.converted_ops` (iteration, ``assert``) through.
XOPS = "_iz_x_"


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


def xops_call(attr: str, *args: ast.expr) -> ast.Call:
    """The call ``_iz_x_.<attr>(*args)`` (:mod:`.converted_ops`)."""
    func = ast.Attribute(ast.Name(XOPS, ast.Load()), attr, ast.Load())
    return ast.Call(func=func, args=list(args), keywords=[])


# --------------------------------------------------------------------------- builders


def thunk(e: ast.expr) -> ast.Lambda:
    """``lambda: e``."""
    return ast.Lambda(args=arguments([]), body=e)


def arguments(names: list[str]) -> ast.arguments:
    """The parameter list ``(n1, n2, ...)``."""
    return ast.arguments(
        posonlyargs=[],
        args=[ast.arg(n) for n in names],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )


def names_tuple(names: list[str], ctx: ast.expr_context) -> ast.Tuple:
    """The tuple display ``(n1, n2, ...)`` of names in context ``ctx``."""
    return ast.Tuple([ast.Name(n, ctx) for n in names], ctx)


def str_tuple(names: list[str]) -> ast.Tuple:
    """The tuple of the names as string constants."""
    return ast.Tuple([ast.Constant(n) for n in names], ast.Load())


def state_tuple(names: list[str]) -> ast.Tuple:
    """The current values of ``names`` (``UNDEF`` for an unbound one)."""
    # _iz_.ld(lambda: x) reads x, or gives UNDEF when x is not bound yet.
    return ast.Tuple([ops_call("ld", thunk(ast.Name(n, ast.Load()))) for n in names], ast.Load())


def function_def(name: str, params: list[str], body: list[ast.stmt]) -> ast.FunctionDef:
    """``def name(params): body`` (``pass`` when empty)."""
    return ast.FunctionDef(
        name=name,
        args=arguments(params),
        body=body or [ast.Pass()],
        decorator_list=[],
        returns=None,
        type_comment=None,
    )


def located(nodes: list[ast.stmt], at: ast.AST) -> list[ast.stmt]:
    """Give generated statements the (first) line of ``at``; children get theirs from
    :func:`fill_locations`."""
    for node in nodes:
        if not hasattr(node, "lineno"):
            set_line(node, at)
    return nodes


def set_line(node: ast.AST, at: ast.AST) -> None:
    node.lineno = node.end_lineno = at.lineno  # type: ignore[attr-defined]
    node.col_offset = node.end_col_offset = getattr(at, "col_offset", 0)  # type: ignore[attr-defined]


def fill_locations(node: ast.AST, parent: ast.AST | None = None) -> None:
    """Like ``ast.fix_missing_locations`` but generated nodes get the *start* line of
    their parent only: Python 3.11 reports a method call at its attribute's end line,
    which must stay the user's statement line."""
    if "lineno" in node._attributes and not hasattr(node, "lineno"):
        if parent is not None:
            set_line(node, parent)
    for child in ast.iter_child_nodes(node):
        fill_locations(child, node if hasattr(node, "lineno") else parent)


def name_node(n: str, store: bool = False) -> ast.Name:
    """The name ``n``, read (or stored to when ``store``)."""
    return ast.Name(n, ast.Store() if store else ast.Load())


def locate_tree(nodes: list[ast.stmt], at: ast.AST) -> list[ast.stmt]:
    """Give every generated node of ``nodes`` (and their children) without a location
    the first line of ``at``: Python 3.11 reports a call at its end line, which must be
    the user's statement line."""
    for node in nodes:
        for sub in ast.walk(node):
            if "lineno" in sub._attributes and not hasattr(sub, "lineno"):
                sub.lineno = sub.end_lineno = at.lineno  # type: ignore[attr-defined]
                sub.col_offset = sub.end_col_offset = getattr(at, "col_offset", 0)  # type: ignore[attr-defined]
    return nodes
