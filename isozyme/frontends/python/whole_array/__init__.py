"""Whole-array numpy code on :class:`..arrays.ArrayTracer` (docs/ir.md, "Whole-array
numpy code"): each operation is one ``linalg.generic`` on buffers.

IR form
-------
An operation allocates its result (``memref.alloc``, identity layout, registered for the
``memref.dealloc`` at the end of the enclosing function/loop body like any local array)
and emits one ``linalg.generic`` with ``ins`` = its operands and ``outs`` = the result.
Sizes are dynamic (``memref.dim`` of an operand that has that dimension) except
dimensions that are statically 1 (``x[:, None]``, ``keepdims=True``), which stay static
(``memref<?x1xf64>``).  The loops of the generic are the dimensions of the result
(elementwise ops), or of the input (reductions), or the distinct einsum indices
(contractions), in that order.

* **Python numbers** are not operands: they become ``arith.constant`` ops inside the
  body (the scalar tracing rules of :mod:`..tracer` apply unchanged in the body, so
  ``x * 2`` on an ``i64`` array stays integer, ``x / 2`` is float, ...).
* **Traced scalars** (``f64``/``f32``/``i64``/``i1`` SSA values) are ``ins`` operands
  of their own (non-shaped) type, with the indexing map ``(d0, ..., dn-1) -> ()`` (as
  many dims as loops, no results: that is what xDSL's verifier wants for a scalar) and a
  body argument of the scalar's type.  xDSL's ``convert-linalg-to-loops`` passes such an
  operand to the body as it is (no load).
* **Broadcasting** follows numpy: on ranks (operand dimension j of an operand of rank r
  maps to loop ``d(j + R - r)``) and on dimensions of size 1.  A dimension that is
  statically 1 maps to the affine constant ``0`` when the result's is not (e.g.
  ``(d0, d1) -> (d0, 0)`` for a ``memref<?x1xf64>`` against a ``memref<?x?xf64>``;
  ``convert-linalg-to-loops`` turns it into ``affine.apply affine_map<() -> (0)>()``,
  ``lower-affine`` into an ``arith.constant``).  Dynamic sizes are unified by
  :func:`..shape_checks.unify_sizes` (checked before the call or in the compiled code;
  an operand whose size may be 1 at run time is read through a zero-stride broadcast
  view, :func:`..shape_checks.broadcast_view`).
* **Comparisons** (``x > 0``) produce ``i1`` arrays (``memref<?xi1>``); ``np.where``
  selects with them, arithmetic converts them like Python bools.
* **Reductions** (``np.sum/prod/max/min/mean``, methods too, ``axis=None|int|tuple``,
  ``keepdims``) first fill the output with a generic with no inputs (``0``, ``1``,
  ``-inf``/``+inf``; integer min/max for integer arrays), then accumulate with one
  generic: the input's map is the identity, the output's map keeps the non-reduced
  loops (the constant 0 for a reduced dimension kept with ``keepdims``), and reduced
  loops are ``reduction`` iterators.  The body is ``out (+|*|maximumf|minimumf) in``
  (``maximumf``/``minimumf`` propagate NaN like numpy).  A full reduction writes a
  rank-0 ``memref<f64>`` and returns the ``memref.load`` of it (a scalar Tracer).
  ``np.mean`` divides by the count (a traced ``i64`` scalar input) afterwards.
* **Contractions** (``np.dot``, ``@``/``np.matmul`` also on stacks of any rank,
  ``np.outer``, ``np.einsum`` with explicit or implicit subscripts and ``...``) are one generic whose loops are the output indices
  (``parallel``) then the summed indices (``reduction``); the body multiplies the inputs
  and, when something is summed, adds the output argument (after a fill with 0).
* **Views**: slices and partial indices (``x[1:-1]``, ``A[i]``, ``A[:, j]``, ``x[::-1]``)
  are ``memref.subview`` views (:mod:`..views`); generics read and write through them.
* **Views** beyond slices (:mod:`..view_ops`): ``x.T``/``np.transpose``
  (``memref.transpose``), ``x[:, None]`` (``memref.expand_shape``), ``reshape``/
  ``ravel`` (``memref.collapse_shape``/``expand_shape``), ``np.asarray`` (the array).
* **In place**: ``x += y`` (any binary operator) is a generic with ``outs = [x]`` whose
  body reads the output argument; ``x[key] = y`` copies ``y`` (broadcast) into the view
  ``x[key]``.  An operand that is another view of the output's memory is copied into a
  new buffer first (numpy's overlap rule).
* Not expressible as a generic with dynamic sizes (they need index arithmetic on
  sizes), so emitted as ``scf.for`` loops of ``memref.load``/``store`` like the other
  local-array builders: ``np.array([a, b, ...])`` (and nested lists), ``np.diag``,
  ``np.concatenate``/``np.stack`` of 1-D arrays; the scans ``np.cumsum``/``np.cumprod``
  (a loop along the axis, never unrolled); ``np.argmax``/``np.argmin``; ``np.eye``,
  ``np.linspace``, ``np.triu``/``np.tril``, ``np.triu_indices``/``np.tril_indices``.
* Built from the above: ``np.var``/``np.std``/``np.linalg.norm``/``np.any``/``np.all``
  (reductions of elementwise generics), ``np.diff``/``np.roll`` (views and copies),
  ``np.concatenate`` of n-D arrays, ``np.hstack``/``np.vstack``/``np.pad`` (copies into
  views of a new buffer), ``np.squeeze``/``np.expand_dims`` (views), ufuncs with
  ``out=`` (the result copied into ``out``, which is returned).

:func:`.registration.supported_numpy_functions` lists everything supported, with its
limits, from the registry itself (for the documentation's table).

Everything else on whole arrays raises the TraceError of
:func:`..tracer.whole_array_error`.

Modules
-------
* :mod:`.linalg_builder`: affine maps, result buffers, the ``linalg.generic`` builder.
* :mod:`.elementwise`: broadcasting, ufuncs, operators, in-place updates, where/clip.
* :mod:`.reductions`: sum/prod/max/min/mean.
* :mod:`.contractions`: einsum, dot, matmul, outer, inner.
* :mod:`.copies`: transpose and ``None`` indexing (views, see :mod:`..view_ops`), copies.
* :mod:`.array_builders`: np.array/asarray, diag, concatenate/stack (loop-built),
  reshape/flatten.
* :mod:`.statistics`: var/std, linalg.norm, any/all, argmax/argmin.
* :mod:`.scans`: cumsum/cumprod, diff, roll.
* :mod:`.index_builders`: eye/identity, linspace, triu/tril, triu_indices/tril_indices.
* :mod:`.shaping`: squeeze/expand_dims, n-D concatenate/stack, hstack/vstack, pad.
* :mod:`.loops`: index arithmetic and ``scf.for`` nests of loads/stores for the above.
* :mod:`.registration`: installs all of them on ``ArrayTracer`` and in ``ARRAY_AWARE``
  / ``ARRAY_TABLE``, and lists them (:func:`.registration.supported_numpy_functions`).
"""

from __future__ import annotations

# The registration import installs the operators/methods and the ARRAY_AWARE entries;
# it must run when this package is imported (at the end of ..arrays).
from . import registration as _registration  # noqa: F401
from .array_builders import (
    np_array,
    np_concatenate,
    np_diag,
    np_stack,
    reshape,
)
from .contractions import (
    contract,
    np_dot,
    np_einsum,
    np_inner,
    np_matmul,
    np_outer,
    np_vdot,
)
from .copies import (
    copy_to_new,
    getitem_view,
    np_transpose,
)
from .elementwise import (
    astype,
    broadcast_map,
    broadcast_shape,
    elementwise,
    inplace,
    np_clip,
    np_where,
)
from .linalg_builder import fill, generic, new_buffer
from .reductions import reduce

__all__ = [
    "astype",
    "broadcast_map",
    "broadcast_shape",
    "contract",
    "copy_to_new",
    "elementwise",
    "fill",
    "generic",
    "getitem_view",
    "inplace",
    "new_buffer",
    "np_array",
    "np_clip",
    "np_concatenate",
    "np_diag",
    "np_dot",
    "np_einsum",
    "np_inner",
    "np_matmul",
    "np_outer",
    "np_stack",
    "np_transpose",
    "np_vdot",
    "np_where",
    "reduce",
    "reshape",
]
