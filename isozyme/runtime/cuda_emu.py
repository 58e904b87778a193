"""The ``cuda-emu`` executor: the kernels' emulation source compiled by the host C++
compiler, the host program JIT-compiled by :mod:`isozyme.runtime.jit`.

1. The emulation source (``GpuArtefact.source``: the CUDA C of the kernels behind a
   header that emulates CUDA's built-ins, a trampoline ``iz_emu_<kernel>`` per kernel
   and ``iz_emu_launch`` with ``cuLaunchKernel``'s signature) is compiled with
   ``g++ -O2 -shared -fPIC -std=c++17`` (``$CXX`` overrides the compiler) into a
   shared library in a cache directory, named by the hash of the source and the
   command (``$ISOZYME_CACHE_DIR/cuda-emu``, default ``~/.cache/isozyme/cuda-emu``),
   written atomically (a temporary file, then ``os.replace``), and loaded with ctypes.
2. The host program's ``iz_emu_launch`` (the library's), its kernel table (the
   trampolines' addresses, in the artefact's kernel order) and its launch status (a
   buffer of this module) are bound to it when it is JIT-compiled (per module names,
   ``llvmlite.binding.add_symbol``).

The host program then runs exactly as a CPU function: the same entry points and
marshalling, numpy arrays in and out (host memory).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from isozyme.abi import (
    EMU_LAUNCH_SYMBOL,
    EMU_TRAMPOLINE_PREFIX,
    KERNEL_TABLE,
    LAUNCH_STATUS,
)
from isozyme.errors import CompileError, UnsupportedError
from isozyme.runtime.jit import CompiledModule, compile_llvm_module

#: The flags of every emulation build (part of the cache key).
CXX_FLAGS: tuple[str, ...] = ("-O2", "-shared", "-fPIC", "-x", "c++", "-std=c++17")

#: Libraries loaded in this process, by path (a library is loaded once).
_LOADED: dict[str, ctypes.CDLL] = {}
_LOCK = threading.Lock()


def cache_dir() -> Path:
    """Where compiled emulation libraries are kept."""
    root = os.environ.get("ISOZYME_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "isozyme"
    return base / "cuda-emu"


def _compiler() -> str:
    """The host C++ compiler's path; :class:`UnsupportedError` when there is none."""
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise UnsupportedError(
            f"the cuda-emu target compiles its kernels with the host C++ compiler, and "
            f"{name!r} is not on PATH: install g++ (or set CXX), or use the cpu target"
        )
    return path


def compile_emu_library(source: str) -> ctypes.CDLL:
    """The loaded shared library of an emulation source (compiled once per source and
    compiler command; later processes reuse the cached file)."""
    cxx = _compiler()
    key = hashlib.sha256(
        "\0".join((cxx, *CXX_FLAGS, source)).encode()
    ).hexdigest()[:32]
    directory = cache_dir()
    target = directory / f"iz_emu_{key}.so"
    with _LOCK:
        lib = _LOADED.get(str(target))
        if lib is not None:
            return lib
        if not target.exists():
            directory.mkdir(parents=True, exist_ok=True)
            _build(cxx, source, directory, target)
        lib = _LOADED[str(target)] = ctypes.CDLL(str(target))
        return lib


def _build(cxx: str, source: str, directory: Path, target: Path) -> None:
    """Compile ``source`` into ``target`` atomically (a concurrent build of the same
    source by another process writes the same bytes)."""
    fd, tmp_so = tempfile.mkstemp(prefix=".iz_emu_", suffix=".so", dir=directory)
    os.close(fd)
    try:
        done = subprocess.run(
            [cxx, *CXX_FLAGS, "-o", tmp_so, "-"],
            input=source, capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise CompileError(
                "isozyme cuda-emu: the host C++ compiler failed on the kernels' "
                f"emulation source ({cxx}, status {done.returncode}):\n"
                + done.stderr[-4000:]
            )
        os.replace(tmp_so, target)
    finally:
        if os.path.exists(tmp_so):
            os.unlink(tmp_so)


def load_emu_artefact(artefact) -> CompiledModule:  # noqa: ANN001 (GpuArtefact)
    """Compile a ``cuda-emu`` artefact: the kernels' library, then the host program
    bound to it. Entry points run like CPU ones (numpy arrays)."""
    kernels = artefact.kernels
    table = (ctypes.c_void_p * max(len(kernels), 1))()
    status = ctypes.c_int32(0)
    symbols = {KERNEL_TABLE: ctypes.addressof(table), LAUNCH_STATUS: ctypes.addressof(status)}
    lib = None
    if kernels:
        lib = compile_emu_library(artefact.source)
        for i, name in enumerate(kernels):
            table[i] = ctypes.cast(
                getattr(lib, EMU_TRAMPOLINE_PREFIX + name), ctypes.c_void_p
            ).value
        # this module's launch function is its own library's
        symbols[EMU_LAUNCH_SYMBOL] = ctypes.cast(
            getattr(lib, EMU_LAUNCH_SYMBOL), ctypes.c_void_p
        ).value
    compiled = compile_llvm_module(artefact.host, symbols)
    compiled.launch_status = status
    compiled.extras = (lib, table, status)
    return compiled
