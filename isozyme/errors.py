"""The exceptions isozyme raises.

Every error a user can provoke is an :class:`IsozymeError`, so one ``except`` catches
them all; the subclasses say which layer refused.
"""

from __future__ import annotations


class IsozymeError(Exception):
    """Base class of every error raised by isozyme."""


class AnnotationError(IsozymeError, TypeError):
    """An activity annotation (Const, Active, Duplicated, ...) was given bad input."""


class TraceError(IsozymeError):
    """The frontend could not trace a construct of the user's Python function.

    The message names the file, the line and the construct.
    """


class ShapeError(IsozymeError, ValueError):
    """Array arguments whose sizes do not fit together (checked before the call)."""


class UnsupportedError(IsozymeError, NotImplementedError):
    """A feature isozyme does not implement (yet); the message names it."""


class CompileError(IsozymeError):
    """A compiler pass or the LLVM backend failed on IR isozyme produced."""
