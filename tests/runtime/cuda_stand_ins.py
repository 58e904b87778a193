"""Stand-ins that run the ``cuda`` target's host program on the CPU: its kernels built
as cuda-emu's, the driver's ``cuLaunchKernel``/``cuMemcpy`` as host functions, and a
fake CuPy whose "device" memory is host memory (the runtime's allocator callbacks are
the real ones). Used by the fixture ``cuda_on_the_cpu`` of ``tests/runtime/conftest.py``.
"""

from __future__ import annotations

import ctypes
import sys
import types

import numpy as np

from isozyme.runtime.cuda_emu import compile_emu_library

class HostBackedDeviceArray:
    """A "device" array whose device pointer is host memory (a numpy array's): what
    the cuda target sees of a CuPy array."""

    def __init__(self, a: np.ndarray) -> None:
        self.host = a
        self.shape = a.shape
        self.__cuda_array_interface__ = {
            "shape": a.shape, "typestr": a.dtype.str, "version": 3,
            "data": (a.__array_interface__["data"][0], False), "strides": a.strides,
        }


_STAND_INS = r"""
#include <cstring>
#include <cstdlib>
#include <cstdint>
typedef void (*tramp)(unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void**);
extern "C" void* last_stream = 0;
extern "C" int launch(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                      unsigned by, unsigned bz, unsigned shmem, void* stream,
                      void** params, void** extra) {
  last_stream = stream;
  ((tramp)f)(gx, gy, gz, bx, by, bz, params);
  return 0;
}
extern "C" int copies = 0;
extern "C" int copy(void* dst, void* src, int64_t n) { std::memcpy(dst, src, n); ++copies; return 0; }
"""


def cuda_on_the_cpu_fixture(emu_cache, monkeypatch):
    """The cuda target, with its kernels compiled as cuda-emu's, the driver's
    functions (cuLaunchKernel, cuMemcpy) as host stand-ins and a fake CuPy whose
    "device" memory is host memory (the runtime's allocator callbacks are real)."""
    from isozyme.abi import (
        CUDA_LAUNCH_SYMBOL, DEVICE_ALLOC_SYMBOL, DEVICE_COPY_SYMBOL, DEVICE_FREE_SYMBOL,
        EMU_TRAMPOLINE_PREFIX,
    )
    from isozyme.compiler.targets.cuda import CudaTarget
    from isozyme.compiler.targets.cuda_emu import CudaEmuTarget
    from isozyme.runtime import cuda

    lib = compile_emu_library(_STAND_INS)

    def addr(name: str) -> int:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value

    monkeypatch.setattr(CudaTarget, "kernel_source", CudaEmuTarget.kernel_source)

    class Kernels:
        def __init__(self, source: str) -> None:
            self.lib = compile_emu_library(source)

        def get_function(self, name: str):
            # as CuPy 14: a RawKernel whose .kernel is the Function holding the
            # CUfunction (CuPy 13 returned that Function itself)
            fn = getattr(self.lib, EMU_TRAMPOLINE_PREFIX + name)
            function = type("Function", (), {"ptr": ctypes.cast(fn, ctypes.c_void_p).value})()
            return type("RawKernel", (), {"kernel": function})()

    def callback(f) -> int:
        return ctypes.cast(f, ctypes.c_void_p).value

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    FakeStats.allocated = FakeStats.freed = 0
    FakeStats.devices = []
    FakeStats.fail_after = None
    monkeypatch.setattr(cuda, "kernel_module", Kernels)
    monkeypatch.setattr(cuda, "_driver_symbols", lambda: {
        CUDA_LAUNCH_SYMBOL: addr("launch"), DEVICE_COPY_SYMBOL: addr("copy"),
        # the runtime's own allocator callbacks, over the fake CuPy's "device" memory
        DEVICE_ALLOC_SYMBOL: callback(cuda._device_alloc),
        DEVICE_FREE_SYMBOL: callback(cuda._device_free),
    })
    return lib


def fake_cupy() -> types.ModuleType:
    """What runtime/cuda.py uses of CuPy, over host memory: ``cuda.alloc`` (pool
    allocations), ``cuda.UnownedMemory``/``MemoryPointer``, ``ndarray``, ``empty``."""
    cp = types.ModuleType("cupy")

    class Allocation:
        def __init__(self, n: int) -> None:
            fail = FakeStats.fail_after
            if fail is not None and FakeStats.allocated >= fail:
                raise FakeOutOfMemoryError(f"out of memory allocating {n} bytes")
            self.buffer = np.empty(n, np.uint8)
            self.ptr = self.buffer.__array_interface__["data"][0]
            FakeStats.allocated += 1

        def __del__(self) -> None:
            if hasattr(self, "buffer"):  # not a failed allocation
                FakeStats.freed += 1

    class UnownedMemory:
        def __init__(self, ptr: int, size: int, owner: object) -> None:
            self.ptr, self.size, self.owner = ptr, size, owner

    class MemoryPointer:
        def __init__(self, mem: UnownedMemory, offset: int) -> None:
            self.mem, self.ptr = mem, mem.ptr + offset

    class NDArray:
        def __init__(self, shape, dtype, memptr=None, strides=None) -> None:
            self.memptr = memptr
            self.__array_interface__ = {
                "shape": shape, "typestr": np.dtype(dtype).str, "version": 3,
                "data": (memptr.ptr, False), "strides": strides,
            }

    class Device:
        def __init__(self, ident: int = 0) -> None:
            self.id = ident

        def __enter__(self) -> "Device":
            FakeStats.devices.append(self.id)
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    class Stream:
        ptr = 0  # the legacy default stream, as CuPy's default stream

    cp.cuda = types.SimpleNamespace(
        alloc=Allocation, UnownedMemory=UnownedMemory, MemoryPointer=MemoryPointer,
        Device=Device, get_current_stream=lambda: FakeStats.stream,
        get_device_id=lambda: 0)
    FakeStats.stream = Stream()
    cp.ndarray = NDArray
    cp.empty = np.empty
    cp.asarray = lambda a: HostBackedDeviceArray(np.array(a))  # a copy, as to the device
    return cp


class FakeOutOfMemoryError(MemoryError):
    """What CuPy's pool raises (cupy.cuda.memory.OutOfMemoryError is a MemoryError)."""


class FakeStats:
    allocated = 0
    freed = 0
    devices: list[int] = []  # the devices made current, per call
    fail_after: int | None = None  # allocations that succeed before the pool fails
    stream: object = None  # what cupy.cuda.get_current_stream() returns
