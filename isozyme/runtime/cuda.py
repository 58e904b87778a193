"""The ``cuda`` executor: kernels compiled by CuPy, the host program JIT-compiled by
:mod:`isozyme.runtime.jit` and launching them with the driver's ``cuLaunchKernel``.

* Kernels: ``cupy.RawModule(code=<CUDA C>, options=("-std=c++17",))`` (NVRTC), one
  module per source text, cached for the process (CuPy also caches the binary on
  disk); each kernel's ``CUfunction`` (``RawModule.get_function(name).ptr``) goes into
  the module's kernel table (``isozyme.abi.KERNEL_TABLE``).
* Launches: the host program calls ``cuLaunchKernel`` itself (its address from
  ``libcuda.so.1``, bound to the module when it is JIT-compiled) on the legacy
  default stream, which CuPy's default stream is too, so kernels and CuPy's own work
  on the arguments are ordered. The host's own element reads and writes (a
  reduction's result) are ``cuMemcpy`` calls, synchronous and ordered after the
  launches.
* Memory: arguments are device arrays (``__cuda_array_interface__``); their device
  pointers fill the descriptors (:func:`isozyme.runtime.marshal.device_view`). The
  host program's ``memref.alloc``/``dealloc`` (shadows, temporaries, results) call
  ``iz_device_alloc``/``iz_device_free``: ctypes callbacks allocating from CuPy's
  memory pool, kept alive in :data:`_LIVE` until freed. A memref result becomes a
  ``cupy.ndarray`` over its memory (``UnownedMemory`` whose owner returns it to the
  pool when the last array using it dies).

``import isozyme`` never imports CuPy: this module imports it on first use, and raises
:class:`~isozyme.errors.UnsupportedError` when it is missing.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import numpy as np

from isozyme.abi import (
    CUDA_LAUNCH_SYMBOL,
    DEVICE_ALLOC_SYMBOL,
    DEVICE_COPY_SYMBOL,
    DEVICE_FREE_SYMBOL,
    KERNEL_TABLE,
    LAUNCH_STATUS,
)
from isozyme.errors import UnsupportedError
from isozyme.runtime.jit import CompiledModule, compile_llvm_module

#: Device allocations of compiled host programs not freed yet: pointer -> CuPy memory.
_LIVE: dict[int, Any] = {}
#: Kernel modules by CUDA C source.
_MODULES: dict[str, Any] = {}
_LOCK = threading.Lock()


def import_cupy() -> Any:
    """CuPy, or :class:`UnsupportedError` saying how to install it."""
    try:
        import cupy  # noqa: PLC0415
    except ImportError as e:
        raise UnsupportedError(
            "the cuda target needs CuPy: pip install 'isozyme[cuda]' (cupy-cuda12x; "
            "for CUDA 13 install cupy-cuda13x instead)"
        ) from e
    return cupy


def unavailable() -> str | None:
    """Why the cuda target cannot run here (None when it can)."""
    try:
        cupy = import_cupy()
    except UnsupportedError as e:
        return str(e)
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as e:  # noqa: BLE001 (CuPy raises its own errors for no driver)
        return f"no CUDA device ({e})"
    return None


@ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64)
def _device_alloc(nbytes: int) -> int:
    """``iz_device_alloc``: ``nbytes`` of device memory from CuPy's pool (NULL for 0
    bytes, as ``malloc`` may)."""
    if nbytes <= 0:
        return 0
    import cupy  # noqa: PLC0415

    mem = cupy.cuda.alloc(nbytes)
    _LIVE[mem.ptr] = mem
    return mem.ptr


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _device_free(ptr: int | None) -> None:
    """``iz_device_free``: give an allocation back to CuPy's pool."""
    if ptr:
        _LIVE.pop(ptr, None)


_SYMBOLS: dict[str, int] = {}


def _driver_symbols() -> dict[str, int]:
    """The external functions of every ``cuda`` host program, name -> address:
    ``cuLaunchKernel`` and ``cuMemcpy`` from the driver, the device allocator."""
    with _LOCK:
        if not _SYMBOLS:
            try:
                libcuda = ctypes.CDLL("libcuda.so.1")
            except OSError as e:
                raise UnsupportedError(
                    f"the cuda target needs the CUDA driver (libcuda.so.1): {e}"
                ) from e

            def address(f: Any) -> int:
                value = ctypes.cast(f, ctypes.c_void_p).value
                assert value is not None
                return value

            _SYMBOLS.update({
                CUDA_LAUNCH_SYMBOL: address(libcuda.cuLaunchKernel),
                DEVICE_COPY_SYMBOL: address(libcuda.cuMemcpy),
                DEVICE_ALLOC_SYMBOL: address(_device_alloc),
                DEVICE_FREE_SYMBOL: address(_device_free),
            })
        return dict(_SYMBOLS)


def kernel_module(source: str) -> Any:
    """The ``cupy.RawModule`` of a CUDA C source (compiled once per source)."""
    cupy = import_cupy()
    with _LOCK:
        mod = _MODULES.get(source)
        if mod is None:
            mod = _MODULES[source] = cupy.RawModule(code=source, options=("-std=c++17",))
        return mod


class _DeviceBlock:
    """Owns one device allocation a host program returned (a memref result): back to
    CuPy's pool when the last array using it dies."""

    __slots__ = ("ptr", "__weakref__")

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __del__(self) -> None:
        ptr, self.ptr = self.ptr, 0
        if ptr:
            _LIVE.pop(ptr, None)


def _to_cupy(view: np.ndarray) -> Any:
    """The ``cupy.ndarray`` of a result's metadata view (its data pointer is a device
    pointer; ``view`` keeps the memory's owner alive)."""
    cupy = import_cupy()
    if view.size == 0:
        return cupy.empty(view.shape, view.dtype)
    ptr = view.__array_interface__["data"][0]
    low = sum((n - 1) * s for n, s in zip(view.shape, view.strides) if s < 0)
    high = sum((n - 1) * s for n, s in zip(view.shape, view.strides) if s > 0)
    size = high - low + view.itemsize
    memory = cupy.cuda.UnownedMemory(ptr + low, size, view)
    pointer = cupy.cuda.MemoryPointer(memory, -low)
    return cupy.ndarray(view.shape, view.dtype, memptr=pointer, strides=view.strides)


def load_cuda_artefact(artefact) -> CompiledModule:  # noqa: ANN001 (GpuArtefact)
    """Compile a ``cuda`` artefact: the kernels with CuPy, then the host program bound
    to them. Entry points take device arrays (as metadata views) and return CuPy
    arrays."""
    import_cupy()
    symbols = _driver_symbols()
    kernels = artefact.kernels
    table = (ctypes.c_void_p * max(len(kernels), 1))()
    status = ctypes.c_int32(0)
    mod = None
    functions = []
    if kernels:
        mod = kernel_module(artefact.source)
        for i, name in enumerate(kernels):
            fn = mod.get_function(name)
            functions.append(fn)
            table[i] = fn.ptr
    symbols[KERNEL_TABLE] = ctypes.addressof(table)
    symbols[LAUNCH_STATUS] = ctypes.addressof(status)
    compiled = compile_llvm_module(artefact.host, symbols)
    compiled.launch_status = status
    compiled.extras = (mod, functions, table, status)
    compiled.result_owner = _DeviceBlock
    compiled.result_array = _to_cupy
    return compiled
