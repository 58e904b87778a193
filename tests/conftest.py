"""Fixtures for the whole test suite.

Every CUDA C translation unit a GPU target compiles during any test (``cuda-emu``
calls, ``cuda`` host programs run with driver stand-ins) also goes through
``nvcc -ptx -arch=sm_90`` when ``nvcc`` is installed: see ``tests/runtime/conftest.py``.
"""

from tests.runtime.conftest import cuda_c_compiles_with_nvcc, nvcc_ptx  # noqa: F401
