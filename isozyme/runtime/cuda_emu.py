"""The ``cuda-emu`` executor: the kernels' emulation source compiled by the host C++
compiler, the host program JIT-compiled by :mod:`isozyme.runtime.jit`.

1. The emulation source (``GpuArtefact.source``: the CUDA C of the kernels behind a
   header that emulates CUDA's built-ins, a trampoline ``iz_emu_<kernel>`` per kernel
   and ``iz_emu_launch`` with ``cuLaunchKernel``'s signature) is compiled with
   ``g++ -O2 -shared -fPIC -std=c++17`` (``$CXX`` overrides the compiler) into a
   shared library in a cache directory, named by the hash of the source and the
   command (``$ISOZYME_CACHE_DIR/cuda-emu``, default ``~/.cache/isozyme/cuda-emu``),
   written atomically (a temporary file, then ``os.replace``), and loaded with ctypes.
2. The host program's ``iz_emu_launch`` (the library's) and its kernel table (the
   trampolines' addresses, in the artefact's kernel order) are bound to it when it is
   JIT-compiled (per module names, ``llvmlite.binding.add_symbol``). A failed launch
   stops the call through the run-time check machinery (a per-call status record) and
   raises :class:`~isozyme.runtime.cuda_errors.CudaError`.

The host program then runs exactly as a CPU function: the same entry points and
marshalling, numpy arrays in and out (host memory).

With ``ISOZYME_EMU_RACECHECK=1`` (read when a kernels' library is loaded) the library
is built with the race checker (``-DIZ_EMU_RACECHECK``, a separate cached file): a
launch with a data race makes the call raise :class:`DataRaceError` with the report of
the first race (the kernel, the two threads, the element's offset).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isozyme.abi import (
    EMU_LAUNCH_SYMBOL,
    EMU_TRAMPOLINE_PREFIX,
    KERNEL_TABLE,
)
from isozyme.compiler.gpu.cuda_emu_source import RACECHECK_FLAG, racecheck_enabled
from isozyme.errors import CompileError, DataRaceError, UnsupportedError  # noqa: F401 (DataRaceError re-exported)
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
    flags = (*CXX_FLAGS, RACECHECK_FLAG) if racecheck_enabled() else CXX_FLAGS
    key = hashlib.sha256(
        "\0".join((cxx, *flags, source)).encode()
    ).hexdigest()[:32]
    directory = cache_dir()
    target = directory / f"iz_emu_{key}.so"
    with _LOCK:
        lib = _LOADED.get(str(target))
        if lib is not None:
            return lib
        if not target.exists():
            directory.mkdir(parents=True, exist_ok=True)
            _build(cxx, flags, source, directory, target)
        lib = _LOADED[str(target)] = ctypes.CDLL(str(target))
        return lib


def _build(cxx: str, flags: tuple[str, ...], source: str, directory: Path,
           target: Path) -> None:
    """Compile ``source`` into ``target`` atomically (a concurrent build of the same
    source by another process writes the same bytes)."""
    fd, tmp_so = tempfile.mkstemp(prefix=".iz_emu_", suffix=".so", dir=directory)
    os.close(fd)
    try:
        done = subprocess.run(
            [cxx, *flags, "-o", tmp_so, "-"],
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
    symbols = {KERNEL_TABLE: ctypes.addressof(table)}
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
    compiled.extras = (lib, table)
    if lib is not None:
        _report_races(compiled, lib)
    return compiled


def take_race_report(lib: ctypes.CDLL) -> str | None:
    """The first data race the library's checker found on this thread since the last
    call (and forget it); None when there is none or the library has no checker."""
    try:
        report = lib.iz_emu_race_report
    except AttributeError:  # a hand-written emulation source
        return None
    buf = ctypes.create_string_buffer(1024)
    if not report(buf, ctypes.c_int(len(buf))):
        return None
    return buf.value.decode(errors="replace")


def _report_races(compiled: CompiledModule, lib: ctypes.CDLL) -> None:
    """Make ``compiled``'s entry callables raise :class:`DataRaceError` after a call
    during which a launch had a data race (``CompiledModule.wrap_entry``; the launch's
    status also stops the call: the race is the cause reported)."""

    def wrap(call: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
        def checked(*values: Any) -> tuple[Any, ...]:
            take_race_report(lib)  # a report left by a call that did not read it
            try:
                out = call(*values)
            except Exception as failure:
                race = take_race_report(lib)
                if race is None:
                    raise
                raise DataRaceError(f"isozyme cuda-emu: {race}") from failure
            race = take_race_report(lib)
            if race is not None:
                raise DataRaceError(f"isozyme cuda-emu: {race}")
            return out

        checked._iz_keepalive = call  # type: ignore[attr-defined]
        return checked

    compiled.wrap_entry = wrap
