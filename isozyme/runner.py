"""The runner of a compiled signature: the per-call hot path that flattens the user's
values (pytrees, shadows, batch lanes, seeds) into the compiled entry point's operands,
checks what must be checked on every call, calls the entry and shapes its results as
:func:`isozyme.autodiff` returns them.

:func:`isozyme.calls.build` makes one runner per compiled signature.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import numpy as np
from xdsl.dialects.builtin import MemRefType
from xdsl.ir import Attribute

from isozyme.annotations import Active, Annotation, shadows_of
from isozyme.arguments import device_argument, view
from isozyme.dialects.enzyme import SEEDED, Activity, DerivativeSignature
from isozyme.errors import AnnotationError, ReadOnlyError, ShapeError
from isozyme.pytree import add_to_leaf, leaf_paths
from isozyme.pytree import flatten as flatten_tree
from isozyme.pytree import unflatten as unflatten_tree
from isozyme.runtime.marshal import device_view, on_device

if TYPE_CHECKING:
    from isozyme.calls import _Spec


def seed_marshaller(
    spec: _Spec, ret_acts: Sequence[Activity], result_types: Sequence[Attribute],
    returns_tuple: bool,
) -> Callable[[object], list[object]]:
    """What turns a user's seed (the structure of the function's return) into the
    entry's seed operands, checking each seed array's sizes where the returned type
    fixes them (the others are checked by the compiled code before any shadow is
    written) and passing it contiguous, as the returned type's layout is."""
    seeded = [(i, t) for i, (t, a) in enumerate(zip(result_types, ret_acts))
              if a in SEEDED]
    on_gpu = spec.target == "cuda"

    def values(lanes: Sequence[object]) -> list[object]:
        """``lanes``: one seed per batch lane; the operands: per seeded return value,
        its seed of every lane."""
        parts = [seed if returns_tuple else (seed,) for seed in lanes]
        flat: list[object] = []
        for i, t in seeded:
            for part in parts:
                s = part[i]  # type: ignore[index]
                if not isinstance(t, MemRefType):
                    flat.append(s)
                    continue
                shape = view(s).shape
                for d, size in enumerate(t.get_shape()):
                    if size >= 0 and shape[d] != size:
                        raise AnnotationError(
                            f"the seed of return value {i} has shape {shape}, but the "
                            f"returned array has size {size} in dimension {d}"
                        )
                s = contiguous(s)
                flat.append(device_argument(s) if on_gpu else s)
        return flat

    return values


def contiguous(x: object) -> object:
    """``x`` if it is C-contiguous, else a C-contiguous copy (on the host or on the
    device, in the array's own library)."""
    if on_device(x):
        if device_view(x).flags.ccontiguous:
            return x
        import importlib  # noqa: PLC0415

        return importlib.import_module(type(x).__module__.split(".")[0]).ascontiguousarray(x)
    return np.ascontiguousarray(x)


def strides_that_matter(a: np.ndarray) -> tuple[int, ...]:
    """The strides of ``a`` where its size is not 1 (the others address nothing)."""
    return tuple(s for s, n in zip(a.strides, a.shape) if n != 1)


def make_runner(
    spec: _Spec,
    entry: Callable[..., tuple],
    sig: DerivativeSignature,
    result_types: list[Attribute],
    returns_tuple: bool,
    shape_constraints: Sequence[tuple[int, int, int | None, int]] = (),
    written: Collection[int] = (),
    collapsed: Collection[int] = (),
) -> Callable[[Sequence[Annotation]], tuple]:
    """The per-call hot path: flatten values, check sizes (and that the arrays the
    compiled code writes are writeable), call the entry, shape the result.

    ``written``: traced arguments the function may write; ``collapsed``: traced arguments
    a reshape merges dimensions of (their shadows must have the same strides)."""
    ret_acts = sig.ret_activities
    n_seeds = sum(a in SEEDED for a in ret_acts)
    n_args = len(spec.annotations)
    mode = spec.mode
    seeds = (1.0,) * (n_seeds * spec.width)
    # per argument: its pytree (or None), and per leaf whether it is a runtime value
    trees = spec.trees
    runtime_of: list[list[bool]] = []
    pos = 0
    for tree in trees:
        n = 1 if tree is None else tree.num_leaves
        runtime_of.append(spec.runtime[pos : pos + n])
        pos += n
    # per argument: how many shadows it passes (1: Duplicated, the width: batched)
    n_shadows = [0 if shadows_of(a) is None else spec.width for a in spec.annotations]
    dup = [n > 0 for n in n_shadows]
    width, batched = spec.width, spec.batched
    # per argument, per leaf: its activity (None: baked into the IR)
    leaf_acts: list[list[Activity | None]] = []
    acts_left = iter(spec.activities)
    for rt in runtime_of:
        leaf_acts.append([next(acts_left) if r else None for r in rt])
    # per argument, per leaf: whether it passes the argument's shadows (not a float
    # leaf of a Duplicated pytree in reverse mode: that one is Active)
    leaf_dup = [[act in (Activity.DUP, Activity.DUPNONEED) for act in acts]
                for acts in leaf_acts]

    # where each traced argument's primal lands in the flat argument list
    primal_pos: list[int] = []
    dup_of: list[int] = []  # per traced leaf: its number of shadows
    names: list[str] = []  # per traced leaf: which of the user's arguments it is
    pos = 0
    for a, (rt, d, tree) in enumerate(zip(runtime_of, n_shadows, trees)):
        for leaf, r in enumerate(rt):
            if r:
                d = n_shadows[a] if leaf_dup[a][leaf] else 0
                primal_pos.append(pos)
                dup_of.append(d)
                names.append(f"argument {a}" if tree is None else
                             f"leaf {leaf} of argument {a}")
                pos += 1 + d
    # (flat position, what) of every array the compiled code may write: the primals it
    # writes, and the shadows (reverse mode accumulates into every shadow).
    must_write = [(primal_pos[i], names[i]) for i in sorted(written)
                  if i < len(primal_pos)]
    must_write += [(primal_pos[i] + 1 + k, f"the shadow of {names[i]}")
                   for i in range(len(primal_pos)) if dup_of[i] and (mode.reverse or i in written)
                   for k in range(dup_of[i])]
    same_layout = [(primal_pos[i], primal_pos[i] + 1 + k, names[i]) for i in sorted(collapsed)
                   if i < len(primal_pos) and dup_of[i] for k in range(dup_of[i])]
    # (argument, dimension) == (argument, dimension), or == a constant when b is None
    checks = [(primal_pos[a], j, None if b is None else primal_pos[b], k)
              for a, j, b, k in shape_constraints]

    def check_sizes(flat: list[object]) -> list[object]:
        for p, j, q, k in checks:
            if q is None:
                if np.shape(flat[p])[j] != k:
                    raise ShapeError(
                        f"array sizes do not fit: {fn_name} needs dimension {j} of an array "
                        f"argument ({np.shape(flat[p])}) to be {k}, as its whole-array "
                        "operations need")
            elif np.shape(flat[p])[j] != np.shape(flat[q])[k]:
                raise ShapeError(
                    f"array sizes do not fit: {fn_name} was traced assuming that dimension "
                    f"{j} of one array argument ({np.shape(flat[p])}) equals dimension {k} "
                    f"of another ({np.shape(flat[q])}), as its whole-array operations need"
                )
        return flat

    fn_name = getattr(spec.fn, "__name__", "the function")
    on_gpu = spec.target == "cuda"

    def check_buffers(flat: list[object]) -> None:
        for p, what in must_write:
            a = flat[p]
            flags = a.flags if type(a) is np.ndarray else np.asarray(a).flags  # type: ignore[union-attr]
            if not flags.writeable:
                raise ReadOnlyError(
                    f"{what} of {fn_name} is a read-only array, but the compiled code "
                    "writes it"
                    + (" (the derivative accumulates into the shadow)" if "shadow" in what
                       else "") + "; pass a writeable array (e.g. a copy)")
        for p, q, what in same_layout:
            x, dx = np.asarray(flat[p]), np.asarray(flat[q])
            if strides_that_matter(x) != strides_that_matter(dx):
                raise AnnotationError(
                    f"{fn_name} reshapes {what} (a view merging "
                    f"its dimensions), so its shadow must have the same memory layout: "
                    f"strides {dx.strides} against {x.strides}; for a contiguous array pass "
                    "np.zeros_like(x), for a view the same view of a zero array shaped "
                    "like its base")

    def flatten(anns: Sequence[Annotation]) -> list[object]:
        flat: list[object] = []
        for a, tree, rt, d, ld in zip(anns, trees, runtime_of, dup, leaf_dup):
            if tree is None:
                if rt[0]:
                    flat.append(a.val)
                    if d:
                        if batched:
                            flat += a.dvals  # type: ignore[attr-defined]
                        else:
                            flat.append(a.dval)  # type: ignore[attr-defined]
                continue
            leaves = flatten_tree(a.val)[0]
            if d:
                lanes = [flatten_tree(sh)[0] for sh in shadows_of(a)]  # type: ignore[union-attr]
                for leaf, r, s, *shs in zip(leaves, rt, ld, *lanes):
                    if r:
                        flat.append(leaf)
                        if s:
                            flat += shs
            else:
                flat += [leaf for leaf, r in zip(leaves, rt) if r]
        if on_gpu:  # device arrays cross as metadata views holding device pointers
            flat = [device_argument(x) for x in flat]
        if must_write or same_layout:
            check_buffers(flat)
        return check_sizes(flat) if checks else flat

    if mode.reverse:
        n_primals = sum(a in (Activity.ACTIVE, Activity.CONST) for a in ret_acts)
        seed_values = seed_marshaller(spec, ret_acts, result_types, returns_tuple)
        # in argument order (the order of the gradient results): (i, None) for an
        # Active argument, (i, [(leaf path)...]) for the float leaves of a Duplicated
        # pytree, whose derivatives are added into its shadow pytree
        gradients: list[tuple[int, list | None]] = []
        for i, a in enumerate(spec.annotations):
            if isinstance(a, Active):
                gradients.append((i, None))
            elif trees[i] is not None and Activity.ACTIVE in leaf_acts[i]:
                paths = leaf_paths(trees[i])  # type: ignore[arg-type]
                gradients.append((i, [p for p, act in zip(paths, leaf_acts[i])
                                      if act is Activity.ACTIVE]))

        def run(anns: Sequence[Annotation], seed: object = None) -> tuple:
            """``seed``: the cotangent of the result (:func:`isozyme.vjp`; in batch
            mode a tuple of one per lane); None: ``autodiff``'s 1.0 for a float
            return.  In batch mode the derivatives are a tuple of one per lane."""
            flat_seeds = seeds if seed is None else seed_values(
                seed if batched else (seed,))
            out = entry(*flatten(anns), *flat_seeds)
            # per lane, per argument; each Active leaf has width gradients in a row
            grads: list[list[object]] = [[None] * n_args for _ in range(width)]
            k = n_primals
            for i, float_leaves in gradients:
                tree = trees[i]
                if float_leaves is not None:  # (width 1: batched float leaves refused)
                    shadow = anns[i].dval  # type: ignore[attr-defined]
                    for path in float_leaves:
                        add_to_leaf(shadow, path, out[k])
                        k += 1
                elif tree is None:
                    for lane in range(width):
                        grads[lane][i] = out[k + lane]
                    k += width
                else:
                    n = tree.num_leaves
                    values = list(out[k : k + n * width])
                    for lane in range(width):
                        grads[lane][i] = unflatten_tree(tree, values[lane::width])
                    k += n * width
            derivs = tuple(map(tuple, grads)) if batched else tuple(grads[0])
            if mode.with_primal:
                primal = tuple(out[:n_primals]) if returns_tuple else (
                    out[0] if n_primals else None)
                return (derivs, primal)
            return (derivs,)

        return run

    def run_fwd(anns: Sequence[Annotation]) -> tuple:
        primals, tangents = sig.split_forward_results(entry(*flatten(anns)))
        lanes = [
            tuple(t[lane] for t in tangents) if returns_tuple
            else (tangents[0][lane] if tangents else None)
            for lane in range(width)
        ]
        # batch mode: one derivative per lane, in a tuple (Enzyme.jl's)
        deriv = tuple(lanes) if batched else lanes[0]
        if mode.with_primal:
            primal = tuple(primals) if returns_tuple else (primals[0] if primals else None)
            return (deriv, primal)
        return (deriv,)

    return run_fwd




