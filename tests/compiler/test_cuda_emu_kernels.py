"""``cuda-emu``: the kernels of ``test_cuda_printer.py`` compiled with ``g++`` behind the
emulation header, launched through ``iz_emu_launch`` with parameters built here, and
checked against numpy.

The host side of each test program (trip counts, grid size, reduction buffers, the
launch guard) is run by :class:`_Host`, a small interpreter of the ops the outlining
pass puts around a launch; kernel parameters are packed as ``cuLaunchKernel`` takes
them: an array of pointers, each to a memref descriptor (a ``ctypes.Structure`` over a
numpy array) or a scalar.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from xdsl.dialects import arith, func, gpu, memref, scf
from xdsl.dialects.builtin import (
    Float32Type,
    Float64Type,
    IndexType,
    IntegerType,
    MemRefType,
    ModuleOp,
)

from isozyme.compiler.gpu import BLOCK_SIZE
from isozyme.compiler.gpu.cuda_emu_source import (
    GXX_FLAGS,
    RACECHECK_FLAG,
    SEED_ENV,
    emu_source,
    racecheck_enabled,
)
from tests.compiler.test_cuda_printer import (
    CMPF_PREDICATES,
    FLOAT_CONSTANTS,
    INT_CONSTANTS,
    INT_OPS,
    KERNELS,
    MATH_FUNCS,
    REDUCE_KINDS,
    outlined,
)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")


# ---------------------------------------------------------------------------------------
# Building and launching.

def _dtype(t) -> np.dtype:
    if isinstance(t, Float64Type):
        return np.dtype(np.float64)
    if isinstance(t, Float32Type):
        return np.dtype(np.float32)
    if isinstance(t, IndexType):
        return np.dtype(np.int64)
    assert isinstance(t, IntegerType)
    return np.dtype({1: np.bool_, 32: np.int32, 64: np.int64}[t.width.data])


_SCALARS = {np.dtype(np.float64): ctypes.c_double, np.dtype(np.float32): ctypes.c_float,
            np.dtype(np.int64): ctypes.c_int64, np.dtype(np.int32): ctypes.c_int32,
            np.dtype(np.bool_): ctypes.c_bool}

_DESCRIPTORS: dict[int, type[ctypes.Structure]] = {}


def descriptor(a: np.ndarray) -> ctypes.Structure:
    """MLIR's memref descriptor of ``a``: pointers to the root allocation, offset and
    strides in elements (so a view has a non-zero offset)."""
    rank = a.ndim
    if rank not in _DESCRIPTORS:
        fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p),
                  ("offset", ctypes.c_int64)]
        if rank:
            fields += [("sizes", ctypes.c_int64 * rank), ("strides", ctypes.c_int64 * rank)]
        _DESCRIPTORS[rank] = type(f"Memref{rank}", (ctypes.Structure,), {"_fields_": fields})
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    item = a.itemsize
    d = _DESCRIPTORS[rank]()
    d.allocated = d.aligned = root.ctypes.data
    d.offset = (a.ctypes.data - root.ctypes.data) // item
    for k in range(rank):
        assert a.strides[k] % item == 0
        d.sizes[k] = a.shape[k]
        d.strides[k] = a.strides[k] // item
    return d


class Emu:
    """A compiled ``cuda-emu`` library of one module's kernels."""

    def __init__(self, module: ModuleOp, tmp_path) -> None:
        src = tmp_path / "emu.cpp"
        lib = tmp_path / "emu.so"
        src.write_text(emu_source(module))
        # ISOZYME_EMU_RACECHECK=1 runs these kernels under the race checker too
        flags = (*GXX_FLAGS, RACECHECK_FLAG) if racecheck_enabled() else GXX_FLAGS
        out = subprocess.run(["g++", *flags, str(src), "-o", str(lib)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        self.lib = ctypes.CDLL(str(lib))
        self.lib.iz_emu_launch.restype = ctypes.c_int
        self.lib.iz_emu_launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        self.launches = 0

    def launch(self, name: str, grid: int, block: int, args: list, types: list) -> None:
        keep = []
        for value, t in zip(args, types):
            if isinstance(t, MemRefType):
                keep.append(descriptor(value))
            else:
                keep.append(_SCALARS[_dtype(t)](value))
        params = (ctypes.c_void_p * max(len(keep), 1))(
            *[ctypes.addressof(k) for k in keep])
        f = ctypes.cast(getattr(self.lib, f"iz_emu_{name}"), ctypes.c_void_p)
        rc = self.lib.iz_emu_launch(f, grid, 1, 1, block, 1, 1, 0, None, params, None)
        if rc:
            report = ctypes.create_string_buffer(1024)
            self.lib.iz_emu_race_report(report, len(report))
            raise AssertionError(f"iz_emu_launch returned {rc}: {report.value.decode()}")
        self.launches += 1


class _Host:
    """Runs a host function of an outlined module: the ops the outlining pass emits
    around launches (index arithmetic, reduction buffers, the guard, the launch)."""

    def __init__(self, module: ModuleOp, emu: Emu) -> None:
        self.module = module
        self.emu = emu

    def run(self, name: str, *args):
        f = next(op for op in self.module.ops
                 if isinstance(op, func.FuncOp) and op.sym_name.data == name)
        env = dict(zip(f.body.block.args, args))
        return self.block(f.body.block, env)

    def block(self, block, env):
        for op in block.ops:
            v = [env[x] for x in op.operands]
            match op:
                case arith.ConstantOp():
                    env[op.result] = op.value.value.data
                case arith.SubiOp():
                    env[op.result] = v[0] - v[1]
                case arith.AddiOp():
                    env[op.result] = v[0] + v[1]
                case arith.MuliOp():
                    env[op.result] = v[0] * v[1]
                case arith.CeilDivSIOp():
                    env[op.result] = -((-v[0]) // v[1])
                case arith.MaxSIOp():
                    env[op.result] = max(v)
                case arith.MinSIOp():  # the grid of a grid-stride reduction kernel
                    env[op.result] = min(v)
                case arith.CmpiOp():
                    assert op.predicate.value.data == 4  # sgt
                    env[op.result] = v[0] > v[1]
                case arith.IndexCastOp():
                    env[op.result] = int(v[0])
                case memref.AllocOp():
                    t = op.memref.type
                    env[op.memref] = np.zeros(t.get_shape(), _dtype(t.element_type))
                case memref.StoreOp():
                    v[1][tuple(v[2:])] = v[0]
                case memref.LoadOp():
                    env[op.res] = v[0][tuple(v[1:])].item()
                case memref.DeallocOp():
                    pass
                case scf.IfOp():
                    if v[0]:
                        self.block(op.true_region.block, env)
                case gpu.LaunchFuncOp():
                    name = op.kernel.nested_references.data[0].data
                    operands = list(op.kernelOperands)
                    self.emu.launch(name, env[op.gridSizeX], env[op.blockSizeX],
                                    [env[x] for x in operands],
                                    [x.type for x in operands])
                case scf.YieldOp():
                    pass
                case func.ReturnOp():
                    return v[0] if len(v) == 1 else tuple(v)
                case _:
                    raise AssertionError(f"test host: {op.name}")
        return None


def program(name: str, tmp_path) -> _Host:
    module = outlined(KERNELS[name].source)
    return _Host(module, Emu(module, tmp_path))


RNG = np.random.default_rng(7)


# ---------------------------------------------------------------------------------------
# The kernels of test_cuda_printer.py against numpy.

def _erf(x):
    return np.vectorize(math.erf)(x.astype(np.float64))


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _math_expected(x, y):
    x10 = x * x.dtype.type(10)
    table = {
        "sin": np.sin(x), "cos": np.cos(x), "tan": np.tan(x), "arcsin": np.arcsin(x),
        "arccos": np.arccos(x), "arctan": np.arctan(x), "arctan2": np.arctan2(x, y),
        "sinh": np.sinh(x), "cosh": np.cosh(x), "tanh": np.tanh(x),
        "arcsinh": np.arcsinh(x), "arctanh": np.arctanh(x), "exp": np.exp(x),
        "exp2": np.exp2(x), "expm1": np.expm1(x), "log": np.log(x), "log2": np.log2(x),
        "log10": np.log10(x), "log1p": np.log1p(x), "sqrt": np.sqrt(x),
        "cbrt": np.cbrt(x), "power": np.power(x, y), "abs": np.abs(-x),
        "floor": np.floor(x10), "ceil": np.ceil(x10), "rint": np.rint(x10),
        "round": _round_half_away(x10), "trunc": np.trunc(x10),
        "copysign": np.copysign(-x, y), "erf": _erf(x), "rsqrt": 1 / np.sqrt(x),
        "fma": x * y + x,
    }
    return np.stack([np.asarray(table[np_name], np.float64)
                     for _, np_name, _ in MATH_FUNCS], axis=1)


@pytest.mark.parametrize("t, dtype, rtol", [("f64", np.float64, 1e-13),
                                             ("f32", np.float32, 2e-6)])
def test_math(t, dtype, rtol, tmp_path):
    host = program(f"math_{t}", tmp_path)
    n = 300  # two blocks, the second partly idle
    x = RNG.uniform(0.1, 0.9, n).astype(dtype)
    x[:3] = [0.25, 0.75, 0.45]  # 10x = 2.5, 7.5: round and roundeven differ
    y = RNG.uniform(0.1, 0.9, n).astype(dtype)
    y[:3] = -y[:3]  # copysign takes the sign of y
    out = np.full((n, len(MATH_FUNCS)), np.nan, dtype)
    host.run(f"math_{t}", x, y, out, n)
    expected = _math_expected(x, y)
    for k, (op, _, _) in enumerate(MATH_FUNCS):
        np.testing.assert_allclose(out[:, k], expected[:, k], rtol=rtol, atol=1e-6 * rtol,
                                   err_msg=op)
    # The rounding functions are exact.
    for k, (op, _, _) in enumerate(MATH_FUNCS):
        if op in ("math.floor", "math.ceil", "math.roundeven", "math.round", "math.trunc"):
            np.testing.assert_array_equal(out[:, k], expected[:, k].astype(dtype), op)


def test_gather(tmp_path):
    host = program("gather", tmp_path)
    x = RNG.normal(size=50)
    idx = RNG.integers(0, 50, size=700)
    y = np.zeros(700)
    host.run("gather", x, idx, y, 700)
    np.testing.assert_array_equal(y, x[idx])


def test_scatter_with_conflicting_indices(tmp_path, monkeypatch):
    host = program("scatter", tmp_path)
    n = 1000
    x = RNG.normal(size=n).astype(np.float32)
    idx = RNG.integers(0, 5, size=n)  # ~200 writers per element
    expected = np.zeros(5)
    np.add.at(expected, idx, x.astype(np.float64))
    for seed in ("1", "2"):
        monkeypatch.setenv(SEED_ENV, seed)
        y = np.zeros(5, np.float32)
        host.run("scatter", x, idx, y, n)
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_stencil_on_strided_views(tmp_path):
    host = program("stencil", tmp_path)
    n, m = 40, 30
    big = RNG.normal(size=(n + 3, 2 * m + 1))
    u = big[1:n + 1, ::2][:, :m]  # offset and non-unit strides
    out_big = np.zeros((n + 2, 2 * m))
    out = out_big[2:, ::2]
    assert u.shape == out.shape == (n, m)
    k = 0.1
    host.run("stencil", u, out, n, m, k)
    lap = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * u[1:-1, 1:-1]
    np.testing.assert_allclose(out[1:-1, 1:-1], u[1:-1, 1:-1] + k * lap, rtol=1e-14)
    # The boundary and everything outside the view are untouched.
    assert not out[0].any() and not out[-1].any()
    assert not out[:, 0].any() and not out[:, -1].any()
    assert not out_big[:2].any() and not out_big[:, 1::2].any()


def test_reductions(tmp_path):
    host = program("reductions", tmp_path)
    x = RNG.normal(size=1000)
    assert host.run("sumsq", x, 1000) == pytest.approx(np.sum(x * x), rel=1e-12)
    assert host.run("sumsq", x, 0) == 0.0  # no launch: the init value
    assert host.emu.launches == 1
    x32 = RNG.normal(size=777).astype(np.float32)
    assert host.run("maxf32", x32, 777) == np.max(x32)
    assert host.run("count", x, 1000) == int(np.sum(x > 0))
    assert host.run("argsum", 600) == sum(i * i for i in range(600))


def _reference_reduction(op: str, t: str, init, x: np.ndarray):
    """Python's fold of ``x`` from ``init`` (wrapping integers of width ``t``)."""
    w = 32 if t == "i32" else 64
    wrap = (lambda v: ((v + (1 << (w - 1))) % (1 << w)) - (1 << (w - 1)))
    unsigned = (lambda v: v % (1 << w))
    fold = {
        "arith.mulf": lambda a, b: a * b,
        "arith.minimumf": lambda a, b: a if math.isnan(a) or a < b else b,
        "arith.maxnumf": lambda a, b: a if math.isnan(b) else (b if math.isnan(a) else max(a, b)),
        "arith.minnumf": lambda a, b: a if math.isnan(b) else (b if math.isnan(a) else min(a, b)),
        "arith.muli": lambda a, b: wrap(a * b), "arith.maxsi": max, "arith.minsi": min,
        "arith.maxui": lambda a, b: a if unsigned(a) > unsigned(b) else b,
        "arith.minui": lambda a, b: a if unsigned(a) < unsigned(b) else b,
        "arith.ori": lambda a, b: a | b, "arith.andi": lambda a, b: a & b,
        "arith.xori": lambda a, b: a ^ b, "arith.addi": lambda a, b: wrap(a + b),
    }[op]
    acc = init
    for v in x.tolist():
        acc = fold(acc, v)
    return acc


def test_every_reduction_kind(tmp_path):
    """n = 300: the 212 idle threads of the second block contribute the identity."""
    host = program("reduce_kinds", tmp_path)
    n = 300
    for k, (op, t, init) in enumerate(REDUCE_KINDS):
        if t in ("f64", "f32"):
            dtype = np.float64 if t == "f64" else np.float32
            x = RNG.uniform(0.99, 1.01, n) if op == "arith.mulf" else RNG.normal(size=n)
            x = x.astype(dtype)
            if op in ("arith.maxnumf", "arith.minnumf"):
                x[::7] = np.nan  # ignored by maxnum/minnum
            start = float(np.array([int(init, 16)], np.uint64).view(np.float64)[0]) \
                if init.startswith("0x") else float(init)
        else:
            dtype = np.int32 if t == "i32" else np.int64
            x = RNG.integers(-50, 50, n) if op not in ("arith.muli",) else \
                RNG.choice([1, -1, 3], n)
            if op in ("arith.ori", "arith.andi", "arith.xori", "arith.maxui", "arith.minui"):
                x = RNG.integers(-2**62, 2**62, n)
            if op == "arith.maxsi":  # all below 0 and the init: a wrong identity shows
                x = RNG.integers(-2**40, -200, n)
            if op == "arith.minsi":
                x = RNG.integers(101, 2**30, n)
            x = x.astype(dtype)
            start = int(init)
        got = host.run(f"red_{k}", x, n)
        want = _reference_reduction(op, t, start, x)
        if op == "arith.mulf":
            assert got == pytest.approx(want, rel=1e-12), op
        else:
            assert got == want, (op, got, want)


def test_control_flow_in_kernel(tmp_path):
    host = program("control", tmp_path)
    n = 300
    x = RNG.normal(size=n)
    x[5] = -0.004  # |x|*100 < 1: the while loop runs no iteration
    y = np.zeros(n)
    host.run("control", x, y, n)
    expected = np.empty(n)
    for i in range(n):
        if x[i] > 0:
            expected[i] = sum(x[k] for k in range(i % 5))
        else:
            w, c = abs(x[i]) * 100, 0.0
            while w >= 1:
                w, c = w * 0.5, c + 1
            expected[i] = -c
    np.testing.assert_allclose(y, expected, rtol=1e-14)


_CMPF = {
    "false": lambda a, b: False, "true": lambda a, b: True,
    "oeq": lambda a, b: a == b, "ogt": lambda a, b: a > b, "oge": lambda a, b: a >= b,
    "olt": lambda a, b: a < b, "ole": lambda a, b: a <= b,
    "one": lambda a, b: a < b or a > b,
    "ord": lambda a, b: not (math.isnan(a) or math.isnan(b)),
    "uno": lambda a, b: math.isnan(a) or math.isnan(b),
}
for _p in ("eq", "gt", "ge", "lt", "le"):
    _CMPF["u" + _p] = (lambda p: lambda a, b: math.isnan(a) or math.isnan(b)
                       or _CMPF["o" + p](a, b))(_p)
_CMPF["une"] = lambda a, b: not _CMPF["oeq"](a, b)


def test_every_cmpf_predicate(tmp_path):
    host = program("cmpf", tmp_path)
    vals = [np.nan, -np.inf, -1.0, -0.0, 0.0, 2.0, np.inf]
    pairs = [(a, b) for a in vals for b in vals]
    x = np.array([a for a, _ in pairs])
    y = np.array([b for _, b in pairs])
    n = len(pairs)
    out = np.full((n, len(CMPF_PREDICATES)), -1.0)
    flags = np.zeros(n, np.bool_)
    host.run("cmpf", x, y, out, flags, n)
    for k, p in enumerate(CMPF_PREDICATES):
        expected = [1.0 if _CMPF[p](a, b) else 0.0 for a, b in pairs]
        np.testing.assert_array_equal(out[:, k], expected, err_msg=p)
    np.testing.assert_array_equal(flags, [a < b for a, b in pairs])


def _wrap(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _sat(x: float, lo: int, hi: int) -> int:
    if math.isnan(x):
        return 0
    if x <= lo:
        return lo
    if x >= hi:
        return hi
    return int(x)


def _tdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _expected_int_op(name: str, v: float, q: int):
    u = q & ((1 << 64) - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = {
            "fptosi": lambda: _sat(v, -2**63, 2**63 - 1),
            "fptosi32": lambda: _sat(v, -2**31, 2**31 - 1),
            "fptoui32": lambda: _sat(v, 0, 2**32 - 1),
            "sitofp": lambda: float(q),
            "uitofp32": lambda: float(q & 0xFFFFFFFF),
            "truncf": lambda: float(np.float32(v)),
            "floordivsi": lambda: q // 7,
            "ceildivsi": lambda: -((-q) // 7),
            "divsi": lambda: _tdiv(q, 7),
            "remsi": lambda: q - 7 * _tdiv(q, 7),
            "maxsi": lambda: max(q, 7),
            "minui": lambda: _wrap(min(u, 7)),
            "shli": lambda: _wrap(q << 3),
            "shrsi": lambda: q >> 3,
            "shrui": lambda: u >> 3,
            "xori": lambda: q ^ 7,
            "ipowi": lambda: _wrap(q ** 3),
            "fpowi": lambda: float(np.power(np.float64(v), np.float64(q))),
            "absi": lambda: _wrap(abs(q)),
            "ctpop": lambda: bin(u).count("1"),
            "ctlz": lambda: 64 - u.bit_length(),
            "cttz": lambda: 64 if u == 0 else (u & -u).bit_length() - 1,
            "maximumf": lambda: v if math.isnan(v) else (
                0.0 if v == 0 else max(v, 0.0)),
            "minimumf": lambda: v if math.isnan(v) else (
                v if v == 0 else min(v, 0.0)),  # min(-0, +0) = -0
            "maxnumf": lambda: 0.0 if math.isnan(v) else max(v, 0.0),
            "minnumf": lambda: 0.0 if math.isnan(v) else min(v, 0.0),
            # The CPU lowering extends an i1 as unsigned (true is 1).
            "i1cast": lambda: 1 if q < 7 else 0,
            # A signed i1 comparison: true is -1, so true < false.
            "i1slt": lambda: 0 if q < 7 else 1,
        }
        return table[name]()


def test_casts_and_integer_ops(tmp_path):
    host = program("ints", tmp_path)
    fvals = [0.0, -0.0, 2.7, -2.7, 1e30, -1e30, 3e9, -3e9, np.nan, np.inf, 0.5, 1.5]
    ivals = [0, 1, -1, 7, -7, 13, -13, 2**40 + 5, -(2**40) - 5, 2**63 - 1, -2**63,
             0x00F0F0F0F0F0F0F0]
    x = np.array(fvals)
    q = np.array(ivals, np.int64)
    n = len(x)
    fout = np.full((n, len(INT_OPS)), -99.0)
    iout = np.full((n, len(INT_OPS)), -99, np.int64)
    host.run("ints", x, q, fout, iout, n)
    for k, (name, _, t) in enumerate(INT_OPS):
        got = fout[:, k] if t == "f64" else iout[:, k]
        for i in range(n):
            if name == "fpowi" and abs(ivals[i]) > 2**53:
                continue  # the exponent is rounded to a double: no exact reference
            want = _expected_int_op(name, fvals[i], ivals[i])
            # maxnum/minnum may return either zero for (-0, +0) (IEEE, LLVM).
            signed_zero = name not in ("maxnumf", "minnumf")
            if t == "f64":
                assert (got[i] == want and (not signed_zero or math.copysign(1, got[i])
                                            == math.copysign(1, want))) \
                    or (math.isnan(got[i]) and math.isnan(want)), \
                    (name, fvals[i], ivals[i], got[i], want)
            else:
                assert got[i] == want, (name, fvals[i], ivals[i], got[i], want)


def test_views_in_kernel(tmp_path):
    host = program("views", tmp_path)
    n, k = 20, 7
    mat = RNG.normal(size=(n, k))
    y = np.zeros(n)
    host.run("views", mat, y, n, k)
    flat = mat.reshape(-1)
    np.testing.assert_allclose(y, mat.sum(axis=1) + mat[:, 0] + 2 * flat[:n] + k,
                               rtol=1e-14)


def test_nested_parallel_loop_and_alloca(tmp_path):
    host = program("nested", tmp_path)
    a = RNG.normal(size=(300, 9))
    y = np.zeros(300)
    host.run("nested", a, y, 300, 9, 0.5)
    np.testing.assert_allclose(y, 0.5 * a.sum(axis=1), rtol=1e-13)


def test_constants(tmp_path):
    host = program("constants", tmp_path)
    fout = np.zeros((3, len(FLOAT_CONSTANTS) + 1))
    iout = np.zeros((3, len(INT_CONSTANTS)), np.int64)
    host.run("consts", fout, iout, 3)
    floats = [float(c) if not c.startswith("0x") else
              np.array([int(c, 16)], np.uint64).view(np.float64)[0]
              for c in FLOAT_CONSTANTS] + [0.5]
    for k, want in enumerate(floats):
        got = fout[:, k]
        if np.isnan(want):
            assert np.isnan(got).all()
        else:
            np.testing.assert_array_equal(got, want)
            assert (np.signbit(got) == np.signbit(want)).all()
    np.testing.assert_array_equal(iout, [[int(c) for c in INT_CONSTANTS]] * 3)


# ---------------------------------------------------------------------------------------
# The emulator's block order.

def _block_order(host: _Host, nblocks: int) -> list[int]:
    order = np.full(nblocks, -1, np.int64)
    counter = np.zeros(1, np.int64)
    host.run("order", order, counter, nblocks * BLOCK_SIZE)
    assert counter[0] == nblocks
    return order.tolist()


def test_block_order_is_a_seeded_permutation(tmp_path, monkeypatch):
    host = program("order", tmp_path)
    nblocks = 64
    monkeypatch.setenv("ISOZYME_EMU_SEED", "1")
    host.emu.lib.iz_emu_reset()
    first = _block_order(host, nblocks)
    assert sorted(first) == list(range(nblocks))
    assert first != list(range(nblocks))  # shuffled
    second = _block_order(host, nblocks)
    assert sorted(second) == list(range(nblocks)) and second != first  # per launch
    host.emu.lib.iz_emu_reset()
    assert _block_order(host, nblocks) == first  # reproducible from the seed
    monkeypatch.setenv("ISOZYME_EMU_SEED", "2")
    host.emu.lib.iz_emu_reset()
    other = _block_order(host, nblocks)
    assert sorted(other) == list(range(nblocks)) and other != first
