"""isozyme: Enzyme for Python.

Automatic differentiation done by a compiler on optimized IR: a Python function is
traced once per signature into xDSL IR, optimized, differentiated by compiler passes
and JIT-compiled with LLVM.  The API is Enzyme.jl's::

    >>> import isozyme as iz
    >>> def rosenbrock(x, y):
    ...     return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2
    >>> iz.autodiff(iz.Reverse, rosenbrock, iz.Active, iz.Active(1.0), iz.Active(2.0))
    ((-400.0, 200.0),)
"""

from isozyme.annotations import (
    Active,
    BatchDuplicated,
    BatchDuplicatedNoNeed,
    Const,
    Duplicated,
    DuplicatedNoNeed,
    Forward,
    ForwardWithPrimal,
    Mode,
    Reverse,
    ReverseWithPrimal,
)
from isozyme.api import GradientResult, autodiff, clear_cache, gradient, gradient_, ir, ir_stages
from isozyme.api import target
from isozyme import pipeline, timings
from isozyme.vjp import vjp
from isozyme.jacobians import jacobian
from isozyme.seeds import make_zero, onehot
from isozyme.hessians import hvp, hvp_, hvp_and_gradient_
from isozyme.config import config
from isozyme.frontends.python.parallel import prange
from isozyme import rules
from isozyme.errors import (
    AnnotationError,
    CompileError,
    CudaError,
    DataRaceError,
    DivisionByZeroError,
    IsozymeError,
    OutOfBoundsError,
    ReadOnlyError,
    RuleError,
    ShapeError,
    TraceError,
    UnboundVariableError,
    UnsupportedError,
)

__version__ = "0.1.0"

__all__ = [
    "Active", "AnnotationError", "BatchDuplicated", "BatchDuplicatedNoNeed",
    "CompileError", "Const", "CudaError", "DataRaceError", "DivisionByZeroError", "Duplicated", "DuplicatedNoNeed",
    "Forward",
    "ForwardWithPrimal", "GradientResult", "IsozymeError", "Mode", "OutOfBoundsError",
    "ReadOnlyError", "Reverse", "RuleError",
    "ReverseWithPrimal", "ShapeError", "TraceError", "UnboundVariableError", "UnsupportedError", "autodiff", "clear_cache", "config",
    "gradient",
    "gradient_", "hvp", "hvp_", "hvp_and_gradient_", "jacobian", "make_zero", "onehot",
    "ir", "ir_stages", "pipeline", "prange", "rules", "timings",
    "target", "vjp",
]
