"""Pytrees: nested tuples, lists, dicts, NamedTuples and dataclasses of leaves.

Arguments may be pytrees of scalars and arrays; isozyme flattens them into leaves (one
traced argument each) and rebuilds the structure around the traced leaves, so the
user's function sees the structure it was written for.  A ``Duplicated`` pytree has a
shadow pytree of the same structure.

A structure (``TreeDef``) is hashable and compares equal for equal shapes, so it can be
part of the compile-cache key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from isozyme.errors import AnnotationError


class TreeDef(NamedTuple):
    """The structure of a pytree: a node kind, its static data and its children."""

    kind: Any  # type of the node, or None for a leaf
    data: Any  # dict keys / dataclass field names / None
    children: tuple["TreeDef", ...]

    @property
    def num_leaves(self) -> int:
        """How many leaves the structure holds."""
        if self.kind is None:
            return 1
        return sum(c.num_leaves for c in self.children)


LEAF = TreeDef(None, None, ())


def _is_namedtuple(x: object) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _is_user_dataclass(x: object) -> bool:
    # xDSL's IR attributes are dataclasses too, but they are values, not containers
    return (
        dataclasses.is_dataclass(x)
        and not isinstance(x, type)
        and not type(x).__module__.startswith("xdsl.")
    )


_CONTAINERS = frozenset({tuple, list, dict})
_LEAVES = frozenset({float, int, bool, str, type(None)})


def is_node(x: object) -> bool:
    """True for the containers isozyme looks into."""
    t = type(x)
    if t in _CONTAINERS:
        return True
    if t in _LEAVES:  # the common case, on every autodiff call: keep it cheap
        return False
    return _is_namedtuple(x) or _is_user_dataclass(x)


def flatten(x: object) -> tuple[list[Any], TreeDef]:
    """Leaves of ``x`` in a fixed order (dict keys sorted) and its structure."""
    leaves: list[Any] = []
    tree = _flatten(x, leaves)
    return leaves, tree


def _flatten(x: object, leaves: list[Any]) -> TreeDef:
    t = type(x)
    if t is tuple or t is list:
        return TreeDef(t, None, tuple(_flatten(v, leaves) for v in x))  # type: ignore[union-attr]
    if t is dict:
        keys = tuple(sorted(x, key=repr))  # type: ignore[arg-type]
        return TreeDef(dict, keys, tuple(_flatten(x[k], leaves) for k in keys))  # type: ignore[index]
    if _is_namedtuple(x):
        return TreeDef(t, None, tuple(_flatten(v, leaves) for v in x))  # type: ignore[union-attr]
    if _is_user_dataclass(x):
        names = tuple(f.name for f in dataclasses.fields(x) if f.init)
        return TreeDef(t, names, tuple(_flatten(getattr(x, n), leaves) for n in names))
    leaves.append(x)
    return LEAF


def unflatten(tree: TreeDef, leaves: list[Any]) -> Any:
    """Rebuild the structure ``tree`` around ``leaves``."""
    it = iter(leaves)
    out = _unflatten(tree, it)
    return out


def _unflatten(tree: TreeDef, it) -> Any:
    if tree.kind is None:
        return next(it)
    values = [_unflatten(c, it) for c in tree.children]
    kind = tree.kind
    if kind is tuple or kind is list:
        return kind(values)
    if kind is dict:
        return dict(zip(tree.data, values))
    if tree.data is None:  # NamedTuple
        return kind(*values)
    return kind(**dict(zip(tree.data, values)))


def check_same_structure(what: str, a: object, b: object) -> None:
    """Raise an AnnotationError unless ``a`` and ``b`` have the same structure."""
    la, ta = flatten(a)
    lb, tb = flatten(b)
    if ta != tb:
        raise AnnotationError(
            f"{what}: the shadow's structure {describe_tree(tb)} differs from the "
            f"primal's {describe_tree(ta)}"
        )


def describe_tree(tree: TreeDef) -> str:
    """A short human-readable rendering of a structure."""
    if tree.kind is None:
        return "*"
    inner = ", ".join(describe_tree(c) for c in tree.children)
    name = tree.kind.__name__
    if tree.kind is dict:
        inner = ", ".join(f"{k!r}: {describe_tree(c)}" for k, c in zip(tree.data, tree.children))
        return "{" + inner + "}"
    return f"{name}({inner})"


#: One step from a node to a child: the node's structure and the child's key (an
#: index, a dict key or a dataclass field name).
PathStep = tuple[TreeDef, Any]


def leaf_paths(tree: TreeDef) -> list[tuple[PathStep, ...]]:
    """Per leaf of ``tree`` (in :func:`flatten`'s order), the steps from the root."""
    out: list[tuple[PathStep, ...]] = []

    def walk(node: TreeDef, path: tuple[PathStep, ...]) -> None:
        if node.kind is None:
            out.append(path)
            return
        keys = node.data if node.data is not None else range(len(node.children))
        for key, child in zip(keys, node.children):
            walk(child, (*path, (node, key)))

    walk(tree, ())
    return out


def describe_path(path: tuple[PathStep, ...]) -> str:
    """A leaf's path as Python would spell it: ``[0]['b'].scale``."""
    parts = []
    for node, key in path:
        parts.append(f".{key}" if _is_field(node) else f"[{key!r}]")
    return "".join(parts) or "(the root)"


def immutable_container(step: PathStep) -> str | None:
    """The name of the container kind of ``step``'s node when its child cannot be
    replaced in place (a tuple, a NamedTuple, a frozen dataclass), else None."""
    kind = step[0].kind
    if kind is list or kind is dict:
        return None
    if issubclass(kind, tuple):
        return "tuple" if kind is tuple else f"NamedTuple {kind.__name__}"
    if kind.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return f"frozen dataclass {kind.__name__}"
    return None


def add_to_leaf(x: object, path: tuple[PathStep, ...], value: Any) -> None:
    """Replace the leaf of ``x`` at ``path`` (in a mutable container) by itself plus
    ``value``: the accumulation of a float leaf's derivative into a shadow pytree."""
    for node, key in path[:-1]:
        x = getattr(x, key) if _is_field(node) else x[key]  # type: ignore[index]
    node, key = path[-1]
    if _is_field(node):
        setattr(x, key, getattr(x, key) + value)
    else:
        x[key] = x[key] + value  # type: ignore[index]


def _is_field(node: TreeDef) -> bool:
    """Whether ``node``'s children are dataclass fields (attributes)."""
    return node.kind not in (list, dict) and not issubclass(node.kind, tuple)
