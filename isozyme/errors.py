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


class OutOfBoundsError(IsozymeError, IndexError):
    """An index outside its array, found by a run-time bounds check of the compiled code.

    The message names the file, the line, the index and the size.  It is an
    ``IndexError`` too, as numpy's would be.
    """


class AssertionFailedError(IsozymeError, AssertionError):
    """An ``assert`` on a traced condition that failed when the compiled code ran; the
    message names the file and the line.  It is an ``AssertionError`` too."""


class ReadOnlyError(IsozymeError, ValueError):
    """A non-writeable array (``setflags(write=False)``, ``np.frombuffer`` of bytes, a
    read-only memory map) passed where the compiled code may write it; checked before
    the call, so nothing is written."""


class UnboundVariableError(IsozymeError, UnboundLocalError):
    """A variable read by the compiled code before any assignment to it ran: one first
    assigned inside a traced loop, read after (or in) a loop that had not assigned it
    yet. Python raises ``UnboundLocalError`` there; so does isozyme, when the call runs."""


class DivisionByZeroError(IsozymeError, ZeroDivisionError):
    """An integer ``//`` or ``%`` by zero in the compiled code (Python's
    ``ZeroDivisionError``), raised when the call runs; nothing after it ran."""


class UnsupportedError(IsozymeError, NotImplementedError):
    """A feature isozyme does not implement (yet); the message names it."""


class RuleError(IsozymeError, TypeError):
    """A custom derivative rule (``isozyme.rules``) that cannot be used: registered with
    bad arguments, missing for the mode asked, or returning the wrong structure, shape or
    dtype; the message names the rule (function and rule kind) and what was expected."""


class HostCallError(IsozymeError, RuntimeError):
    """A Python function called from compiled code (a host call: the primal of a rule's
    function isozyme cannot trace) raised; the message names the function and the
    exception, which is the error's ``__cause__``.  The call stopped there."""


class CompileError(IsozymeError):
    """A compiler pass or the LLVM backend failed on IR isozyme produced."""


class CudaError(IsozymeError, RuntimeError):
    """A CUDA driver call of a compiled host program (a kernel launch, a device copy)
    failed; ``code`` is its ``CUresult``. The call stopped at the failure."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class DataRaceError(IsozymeError, RuntimeError):
    """The race checker of ``cuda-emu`` (``ISOZYME_EMU_RACECHECK=1``) found two threads
    of one kernel launch storing to the same address with plain stores, or one storing
    and another loading it; the message names the kernel, the threads and the
    element's offset."""
