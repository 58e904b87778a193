"""The ``cuda`` executor: kernels compiled by CuPy, the host program JIT-compiled by
:mod:`isozyme.runtime.jit` and launching them with the driver's ``cuLaunchKernel``.

* Kernels: ``cupy.RawModule(code=<CUDA C>, options=("-std=c++17",))`` (NVRTC), one
  module per source text and device, cached for the process (CuPy also caches the
  binary on disk); each kernel's ``CUfunction`` (``RawModule.get_function(name).ptr``)
  goes into the compiled program's kernel table (``isozyme.abi.KERNEL_TABLE``) on its
  first call, for that call's device (the compile cache keys device arrays by device).
* Each call (:func:`_on_device`, the entry callables' wrapper): the arrays' device is
  made current (``cupy.cuda.Device``; a fresh thread has no current context), and the
  thread's call state (:class:`_CallState`) holds CuPy's current stream, the call's
  allocations and the first allocation error.
* Launches: the host program calls ``cuLaunchKernel`` itself (its address from
  ``libcuda.so.1``, bound to the module when it is JIT-compiled) on the stream
  ``iz_launch_stream()`` returns (the call's), so kernels are ordered with CuPy's
  work on that stream. The host's own element reads and writes (a reduction's
  result) are ``cuMemcpyAsync`` + ``cuStreamSynchronize`` on it (:func:`_device_copy`).
  A failed driver call stops the call (an ``isz.check``) and raises
  :class:`~isozyme.runtime.cuda_errors.CudaError`.
* Memory: arguments are device arrays (``__cuda_array_interface__``); their device
  pointers fill the descriptors (:func:`isozyme.runtime.marshal.device_view`). The
  host program's ``memref.alloc``/``dealloc`` (shadows, temporaries, results) call
  ``iz_device_alloc``/``iz_device_free``: ctypes callbacks allocating from CuPy's
  memory pool, kept alive in :data:`_LIVE` until freed. A failed allocation returns
  NULL (the exception is kept, never thrown through C); the host program checks the
  pointer and stops, and the wrapper frees the call's allocations and re-raises CuPy's
  ``OutOfMemoryError``. A memref result becomes a ``cupy.ndarray`` over its memory
  (``UnownedMemory`` whose owner returns it to the pool when the last array using it
  dies).

``import isozyme`` never imports CuPy: this module imports it on first use, and raises
:class:`~isozyme.errors.UnsupportedError` when it is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from isozyme.abi import (
    CUDA_LAUNCH_SYMBOL,
    DEVICE_ALLOC_SYMBOL,
    DEVICE_COPY_SYMBOL,
    DEVICE_FREE_SYMBOL,
    KERNEL_TABLE,
)
from isozyme.compiler.lowering.convert_gpu_launch_to_llvm import LAUNCH_STREAM_SYMBOL
from isozyme.errors import UnsupportedError
from isozyme.runtime.jit import CompiledModule, compile_llvm_module
from isozyme.runtime.marshal import device_of

#: Device allocations of compiled host programs not freed yet: pointer -> CuPy memory.
_LIVE: dict[int, Any] = {}
#: Kernel modules by (device id, CUDA C source).
_MODULES: dict[tuple[int, str], Any] = {}
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


class _CallState(threading.local):
    """What the callbacks of the host program running on this thread need: the
    call's stream, its device allocations not freed yet, the first allocation error."""

    stream: int = 0
    allocations: set[int] | None = None
    error: BaseException | None = None


_CALL = _CallState()


@ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64)
def _device_alloc(nbytes: int) -> int | None:
    """``iz_device_alloc``: ``nbytes`` of device memory from CuPy's pool (NULL for 0
    bytes, as ``malloc`` may). NULL when the allocation fails: the error (CuPy's
    ``OutOfMemoryError``) is kept for the thread's call, which the host program stops
    (an ``isz.check`` on the pointer) and the entry callable re-raises; an exception
    must not cross the C frames (ctypes would print it and return garbage)."""
    if nbytes <= 0:
        return None
    try:
        import cupy  # noqa: PLC0415

        mem = cupy.cuda.alloc(nbytes)
        ptr = int(mem.ptr)
        _LIVE[ptr] = mem
    except BaseException as e:  # noqa: BLE001 (re-raised by the entry callable)
        if _CALL.error is None:
            _CALL.error = e
        return None
    if _CALL.allocations is not None:
        _CALL.allocations.add(ptr)
    return ptr


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _device_free(ptr: int | None) -> None:
    """``iz_device_free``: give an allocation back to CuPy's pool (CuPy's pool orders
    its reuse after the work queued on the current stream, the call's)."""
    if ptr:
        _LIVE.pop(ptr, None)
        if _CALL.allocations is not None:
            _CALL.allocations.discard(ptr)


@ctypes.CFUNCTYPE(ctypes.c_void_p)
def _launch_stream() -> int | None:
    """``iz_launch_stream``: the stream of the thread's call (CuPy's current stream
    when the call began; 0, the legacy default stream, outside a call)."""
    return _CALL.stream or None  # type: ignore[return-value]


_COPY_ASYNC: Any = None
_SYNC: Any = None


@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
def _device_copy(dst: int | None, src: int | None, nbytes: int) -> int:
    """``cuMemcpy`` for the host program's element reads and writes, on the call's
    stream: ``cuMemcpyAsync`` then ``cuStreamSynchronize`` (the element is read on the
    host right after; a plain ``cuMemcpy`` would use the legacy stream, unordered with
    a non-blocking stream's kernels)."""
    stream = ctypes.c_void_p(_CALL.stream or None)
    rc = _COPY_ASYNC(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes), stream)
    if rc:
        return int(rc)
    return int(_SYNC(stream))


_SYMBOLS: dict[str, int] = {}


def _address(f: Any) -> int:
    """The address of a C function (a ctypes function or callback)."""
    value = ctypes.cast(f, ctypes.c_void_p).value
    assert value is not None
    return value


def _driver_symbols() -> dict[str, int]:
    """The external functions of every ``cuda`` host program, name -> address:
    ``cuLaunchKernel`` from the driver, the device allocator, the element copy."""
    global _COPY_ASYNC, _SYNC
    with _LOCK:
        if not _SYMBOLS:
            try:
                libcuda = ctypes.CDLL("libcuda.so.1")
            except OSError as e:
                raise UnsupportedError(
                    f"the cuda target needs the CUDA driver (libcuda.so.1): {e}"
                ) from e
            _COPY_ASYNC = libcuda.cuMemcpyAsync
            _COPY_ASYNC.restype = ctypes.c_int
            _SYNC = libcuda.cuStreamSynchronize
            _SYNC.restype = ctypes.c_int
            _SYMBOLS.update({
                CUDA_LAUNCH_SYMBOL: _address(libcuda.cuLaunchKernel),
                DEVICE_COPY_SYMBOL: _address(_device_copy),
                DEVICE_ALLOC_SYMBOL: _address(_device_alloc),
                DEVICE_FREE_SYMBOL: _address(_device_free),
            })
        return dict(_SYMBOLS)


def kernel_module(source: str) -> Any:
    """The ``cupy.RawModule`` of a CUDA C source for the current device (compiled once
    per source and device: a module's functions belong to one device's context)."""
    cupy = import_cupy()
    key = (_current_device(cupy), source)
    with _LOCK:
        mod = _MODULES.get(key)
        if mod is None:
            mod = _MODULES[key] = cupy.RawModule(code=source, options=("-std=c++17",))
        return mod


def _current_device(cupy: Any) -> int:
    """CuPy's current device id (0 when it cannot say)."""
    get = getattr(cupy.cuda, "get_device_id", None)
    return int(get()) if get is not None else 0




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


def _device_of_views(values: tuple[Any, ...]) -> int | None:
    """The device of the first device array among an entry's arguments (metadata
    views, :func:`isozyme.runtime.marshal.device_view`, keep their array)."""
    for v in values:
        if type(v) is np.ndarray:
            owner = getattr(v.base, "owner", None)
            if owner is not None:
                device = device_of(owner)
                if device is not None:
                    return device
    return None


class _Kernels:
    """The kernel handles of one host program, loaded on the device of its first call
    (the compile cache keys calls by their arrays' device, so each compiled program
    runs on one device)."""

    def __init__(self, artefact: Any) -> None:
        self.artefact = artefact
        self.table = (ctypes.c_void_p * max(len(artefact.kernels), 1))()
        self.device: int | None = None
        self.keep: tuple[Any, ...] = ()
        self.lock = threading.Lock()

    def load(self, device: int) -> None:
        """Fill the table with the kernels of ``device`` (once)."""
        with self.lock:
            if self.device is not None:
                return
            mod, functions = None, []
            if self.artefact.kernels:
                mod = kernel_module(self.artefact.source)
                for i, name in enumerate(self.artefact.kernels):
                    fn = mod.get_function(name)
                    functions.append(fn)
                    self.table[i] = _function_handle(fn)
            self.keep = (mod, functions)
            self.device = device


def _function_handle(fn: Any) -> int:
    """The ``CUfunction`` of a kernel from ``RawModule.get_function``: CuPy 13 returns a
    ``cupy.cuda.function.Function`` (``.ptr``); CuPy 14 returns a ``RawKernel``, whose
    ``.kernel`` is that ``Function``."""
    ptr = getattr(fn, "ptr", None)
    if ptr is None:
        ptr = fn.kernel.ptr
    return int(ptr)


def _use_device(cupy: Any, device: int) -> Any:
    """``cupy.cuda.Device(device)`` as a context manager (nothing for a stand-in CuPy
    without devices)."""
    make = getattr(cupy.cuda, "Device", None)
    return make(device) if make is not None else contextlib.nullcontext()


def _make_context_current(cupy: Any, device: int) -> None:
    """Make ``device``'s primary context current in this thread. ``cupy.cuda.Device``
    calls ``cudaSetDevice`` only when the device number changes, and a fresh thread
    already reports device 0 while no context is current in it: its ``cuLaunchKernel``
    then fails with ``CUDA_ERROR_INVALID_CONTEXT`` (seen on an H200). Since CUDA 12,
    ``cudaSetDevice`` makes the primary context current."""
    set_device = getattr(getattr(cupy.cuda, "runtime", None), "setDevice", None)
    if set_device is not None:  # a stand-in CuPy without a runtime has no contexts
        set_device(device)


def _current_stream(cupy: Any) -> int:
    """The handle of CuPy's current stream (0, the legacy default stream, for a
    stand-in CuPy without streams)."""
    get = getattr(cupy.cuda, "get_current_stream", None)
    return int(get().ptr) if get is not None else 0


def _release(pointers: set[int]) -> None:
    """Give a failed call's allocations back to the pool (it returns no result that
    could own them)."""
    for ptr in pointers:
        _LIVE.pop(ptr, None)


def _on_device(kernels: _Kernels) -> Callable[[Callable[..., tuple]], Callable[..., tuple]]:
    """The per-call set-up of a ``cuda`` entry callable (``CompiledModule.wrap_entry``):
    make the arrays' device current (a fresh thread has no context), load the kernels
    there on the first call, run on CuPy's current stream, and re-raise an allocation
    failure of the host program (CuPy's ``OutOfMemoryError``) after freeing what the
    call had allocated."""

    def wrap(entry: Callable[..., tuple]) -> Callable[..., tuple]:
        def call_on_device(*values: Any) -> tuple:
            cupy = import_cupy()
            device = _device_of_views(values)
            if device is None:
                device = kernels.device if kernels.device is not None else _current_device(cupy)
            with _use_device(cupy, device):
                _make_context_current(cupy, device)
                if kernels.device is None:
                    kernels.load(device)
                elif kernels.device != device:
                    raise UnsupportedError(
                        f"isozyme cuda: this compiled function runs on device "
                        f"{kernels.device}, not on device {device}"
                    )
                state = _CALL
                saved = (state.stream, state.allocations, state.error)
                state.stream = _current_stream(cupy)
                state.allocations, state.error = set(), None
                try:
                    return entry(*values)
                except BaseException:
                    error = state.error
                    _release(state.allocations)
                    if error is not None:
                        raise error  # noqa: B904 (the check's error is its context)
                    raise
                finally:
                    state.stream, state.allocations, state.error = saved

        return call_on_device

    return wrap


def load_cuda_artefact(artefact) -> CompiledModule:  # noqa: ANN001 (GpuArtefact)
    """Compile a ``cuda`` artefact's host program, bound to a kernel table filled on
    its first call (the kernels compiled by CuPy for that call's device). Entry points
    take device arrays (as metadata views) and return CuPy arrays."""
    import_cupy()
    symbols = _driver_symbols()
    kernels = _Kernels(artefact)
    symbols[KERNEL_TABLE] = ctypes.addressof(kernels.table)
    symbols[LAUNCH_STREAM_SYMBOL] = _address(_launch_stream)
    compiled = compile_llvm_module(artefact.host, symbols)
    compiled.extras = (kernels,)
    compiled.wrap_entry = _on_device(kernels)
    compiled.result_owner = _DeviceBlock
    compiled.result_array = _to_cupy
    return compiled
