"""Which nested functions would read stale loop or branch state after AST conversion.

The AST conversion (:mod:`.ast_transform`) turns a loop or an ``if`` into body
functions that take and return the variables the statement assigns (its state).  A
nested function (``def``, ``lambda``, ``class``) defined *outside* such a statement
reads those variables through the enclosing function's cells, which are written back
only when the statement ends: called inside it, the nested function sees the values
from before the statement.  :class:`ClosureScope` finds those nested functions so that
the conversion can refuse them; it analyses one function's body, after
:func:`.ast_transform.normalize_returns` and before the body is converted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_SCOPES = (*_FUNCTIONS, ast.ClassDef, *_COMPREHENSIONS)


def _params(args: ast.arguments) -> set[str]:
    every = (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
    return {a.arg for a in every if a is not None}


def _own_nodes(scope: ast.AST) -> Iterable[ast.AST]:
    """The nodes evaluated in ``scope`` itself: its body, not the bodies of scopes nested
    in it (their decorators, defaults and first iterables, evaluated here, included)."""
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
        stack: list[ast.AST] = list(scope.body)
    elif isinstance(scope, ast.Lambda):
        stack = [scope.body]
    elif isinstance(scope, ast.ClassDef):
        stack = list(scope.body)
    elif isinstance(scope, _COMPREHENSIONS):
        stack = [scope.key, scope.value] if isinstance(scope, ast.DictComp) else [scope.elt]
        for i, gen in enumerate(scope.generators):
            stack += [gen.target, *gen.ifs] + ([gen.iter] if i else [])
    else:
        stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack += [*node.decorator_list, *node.args.defaults,
                      *[d for d in node.args.kw_defaults if d is not None]]
        elif isinstance(node, ast.Lambda):
            stack += [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]
        elif isinstance(node, ast.ClassDef):
            stack += [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]
        elif isinstance(node, _COMPREHENSIONS):
            stack.append(node.generators[0].iter)
        else:
            stack.extend(ast.iter_child_nodes(node))


def free_names(scope: ast.AST) -> set[str]:
    """The names ``scope`` (a function, lambda, class or comprehension), or a scope nested
    in it, reads or declares ``nonlocal`` without binding them itself: the variables it
    takes from the enclosing function."""
    bound: set[str] = set()
    declared_outer: set[str] = set()
    used: set[str] = set()
    if isinstance(scope, _FUNCTIONS):
        bound |= _params(scope.args)
    for node in _own_nodes(scope):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, ast.Nonlocal):
            declared_outer.update(node.names)
            used.update(node.names)
        elif isinstance(node, ast.Global):
            bound.update(node.names)  # module globals, not the enclosing function's
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            used |= free_names(node)
        elif isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            used |= free_names(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    if isinstance(scope, ast.ClassDef):
        bound = set()  # a class body's names are not visible to its methods
    return {n for n in used if n not in bound or n in declared_outer}


@dataclass
class _Closure:
    node: ast.AST
    name: str | None  # the name it is bound to (None: a lambda not assigned to a name)
    reads: set[str]


@dataclass
class ClosureScope:
    """The nested functions of one function body, with what they read from it, and
    where the body refers to them."""

    closures: list[_Closure] = field(default_factory=list)
    # name -> its loads in the body: (node, is the callee of a call in this scope)
    loads: dict[str, list[tuple[ast.Name, bool]]] = field(default_factory=dict)

    @classmethod
    def of(cls, body: list[ast.stmt]) -> ClosureScope:
        """Analyse ``body``, the statements of one function."""
        out = cls()
        root = ast.Module(body=body, type_ignores=[])
        lambda_names: dict[int, str] = {}
        callees: set[int] = set()
        for node in _own_nodes(root):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda) \
                    and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                lambda_names[id(node.value)] = node.targets[0].id
            elif isinstance(node, ast.Call):
                callees.add(id(node.func))
        for node in _own_nodes(root):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name if not isinstance(node, ast.ClassDef) else None
                out.closures.append(_Closure(node, name, free_names(node)))
            elif isinstance(node, ast.Lambda):
                out.closures.append(_Closure(node, lambda_names.get(id(node)), free_names(node)))
        # Every reference to a closure's name: one inside a nested scope may be called
        # from anywhere, so it does not count as a direct call here.
        names = {c.name for c in out.closures if c.name}
        direct = {id(n) for n in _own_nodes(root)}
        for node in ast.walk(root):
            if isinstance(node, ast.Name) and node.id in names \
                    and not isinstance(node.ctx, ast.Store):
                ok = id(node) in direct and id(node) in callees
                out.loads.setdefault(node.id, []).append((node, ok))
        return out

    def stale_reader(self, stmt: ast.stmt, names: Iterable[str],
                     runs_with_state: Iterable[ast.AST],
                     in_loop: bool) -> tuple[str, str, int] | None:
        """``(closure, variable, line)`` of a nested function defined outside ``stmt``
        that reads a variable of ``names`` (the state ``stmt`` assigns) and may run
        while the parts ``runs_with_state`` of ``stmt`` (its bodies; a ``while``'s
        condition too) run; ``None`` when there is none.  One that is called only
        directly, by name, elsewhere is fine: the state is written back when ``stmt``
        ends, and an ``if``'s test or a ``for``'s bounds run before it is taken.  So is
        one defined after ``stmt`` when no loop (``in_loop``) runs ``stmt`` again."""
        defined_inside = {id(n) for n in ast.walk(stmt)}
        inside = {id(n) for part in runs_with_state for n in ast.walk(part)}
        state = set(names)
        for c in self.closures:
            read = sorted(c.reads & state)
            if id(c.node) in defined_inside or not read:
                continue
            end = getattr(stmt, "end_lineno", None) or stmt.lineno
            if not in_loop and getattr(c.node, "lineno", 0) > end:
                continue  # defined after stmt, which no loop runs again
            if c.name is not None and all(ok and id(n) not in inside
                                          for n, ok in self.loads.get(c.name, [])):
                continue
            label = (f"{c.name}()" if isinstance(c.node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     else f"class {c.node.name}" if isinstance(c.node, ast.ClassDef)
                     else f"lambda {c.name}" if c.name else "lambda")
            return label, read[0], getattr(c.node, "lineno", 0)
        return None
