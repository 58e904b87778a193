"""``cuda-emu``'s race checker (``ISOZYME_EMU_RACECHECK=1``, ``-DIZ_EMU_RACECHECK``).

Kernels outlined from hand-written loops are printed (plain loads and stores of the
kernel's memref parameters and their views go through ``IZ_LOAD``/``IZ_STORE``,
per-thread arrays do not), compiled with the checker and launched through
``iz_emu_launch``: a colliding plain store, a load of another thread's store and a
store to another thread's load are reported with the kernel, the threads and the
element's offset; a colliding ``atomicAdd`` scatter, a stencil gather, in-place updates
of one's own element and per-thread arrays are not.  Without the define the same racy
kernel runs as before.  Through the public API, a racy ``prange`` raises
:class:`~isozyme.runtime.cuda_emu.DataRaceError`.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import numpy as np
import pytest
from xdsl.dialects.builtin import MemRefType

import isozyme as iz
from isozyme import Const, Forward, prange
from isozyme.compiler.gpu.cuda_emu_source import (
    DATA_RACE_STATUS,
    GXX_FLAGS,
    RACECHECK_ENV,
    RACECHECK_FLAG,
    emu_source,
)
from isozyme.compiler.gpu.cuda_printer import print_cuda
from isozyme.runtime.cuda_emu import DataRaceError
from isozyme.errors import IsozymeError
from tests.compiler.test_cuda_emu_kernels import _SCALARS, _dtype, _Host, descriptor
from tests.compiler.test_cuda_printer import KERNELS, _alloc_kernel, outlined, ploop

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")


def _kernel(name: str, body: str, params: str = "%x: memref<?xf64>, %y: memref<?xf64>",
            lb: str = "%c0", ub: str = "%n") -> str:
    """``func.func @<name>(<params>, %n: index)``: one parallel loop of ``body`` over
    ``%i`` (constants ``%c0``, ``%c1``, ``%c2``, ``%c256`` defined outside)."""
    return f"""
func.func @{name}({params}, %n: index) {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c256 = arith.constant 256 : index
{ploop("%i", lb, ub, "%c1", body)}  return
}}
"""


#: y[0] = x[i]: every thread stores to one address.
COLLIDE = _kernel("collide", """    %v = memref.load %x[%i] : memref<?xf64>
    memref.store %v, %y[%c0] : memref<?xf64>""")

#: y[i mod 256] = x[i]: threads of different blocks store to one address.
COLLIDE_ACROSS_BLOCKS = _kernel("across", """    %v = memref.load %x[%i] : memref<?xf64>
    %k = arith.remui %i, %c256 : index
    memref.store %v, %y[%k] : memref<?xf64>""")

#: y[i] = x[i]; z[i] = y[i - 1]: a load of the element thread i - 1 stored.
READ_AFTER_WRITE = _kernel("raw", """    %v = memref.load %x[%i] : memref<?xf64>
    memref.store %v, %y[%i] : memref<?xf64>
    %im = arith.subi %i, %c1 : index
    %w = memref.load %y[%im] : memref<?xf64>
    memref.store %w, %x[%i] : memref<?xf64>""", lb="%c1")

#: y[i] = y[i + 1]: a store to the element thread i - 1 loaded.
WRITE_AFTER_READ = _kernel("war", """    %ip = arith.addi %i, %c1 : index
    %v = memref.load %y[%ip] : memref<?xf64>
    memref.store %v, %y[%i] : memref<?xf64>""")

#: y[i] = x[i - 1] + x[i] + x[i + 1] (reads of neighbours, a write of one's own).
GATHER_STENCIL = _kernel("gather3", """    %im = arith.subi %i, %c1 : index
    %ip = arith.addi %i, %c1 : index
    %a = memref.load %x[%im] : memref<?xf64>
    %b = memref.load %x[%i] : memref<?xf64>
    %c = memref.load %x[%ip] : memref<?xf64>
    %s = arith.addf %a, %b : f64
    %t = arith.addf %s, %c : f64
    memref.store %t, %y[%i] : memref<?xf64>""", lb="%c1")

#: x[i] = x[i] * x[i]; y[i] += 1 (each thread reads and writes its own elements).
IN_PLACE = _kernel("inplace", """    %v = memref.load %x[%i] : memref<?xf64>
    %w = arith.mulf %v, %v : f64
    memref.store %w, %x[%i] : memref<?xf64>
    %u = memref.load %y[%i] : memref<?xf64>
    %one = arith.constant 1.0 : f64
    %u1 = arith.addf %u, %one : f64
    memref.store %u1, %y[%i] : memref<?xf64>""")

#: v = y[2:] (a view made in the kernel); v[0] = x[i]: every thread, element 2 of y.
VIEW_COLLIDE = _kernel("viewc", """    %v = memref.load %x[%i] : memref<?xf64>
    %m = arith.subi %n, %c2 : index
    %w = memref.subview %y[2] [%m] [1] : memref<?xf64> to memref<?xf64, strided<[1], offset: 2>>
    memref.store %v, %w[%c0] : memref<?xf64, strided<[1], offset: 2>>""")

#: a per-thread alloca: every thread stores and loads its element 1, then y[i].
ALLOCA = _kernel("priv", """    %t = memref.alloca() : memref<2xf64>
    %v = memref.load %x[%i] : memref<?xf64>
    memref.store %v, %t[%c1] : memref<2xf64>
    %w = memref.load %t[%c1] : memref<2xf64>
    memref.store %w, %y[%i] : memref<?xf64>""")


class RaceEmu:
    """A ``cuda-emu`` library of one module's kernels, built with or without the race
    checker; :meth:`launch` keeps each launch's status and race report."""

    def __init__(self, source_module, tmp_path, racecheck: bool = True) -> None:
        src, lib = tmp_path / "emu.cpp", tmp_path / "emu.so"
        src.write_text(emu_source(source_module))
        flags = (*GXX_FLAGS, RACECHECK_FLAG) if racecheck else GXX_FLAGS
        out = subprocess.run(["g++", *flags, str(src), "-o", str(lib)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        self.lib = ctypes.CDLL(str(lib))
        self.lib.iz_emu_launch.restype = ctypes.c_int
        self.lib.iz_emu_launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        #: (status, report or None) of each launch
        self.results: list[tuple[int, str | None]] = []

    def launch(self, name: str, grid: int, block: int, args: list, types: list) -> None:
        keep = [descriptor(v) if isinstance(t, MemRefType) else _SCALARS[_dtype(t)](v)
                for v, t in zip(args, types)]
        params = (ctypes.c_void_p * max(len(keep), 1))(
            *[ctypes.addressof(k) for k in keep])
        f = ctypes.cast(getattr(self.lib, f"iz_emu_{name}"), ctypes.c_void_p)
        rc = self.lib.iz_emu_launch(f, grid, 1, 1, block, 1, 1, 0, None, params, None)
        buf = ctypes.create_string_buffer(1024)
        found = self.lib.iz_emu_race_report(buf, len(buf))
        self.results.append((rc, buf.value.decode() if found else None))


def run(source: str, func: str, args: list, tmp_path, racecheck: bool = True) -> RaceEmu:
    module = outlined(source)
    emu = RaceEmu(module, tmp_path, racecheck)
    _Host(module, emu).run(func, *args)  # type: ignore[arg-type]
    return emu


def _race(emu: RaceEmu) -> str:
    """The one launch's report (which must have failed with the race status)."""
    ((rc, report),) = emu.results
    assert rc == DATA_RACE_STATUS and report is not None
    return report


def _no_race(emu: RaceEmu) -> None:
    assert emu.results and all(r == (0, None) for r in emu.results), emu.results


# ---------------------------------------------------------------------------------------
# The CUDA C.

def _kernel_text(text: str) -> str:
    """The kernels of a translation unit (without its prologue)."""
    return text[text.index('extern "C" __global__'):]


def test_shared_accesses_go_through_the_macros_and_private_ones_do_not():
    text = print_cuda(outlined(ALLOCA))
    kernel = _kernel_text(text)
    assert re.search(r"= IZ_LOAD\(p0\.aligned, \w+\);", kernel)  # x[i]
    assert re.search(r"IZ_STORE\(p1\.aligned, \w+, \w+\);", kernel)  # y[i]
    # the per-thread array (a descriptor over buf) is accessed directly
    local = re.search(r"(v\d+) = \{buf\d+, buf\d+,", kernel).group(1)
    assert re.search(rf"\n\s*{local}\.aligned\[\w+\] = \w+;", kernel)
    assert re.search(rf"= {local}\.aligned\[\w+\];", kernel)
    assert kernel.count("IZ_STORE(") == 1 and kernel.count("IZ_LOAD(") == 1
    # the prologue makes them plain accesses for nvcc/NVRTC
    assert "#define IZ_LOAD(aligned, index) ((aligned)[index])" in text
    assert "#define IZ_STORE(aligned, index, value) ((aligned)[index] = (value))" in text
    # atomics are not wrapped
    scatter = print_cuda(outlined(KERNELS["scatter"].source))
    assert "atomicAdd(&p2.aligned[" in scatter


def test_views_made_in_the_kernel_are_checked():
    kernel = _kernel_text(print_cuda(outlined(VIEW_COLLIDE)))
    view = re.search(r"(v\d+) = \{p2\.allocated, p2\.aligned,", kernel).group(1)  # y
    assert re.search(rf"IZ_STORE\({view}\.aligned, \(2 \+ v\d+\), v\d+\);", kernel)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_nvcc_compiles_the_macros(tmp_path):
    from tests.compiler.test_cuda_printer import nvcc_ptx  # noqa: PLC0415

    nvcc_ptx(print_cuda(outlined(READ_AFTER_WRITE + ALLOCA)), tmp_path)


# ---------------------------------------------------------------------------------------
# Races reported.

def test_colliding_plain_store_is_reported(tmp_path):
    x, y = np.arange(100.0), np.zeros(1)
    emu = run(COLLIDE, "collide", [x, y, 100], tmp_path)
    assert _race(emu) == (
        "data race in kernel collide_k0: thread 1 of block 0 stores to the element at "
        "offset 0 of a kernel argument, which thread 0 of block 0 stored in the same "
        "launch")
    assert y[0] == 99.0  # the launch ran to its end, as without the checker


def test_the_checker_is_off_without_the_define(tmp_path):
    x, y = np.arange(100.0), np.zeros(1)
    emu = run(COLLIDE, "collide", [x, y, 100], tmp_path, racecheck=False)
    _no_race(emu)
    assert y[0] == 99.0


def test_collision_across_blocks_names_both_blocks(tmp_path):
    x, y = np.arange(512.0), np.zeros(256)
    report = _race(run(COLLIDE_ACROSS_BLOCKS, "across", [x, y, 512], tmp_path))
    m = re.fullmatch(r"data race in kernel across_k0: thread 0 of block (\d) stores to "
                     r"the element at offset 0 of a kernel argument, which thread 0 of "
                     r"block (\d) stored in the same launch", report)
    assert m and {m.group(1), m.group(2)} == {"0", "1"}


def test_load_of_another_threads_store_is_reported(tmp_path):
    x, y = np.arange(50.0), np.zeros(50)
    report = _race(run(READ_AFTER_WRITE, "raw", [x, y, 50], tmp_path))
    # thread 0 is i = 1 (the loop starts at 1): it stores y[1], thread 1 loads it
    assert report == (
        "data race in kernel raw_k0: thread 1 of block 0 loads the element at offset 1 "
        "of a kernel argument, which thread 0 of block 0 stored in the same launch")


def test_store_to_another_threads_load_is_reported(tmp_path):
    y = np.arange(51.0)
    report = _race(run(WRITE_AFTER_READ, "war", [np.zeros(1), y, 50], tmp_path))
    assert report == (
        "data race in kernel war_k0: thread 1 of block 0 stores to the element at "
        "offset 1 of a kernel argument, which thread 0 of block 0 loaded in the same "
        "launch")


def test_store_through_a_view_reports_the_offset_from_the_buffer(tmp_path):
    x, y = np.arange(10.0), np.zeros(10)
    report = _race(run(VIEW_COLLIDE, "viewc", [x, y, 10], tmp_path))
    assert "stores to the element at offset 2 of a kernel argument" in report
    assert y[2] == 9.0


def test_the_report_is_read_once_and_each_launch_starts_afresh(tmp_path):
    module = outlined(COLLIDE + IN_PLACE)
    emu = RaceEmu(module, tmp_path)
    host = _Host(module, emu)  # type: ignore[arg-type]
    host.run("collide", np.arange(10.0), np.zeros(1), 10)
    host.run("inplace", np.arange(10.0), np.zeros(10), 10)
    assert emu.results[0][0] == DATA_RACE_STATUS and emu.results[0][1]
    assert emu.results[1] == (0, None)  # read and forgotten; no race in launch 2
    buf = ctypes.create_string_buffer(64)
    assert emu.lib.iz_emu_race_report(buf, len(buf)) == 0


# ---------------------------------------------------------------------------------------
# No race.

def test_colliding_atomic_scatter_is_not_reported(tmp_path):
    n = 1000
    x = np.random.default_rng(3).normal(size=n).astype(np.float32)
    idx = np.arange(n, dtype=np.int64) % 5
    y = np.zeros(5, np.float32)
    emu = run(KERNELS["scatter"].source, "scatter", [x, idx, y, n], tmp_path)
    _no_race(emu)
    expected = np.zeros(5)
    np.add.at(expected, idx, x.astype(np.float64))
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def test_stencil_gather_is_not_reported(tmp_path):
    x, y = np.random.default_rng(4).normal(size=600), np.zeros(600)
    _no_race(run(GATHER_STENCIL, "gather3", [x, y, 599], tmp_path))
    np.testing.assert_array_equal(y[1:599], x[:598] + x[1:599] + x[2:600])


def test_2d_stencil_on_strided_views_is_not_reported(tmp_path):
    u = np.random.default_rng(5).normal(size=(40, 60))[::2, 1:]
    out = np.zeros((20, 59))
    _no_race(run(KERNELS["stencil"].source, "stencil", [u, out, 20, 59, 0.5], tmp_path))


def test_updates_of_ones_own_elements_are_not_reported(tmp_path):
    x, y = np.arange(300.0), np.zeros(300)
    _no_race(run(IN_PLACE, "inplace", [x, y, 300], tmp_path))
    np.testing.assert_array_equal(x, np.arange(300.0) ** 2)


def test_per_thread_alloca_is_not_reported(tmp_path):
    x, y = np.arange(300.0), np.zeros(300)
    _no_race(run(ALLOCA, "priv", [x, y, 300], tmp_path))
    np.testing.assert_array_equal(y, x)


def test_per_thread_alloc_of_constant_size_is_not_reported(tmp_path):
    source = _alloc_kernel("memref.alloc({size}) : memref<?x3xf64>")
    x, y = np.arange(300.0), np.zeros(300)
    _no_race(run(source, "local", [x, y, 300], tmp_path))
    np.testing.assert_array_equal(y, x * x)


def test_nested_loop_with_reduction_and_alloca_is_not_reported(tmp_path):
    a = np.random.default_rng(6).normal(size=(300, 7))
    y = np.zeros(300)
    _no_race(run(KERNELS["nested"].source, "nested", [a, y, 300, 7, 2.0], tmp_path))
    np.testing.assert_allclose(y, 2.0 * a.sum(axis=1), rtol=1e-13)


# ---------------------------------------------------------------------------------------
# Through the public API.

@pytest.fixture
def racecheck(monkeypatch, tmp_path):
    """The checker on, with a private library cache."""
    monkeypatch.setenv(RACECHECK_ENV, "1")
    monkeypatch.setenv("ISOZYME_CACHE_DIR", str(tmp_path))


def test_racy_prange_raises_data_race_error(racecheck):
    def last_wins(x, y):
        for i in prange(x.shape[0]):
            y[0] = x[i]

    with iz.target("cuda-emu"), pytest.raises(DataRaceError) as raised:
        iz.autodiff(Forward, last_wins, Const(np.arange(300.0)), Const(np.zeros(1)))
    assert isinstance(raised.value, IsozymeError)
    assert re.fullmatch(r"isozyme cuda-emu: data race in kernel \w+_k0: thread \d+ of "
                        r"block \d stores to the element at offset 0 of a kernel "
                        r"argument, which thread \d+ of block \d stored in the same "
                        r"launch", str(raised.value)), str(raised.value)


def test_race_free_prange_runs_with_the_checker(racecheck):
    def smooth(x, y):
        for i in prange(1, x.shape[0] - 1):
            y[i] = x[i - 1] + x[i] + x[i + 1]

    x, y = np.random.default_rng(8).normal(size=600), np.zeros(600)
    with iz.target("cuda-emu"):
        iz.autodiff(Forward, smooth, Const(x), Const(y))
    np.testing.assert_array_equal(y[1:-1], x[:-2] + x[1:-1] + x[2:])
