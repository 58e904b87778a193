"""isozyme's Python frontend: trace Python functions of scalars and
numpy arrays into ``traced`` IR.

``trace(fn, args)`` rewrites ``fn``'s AST once (AutoGraph-style, see
:mod:`.ast_transform`), runs it on :class:`Tracer` values and returns a
:class:`TracedFunction` holding an xDSL module of ``func``/``arith``/``math``/``scf`` ops.
"""

from __future__ import annotations

from .arrays import ArrayTracer, array_memref_type
from .trace import TracedFunction, trace
from .tracer import Tracer, Undefined

__all__ = ["ArrayTracer", "TracedFunction", "Tracer", "Undefined", "array_memref_type", "trace"]
