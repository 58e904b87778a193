"""The xDSL context with every dialect isozyme's IR may contain."""

from __future__ import annotations

from functools import cache

from xdsl.context import Context
from xdsl.dialects import affine, arith, builtin, cf, func, gpu, linalg, llvm, math, memref, scf

from isozyme.dialects.check import Isz
from isozyme.dialects.custom_syntax import with_custom_syntax
from isozyme.dialects.enzyme import Enzyme
from isozyme.dialects.gpu_ext import IszGpu
from isozyme.dialects.math_ext import MathExt
from isozyme.dialects.memref_ext import MemRefExt


@cache
def _dialects():
    return (
        builtin.Builtin, func.Func, arith.Arith, math.Math, with_custom_syntax(scf.Scf),
        cf.Cf, llvm.LLVM, with_custom_syntax(memref.MemRef), linalg.Linalg, affine.Affine,
        gpu.GPU, MemRefExt, MathExt, Enzyme, Isz, IszGpu,
    )


def make_context() -> Context:
    """A fresh context with every dialect of isozyme's IR stages."""
    ctx = Context(allow_unregistered=False)
    for d in _dialects():
        ctx.load_dialect(d)
    return ctx
