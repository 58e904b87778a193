"""Fixtures of the runtime tests.

``cuda_c_compiles_with_nvcc`` (autouse): every CUDA C translation unit that a GPU
target (``cuda``, ``cuda-emu``) compiles during a test of this directory (the ``cuda``
stage: ``print_cuda`` of the ``gpu.module``, handed to the target's ``kernel_source``)
is also compiled with ``nvcc -ptx -arch=sm_90 -x cu``, right when the target compiles
it, so a source that ``nvcc`` refuses fails the test that produced it, with
``nvcc``'s messages. Skipped (no check) where ``nvcc`` is not on PATH.

Each distinct source is compiled once per process (by its hash); a success is also
recorded on disk (``$ISOZYME_CACHE_DIR/nvcc-ptx``, default ``~/.cache/isozyme/nvcc-ptx``,
keyed by the hash of ``nvcc --version``, the flags and the source), so later runs pay
only for new sources. Failures are never cached.

Other test directories can use the check with
``from tests.runtime.conftest import cuda_c_compiles_with_nvcc, nvcc_ptx  # noqa: F401``
in their ``conftest.py``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The ``nvcc`` command line of the check (input and output appended).
NVCC_FLAGS: tuple[str, ...] = ("-ptx", "-arch=sm_90", "-x", "cu")

#: The kernels of a translation unit, as ``print_cuda`` declares them.
_KERNEL_DECL = re.compile(r'extern "C" __global__ void (\w+)\(')


class NvccPtxCheck:
    """Compiles CUDA C translation units with ``nvcc -ptx -arch=sm_90 -x cu``, once
    per distinct source; :meth:`check` fails the running test on an error."""

    def __init__(self, nvcc: str, cache_dir: Path) -> None:
        self.nvcc = nvcc
        self.cache_dir = cache_dir
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True,
                                 check=False).stdout
        self._salt = "\0".join((nvcc, version, *NVCC_FLAGS))
        #: hash -> None (compiled) or nvcc's message (failed), this process
        self.results: dict[str, str | None] = {}
        #: sources actually handed to nvcc in this process (not found in a cache)
        self.compiled = 0
        self._lock = threading.Lock()

    def key(self, source: str) -> str:
        """The cache key of ``source``: hash of the nvcc version, flags and text."""
        return hashlib.sha256(f"{self._salt}\0{source}".encode()).hexdigest()[:32]

    def error(self, source: str) -> str | None:
        """``nvcc``'s message for ``source``, or None when it compiles to PTX with an
        ``.entry`` for every kernel the source declares."""
        key = self.key(source)
        with self._lock:
            if key in self.results:
                return self.results[key]
            marker = self.cache_dir / f"{key}.ok"
            if marker.exists():
                self.results[key] = None
                return None
            message = self._compile(source)
            self.results[key] = message
            if message is None:
                try:  # the disk cache is an optimisation: a read-only home is fine
                    self.cache_dir.mkdir(parents=True, exist_ok=True)
                    marker.touch()
                except OSError:
                    pass
            return message

    def _compile(self, source: str) -> str | None:
        """Run nvcc on ``source`` in a temporary directory; its message on failure
        (the source is kept next to it for a look)."""
        self.compiled += 1
        with tempfile.TemporaryDirectory(prefix="iz_nvcc_") as tmp:
            cu, ptx = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.ptx"
            cu.write_text(source)
            done = subprocess.run([self.nvcc, *NVCC_FLAGS, str(cu), "-o", str(ptx)],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                text = ptx.read_text()
                missing = [k for k in _KERNEL_DECL.findall(source)
                           if not re.search(rf"\.entry\s+{k}\s*\(", text)]
                if not missing:
                    return None
                problem = f"the PTX has no .entry for {', '.join(missing)}"
            else:
                problem = f"status {done.returncode}:\n{(done.stderr + done.stdout)[-6000:]}"
        kept = Path(tempfile.mkstemp(prefix="iz_nvcc_failed_", suffix=".cu")[1])
        kept.write_text(source)
        return (f"nvcc {' '.join(NVCC_FLAGS)} failed on the CUDA C of the kernels "
                f"{', '.join(_KERNEL_DECL.findall(source)) or '(none declared)'} "
                f"(source kept in {kept}): {problem}")

    def check(self, source: str) -> None:
        """Fail the running test when ``nvcc`` rejects ``source``."""
        message = self.error(source)
        if message is not None:
            pytest.fail(message)


def _cache_dir() -> Path:
    root = os.environ.get("ISOZYME_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "isozyme") / "nvcc-ptx"


@pytest.fixture(scope="session")
def nvcc_ptx() -> NvccPtxCheck | None:
    """The session's nvcc check; None where ``nvcc`` is not on PATH. (The cache
    directory is read once, before tests point ``ISOZYME_CACHE_DIR`` elsewhere.)"""
    nvcc = shutil.which("nvcc")
    return None if nvcc is None else NvccPtxCheck(nvcc, _cache_dir())


@pytest.fixture(autouse=True)
def cuda_c_compiles_with_nvcc(
    nvcc_ptx: NvccPtxCheck | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[str]]:
    """Check every CUDA C translation unit the GPU targets compile during the test
    with ``nvcc`` (see the module docstring); yields the list of those sources (with
    at least one kernel), in order. Without ``nvcc`` the sources are still listed."""
    from isozyme.compiler.targets.cuda import CudaTarget  # noqa: PLC0415
    from isozyme.compiler.targets.cuda_emu import CudaEmuTarget  # noqa: PLC0415

    seen: list[str] = []
    for cls in (CudaTarget, CudaEmuTarget):
        original = cls.__dict__["kernel_source"]

        def kernel_source(self, module, kernels, cuda, _original=original):  # noqa: ANN001, ANN202
            if kernels is not None:
                seen.append(cuda)
                if nvcc_ptx is not None:
                    nvcc_ptx.check(cuda)
            return _original(self, module, kernels, cuda)

        monkeypatch.setattr(cls, "kernel_source", kernel_source)
    yield seen


@pytest.fixture
def emu_cache(tmp_path, monkeypatch):
    """A private library cache directory."""
    monkeypatch.setenv("ISOZYME_CACHE_DIR", str(tmp_path))
    return tmp_path / "cuda-emu"


@pytest.fixture
def no_checks():
    """Bounds checks off for the test (the kernels then carry no status buffer)."""
    import isozyme as iz

    old = iz.config(boundscheck=False)
    yield
    iz.config(**old)


@pytest.fixture
def cuda_on_the_cpu(emu_cache, monkeypatch):
    """The cuda target's host program run on the CPU (``cuda_stand_ins.py``); returns
    the stand-ins' library (its ``copies`` counter, ``last_stream``)."""
    from tests.runtime.cuda_stand_ins import cuda_on_the_cpu_fixture

    return cuda_on_the_cpu_fixture(emu_cache, monkeypatch)
