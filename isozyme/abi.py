"""The binary interface between compiled code and the runtime.

Both sides import these names: the compiler's lowering passes produce code that follows
them, the runtime's executors (``runtime/jit.py``, ``runtime/cuda_emu.py``,
``runtime/cuda.py``) call and link that code by them. Nothing here imports the
compiler or the runtime (plain constants and arithmetic only).

Memrefs cross every boundary (C entry points, kernel parameters) as MLIR's descriptor
struct ``{T *allocated, T *aligned, int64 offset, int64 sizes[r], int64 strides[r]}``
(rank 0: ``{allocated, aligned, offset}``); offset and strides count elements.
"""

from __future__ import annotations

#: The fields of a memref descriptor, in order (``sizes``/``strides``: ``r`` words each).
DESCRIPTOR_FIELDS: tuple[str, ...] = ("allocated", "aligned", "offset", "sizes", "strides")

#: Prefix of the internal helper functions and globals the lowering generates.
HELPER_PREFIX = "__iz_"

#: Prefix of the C-ABI entry points: ``_iz_entry_<f>(void *in, void *out)`` runs the
#: public function ``f`` (``docs/ir.md``, ``llvm`` stage).
ENTRY_PREFIX = "_iz_entry_"

#: The host program's table of kernel handles: an external global ``ptr[K]`` (kernel
#: ``i`` is the ``i``-th ``gpu.func`` of the ``gpu.module``) that the runtime defines
#: (a buffer of its own holding the handles, bound to the name when the host program
#: is JIT-compiled; the name is made unique per module).
KERNEL_TABLE = HELPER_PREFIX + "kernel_table"

#: The launch function of each GPU target, with ``cuLaunchKernel``'s signature
#: ``int (void *f, unsigned gx, gy, gz, bx, by, bz, unsigned shmem, void *stream,
#: void **params, void **extra)``.
CUDA_LAUNCH_SYMBOL = "cuLaunchKernel"
EMU_LAUNCH_SYMBOL = "iz_emu_launch"

#: Device memory of the ``cuda`` target's host program: ``void *iz_device_alloc(int64
#: bytes)`` and ``void iz_device_free(void *)`` (``memref.alloc``/``dealloc``).
DEVICE_ALLOC_SYMBOL = "iz_device_alloc"
DEVICE_FREE_SYMBOL = "iz_device_free"

#: Host reads and writes of device memory in the ``cuda`` target's host program:
#: ``int cuMemcpy(void *dst, void *src, size_t bytes)`` (the driver's, unified
#: addressing; on the legacy default stream, so after the launches before it).
DEVICE_COPY_SYMBOL = "cuMemcpy"

#: Prefix of cuda-emu's per-kernel trampolines ``iz_emu_<kernel>(gx, gy, gz, bx, by,
#: bz, void **params)``.
EMU_TRAMPOLINE_PREFIX = "iz_emu_"


def descriptor_words(rank: int) -> int:
    """The number of 8-byte words of a rank-``rank`` memref descriptor."""
    return 3 + 2 * rank


def entry_symbol(func_name: str) -> str:
    """The C entry point of public function ``func_name``."""
    return ENTRY_PREFIX + func_name
