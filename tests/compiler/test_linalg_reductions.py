"""Full sum reductions of whole-array code (``np.sum(x * x)``, ``np.dot``, ``x @ y`` of
vectors, ``np.sum`` of a 2-D array, ``np.mean``) are parallel reductions.

``convert-linalg-to-parallel-loops`` lowers them to one ``scf.parallel`` over every
dimension with an ``addf`` ``scf.reduce`` (``np.max``/``np.prod`` stay sequential), so:

* the ``optimized`` IR has the ``scf.reduce``;
* the CPU computes exactly the sequential loop's sum (``convert-parallel-to-for``
  carries the reduction as an ``iter_arg`` and adds in the same order);
* forward and reverse derivatives match central finite differences;
* the ``cuda`` target's host program reads and writes device memory only for rank-0
  and ``memref<1x...>`` reduction results (no element loop over the array);
* through ``cuda-emu`` (several blocks, shuffled order) the numbers match the CPU's.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from xdsl.dialects import builtin, gpu, memref, scf
from xdsl.parser import Parser

import isozyme as iz
from isozyme.compiler.context import make_context
from tests.test_arrays_ad import copies, fd_gradient

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="cuda-emu needs g++")


def sum_sq(x):
    return np.sum(x * x)


def dot(x, y):
    return np.dot(x, y)


def matmul_vectors(x, y):
    return x @ y


def total_2d(a):
    return np.sum(a * a)


def mean_2d(a):
    return np.mean(a)


def maximum(x):
    return np.max(x)


def product(x):
    return np.prod(x)


def energy(u, w):
    # two full sums feeding one another, and a sum of a fused expression over views
    return np.sum(u * u) * np.sum(w * u) + np.sum((u[1:] - u[:-1]) ** 2)


def normalized_steps(u, steps):
    # a full sum in every step of a time loop, its result used by the next step
    v = u * 1.0
    for _ in range(steps):
        v[:] = v / (1.0 + np.sum(v * v))
    return np.sum(v * np.sin(v))


RNG = np.random.default_rng(7)


def _vec(n: int) -> np.ndarray:
    return RNG.uniform(-1.0, 1.0, n)


def _sequential(values, init: float = 0.0) -> float:
    """Left to right, as the sequential loop adds (the CPU's order)."""
    s = init
    for v in np.asarray(values).ravel():
        s = s + v
    return s


def parse(text: str) -> builtin.ModuleOp:
    return Parser(make_context(), text).parse_module()


def optimized(f, *args) -> builtin.ModuleOp:
    return parse(iz.ir(iz.ForwardWithPrimal, f, iz.Const, *[iz.Const(a) for a in args],
                       stage="optimized"))


def sum_loops(module: builtin.ModuleOp) -> list[scf.ParallelOp]:
    """The scf.parallel loops carrying a reduction."""
    return [o for o in module.walk() if isinstance(o, scf.ParallelOp) and o.initVals]


# -- IR shape -------------------------------------------------------------------------
@pytest.mark.parametrize(("f", "args", "ivs"), [
    (sum_sq, [_vec(5)], 1),
    (dot, [_vec(5), _vec(5)], 1),
    (matmul_vectors, [_vec(5), _vec(5)], 1),
    (total_2d, [_vec(6).reshape(2, 3)], 2),
    (mean_2d, [_vec(6).reshape(2, 3)], 2),
], ids=["sum_sq", "dot", "matmul_vectors", "total_2d", "mean_2d"])
def test_full_sums_are_scf_reduce(f, args, ivs) -> None:
    module = optimized(f, *args)
    (loop,) = sum_loops(module)
    assert len(loop.body.block.args) == ivs
    reduce = loop.body.block.last_op
    assert isinstance(reduce, scf.ReduceOp) and len(reduce.args) == 1
    assert [o.name for o in reduce.reductions[0].block.ops] == [
        "arith.addf", "scf.reduce.return"]
    # no sequential loop and no access to the rank-0 result inside the loop
    assert not any(isinstance(o, scf.ForOp) for o in module.walk())
    assert not any(isinstance(o, (memref.LoadOp, memref.StoreOp))
                   and isinstance(o.memref.type, builtin.MemRefType)
                   and not o.memref.type.shape.data for o in loop.walk())


@pytest.mark.parametrize("f", [maximum, product], ids=lambda f: f.__name__)
def test_max_and_prod_stay_sequential(f) -> None:
    module = optimized(f, _vec(5))
    assert sum_loops(module) == []
    assert any(isinstance(o, scf.ForOp) for o in module.walk())


# -- numbers on the CPU -----------------------------------------------------------------
def _primal(f, *args):
    _, value = iz.autodiff(iz.ForwardWithPrimal, f, iz.Const, *[iz.Const(a) for a in args])
    return value


def test_cpu_sums_are_the_sequential_sums_bit_for_bit() -> None:
    x, y = _vec(1001), _vec(1001)
    a = _vec(35 * 17).reshape(35, 17)
    assert _primal(sum_sq, x) == _sequential(x * x)
    assert _primal(dot, x, y) == _sequential(x * y)
    assert _primal(matmul_vectors, x, y) == _sequential(x * y)
    assert _primal(total_2d, a) == _sequential(a * a)
    assert _primal(mean_2d, a) == _sequential(a) / a.size
    # a transposed (strided) view: the loop runs over the view's logical order
    assert _primal(total_2d, a.T) == _sequential(a.T * a.T)
    for f, args in [(sum_sq, [x]), (dot, [x, y]), (matmul_vectors, [x, y]),
                    (total_2d, [a]), (mean_2d, [a]), (maximum, [x]), (product, [x[:20]])]:
        assert _primal(f, *args) == pytest.approx(f(*args), rel=1e-12)


def test_empty_sums_are_zero() -> None:
    assert _primal(sum_sq, np.zeros(0)) == 0.0
    assert _primal(total_2d, np.zeros((0, 3))) == 0.0


# -- derivatives -------------------------------------------------------------------------
CASES = {
    "sum_sq": (sum_sq, lambda: [_vec(7)]),
    "dot": (dot, lambda: [_vec(5), _vec(5)]),
    "matmul_vectors": (matmul_vectors, lambda: [_vec(4), _vec(4)]),
    "total_2d": (total_2d, lambda: [_vec(12).reshape(3, 4)]),
    "total_2d_transposed": (total_2d, lambda: [_vec(12).reshape(3, 4).T]),
    "mean_2d": (mean_2d, lambda: [_vec(6).reshape(2, 3)]),
    "energy": (energy, lambda: [_vec(6), _vec(6)]),
    "normalized_steps": (normalized_steps, lambda: [_vec(5), 3]),
}


def _arrays(args) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]


def _annotated(args, k, shadow):
    return [iz.Duplicated(a, shadow) if i == k else iz.Const(a) for i, a in enumerate(args)]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", [iz.Reverse, iz.ReverseWithPrimal], ids=["rev", "rev+primal"])
def test_reverse_matches_finite_differences(name, mode) -> None:
    f, make = CASES[name]
    args = make()
    for k in _arrays(args):
        want = fd_gradient(f, copies(args), k)
        shadow = np.zeros_like(args[k])
        res = iz.autodiff(mode, f, iz.Active, *_annotated(copies(args), k, shadow))
        np.testing.assert_allclose(shadow, want, rtol=1e-6, atol=1e-8)
        if mode.with_primal:
            assert res[1] == pytest.approx(f(*copies(args)), rel=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_finite_differences(name) -> None:
    f, make = CASES[name]
    args = make()
    for k in _arrays(args):
        want = fd_gradient(f, copies(args), k)
        seed = RNG.uniform(-1.0, 1.0, args[k].shape)
        t, primal = iz.autodiff(iz.ForwardWithPrimal, f, *_annotated(copies(args), k, seed))
        assert t == pytest.approx(float(np.sum(want * seed)), rel=1e-6, abs=1e-8)
        assert primal == pytest.approx(f(*copies(args)), rel=1e-12)


def test_large_gradient_is_exact() -> None:
    # d/dx sum(x * x) = 2 x exactly, element by element
    x = _vec(10_000)
    dx = np.zeros_like(x)
    iz.autodiff(iz.Reverse, sum_sq, iz.Active, iz.Duplicated(x, dx))
    np.testing.assert_array_equal(dx, 2.0 * x)
    (t,) = iz.autodiff(iz.Forward, sum_sq, iz.Duplicated(x, np.ones_like(x)))
    assert t == pytest.approx(2.0 * x.sum(), rel=1e-10)


# -- the cuda target's host program ------------------------------------------------------
def _host_element_accesses(text: str) -> list[str]:
    """The host's memref loads, stores, copies and atomics on anything but a rank-0
    buffer or a reduction's ``memref<1xT>`` result (a check status, ``memref<?xi64>``
    passed to a launch, counts too: these programs have no run-time check)."""
    module = parse(text)
    assert not any(isinstance(o, gpu.ModuleOp) for o in module.ops)
    bad = []
    for o in module.walk():
        if isinstance(o, (memref.LoadOp, memref.StoreOp, memref.AtomicRMWOp)):
            shape = o.memref.type.get_shape()
            if shape == () or shape == (1,):
                continue
            bad.append(str(o))
        elif isinstance(o, memref.CopyOp):
            bad.append(str(o))
    return bad


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize(("f", "args"), [
    (sum_sq, [_vec(9)]),
    (total_2d, [_vec(12).reshape(3, 4)]),
    (energy, [_vec(9), _vec(9)]),
], ids=["sum_sq", "total_2d", "energy"])
def test_cuda_host_has_no_element_loop(f, args, mode) -> None:
    ann = [iz.Duplicated(a, np.ones_like(a)) for a in args]
    if mode == "reverse":
        text = iz.ir(iz.Reverse, f, iz.Active, *ann, stage="host", target="cuda")
    else:
        text = iz.ir(iz.ForwardWithPrimal, f, *ann, stage="host", target="cuda")
    assert "gpu.launch_func" in text
    assert "scf.for" not in text and "scf.parallel" not in text
    assert _host_element_accesses(text) == []


def test_the_host_check_sees_a_sequential_reduction() -> None:
    # np.max lowers to a sequential loop over the array (a single-thread kernel on the
    # GPU targets, wrap-serial-loops): before the gpu stage the check above reports it
    text = iz.ir(iz.ForwardWithPrimal, maximum, iz.Const, iz.Const(_vec(9)),
                 stage="simplified", target="cuda")
    assert "scf.for" in text and _host_element_accesses(text)
    host = iz.ir(iz.ForwardWithPrimal, maximum, iz.Const, iz.Const(_vec(9)),
                 stage="host", target="cuda")
    assert "scf.for" not in host


# -- cuda-emu ---------------------------------------------------------------------------
@needs_cxx
def test_cuda_emu_numbers_match_the_cpu() -> None:
    # 1000 elements: four blocks of 256 threads, run in a shuffled order
    u, w = _vec(1000), _vec(1000)
    a = _vec(40 * 30).reshape(40, 30)

    def run(target: str) -> list:
        out = []
        with iz.target(target):
            du, dw = np.zeros_like(u), np.zeros_like(w)
            r = iz.autodiff(iz.ReverseWithPrimal, energy, iz.Active, iz.Duplicated(u, du),
                            iz.Duplicated(w, dw))
            out += [du, dw, r[1]]
            da = np.zeros_like(a)
            r = iz.autodiff(iz.ReverseWithPrimal, mean_2d, iz.Active, iz.Duplicated(a, da))
            out += [da, r[1]]
            out += list(iz.autodiff(iz.ForwardWithPrimal, energy,
                                    iz.Duplicated(u, np.ones_like(u)), iz.Const(w)))
            out.append(iz.autodiff(iz.ForwardWithPrimal, total_2d, iz.Const,
                                   iz.Const(a.T))[1])
        return out

    cpu, emu = run("cpu"), run("cuda-emu")
    for want, got in zip(cpu, emu):
        # the GPU adds in another order: equal up to rounding
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
