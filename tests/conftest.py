"""Fixtures for the whole test suite.

Every CUDA C translation unit a GPU target compiles during any test (``cuda-emu``
calls, ``cuda`` host programs run with driver stand-ins) also goes through
``nvcc -ptx -arch=sm_90`` when ``nvcc`` is installed: see ``tests/runtime/conftest.py``;
and every ``cuda-emu`` launch runs under the emulator's race checker
(``ISOZYME_EMU_RACECHECK=1``, ``docs/gpu.md``).  The disk cache of compiled CPU code
(``ISOZYME_CACHE_DIR``) is a fresh directory per session.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Every cuda-emu kernel of the suite runs under the race checker (before any kernels'
# library is built): a data race in generated code fails the test that launched it.
os.environ.setdefault("ISOZYME_EMU_RACECHECK", "1")
# Every compilation of the suite checks, after each IR stage, that no op uses a buffer
# after its memref.dealloc (compiler/passes/verify_buffer_lifetimes.py).
os.environ.setdefault("ISOZYME_VERIFY", "1")


def _session_cache_dir() -> str:
    """A fresh ISOZYME_CACHE_DIR for this test session (removed at exit), so no test
    loads CPU code a previous session or the user's own runs stored on disk; the
    cuda-emu libraries, which take seconds of g++ each, stay in the usual cache
    (linked in)."""
    usual = os.environ.get("ISOZYME_CACHE_DIR") or str(Path.home() / ".cache" / "isozyme")
    root = tempfile.mkdtemp(prefix="isozyme-test-cache-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    emu = Path(usual) / "cuda-emu"
    try:
        emu.mkdir(parents=True, exist_ok=True)
        os.symlink(emu, Path(root) / "cuda-emu")
    except OSError:
        pass  # not writable: the emulator's libraries are built in the session's dir
    return root


os.environ["ISOZYME_CACHE_DIR"] = _session_cache_dir()

from tests.runtime.conftest import cuda_c_compiles_with_nvcc, nvcc_ptx  # noqa: E402, F401
