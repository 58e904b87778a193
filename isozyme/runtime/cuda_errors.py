"""Errors of CUDA driver calls made by a GPU target's host program.

A failing ``cuLaunchKernel``/``cuMemcpy`` of a host program is an ``isz.check`` whose
message starts with
:data:`~isozyme.compiler.lowering.convert_gpu_launch_to_llvm.DRIVER_FAILURE`; the
entry callables raise :class:`CudaError` for it, with the ``CUresult``'s name from
the driver (``cuGetErrorName``) when ``libcuda.so.1`` is loadable.
"""

from __future__ import annotations

import ctypes
from functools import cache

from isozyme.errors import CudaError  # noqa: F401 (re-exported)




@cache
def _libcuda() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


def cu_error_name(code: int) -> str | None:
    """The driver's name of ``CUresult`` ``code`` (``CUDA_ERROR_LAUNCH_FAILED``), or
    None without a driver or for an unknown code."""
    lib = _libcuda()
    if lib is None:
        return None
    name = ctypes.c_char_p()
    try:
        rc = lib.cuGetErrorName(ctypes.c_int(code), ctypes.byref(name))
    except AttributeError:
        return None
    if rc != 0 or not name.value:
        return None
    return name.value.decode()


def driver_failure(message: str, code: int) -> CudaError:
    """The error of a failed driver-call check: ``message`` (``"CUDA driver call
    failed: <call> returned {0}"``) with the code and, when known, its name."""
    name = cu_error_name(code)
    shown = f"{code} ({name})" if name else f"{code} (CUresult)"
    return CudaError("isozyme runtime: " + message.format(shown), code)
