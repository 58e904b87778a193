"""Fixtures for the whole test suite.

Every CUDA C translation unit a GPU target compiles during any test (``cuda-emu``
calls, ``cuda`` host programs run with driver stand-ins) also goes through
``nvcc -ptx -arch=sm_90`` when ``nvcc`` is installed: see ``tests/runtime/conftest.py``;
and every ``cuda-emu`` launch runs under the emulator's race checker
(``ISOZYME_EMU_RACECHECK=1``, ``docs/gpu.md``).
"""

import os

# Every cuda-emu kernel of the suite runs under the race checker (before any kernels'
# library is built): a data race in generated code fails the test that launched it.
os.environ.setdefault("ISOZYME_EMU_RACECHECK", "1")
# Every compilation of the suite checks, after each IR stage, that no op uses a buffer
# after its memref.dealloc (compiler/passes/verify_buffer_lifetimes.py).
os.environ.setdefault("ISOZYME_VERIFY", "1")

from tests.runtime.conftest import cuda_c_compiles_with_nvcc, nvcc_ptx  # noqa: E402, F401
