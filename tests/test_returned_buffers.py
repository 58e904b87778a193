"""Arrays a traced function returns: each buffer owned, and freed, once per SSA value.

Before the fix, a helper returning the same local array twice (``return z, z``) had the
caller adopt both call results and free the buffer twice (the process aborted in libc);
a helper returning its argument (``return x``) or a view of it handed the caller a new
value whose buffer the caller did not know, so a caller returning ``g(local)`` returned
a buffer it had freed.  Now a helper returns each distinct value once, an argument not
at all (the caller gets its own value back: numpy's ``h(x) is x``), and a returned view
records the buffer it views (arrays.HelperReturns).

Every compile in this file runs ``verify-buffer-lifetimes`` on the traced IR (before
inlining: call results followed into the callee) and after each stage (conftest's
``ISOZYME_VERIFY=1``); numbers are checked against exact values, numpy and central
finite differences, in Reverse and Forward mode and on the ``cuda-emu`` target.
"""

import numpy as np
import pytest
from xdsl.parser import Parser

import isozyme as iz
from isozyme import (
    Active,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
)
from isozyme.compiler.context import make_context
from isozyme.compiler.passes.verify_buffer_lifetimes import verify_buffer_lifetimes
from isozyme.errors import CompileError

RNG = np.random.default_rng(19)


@pytest.fixture(autouse=True)
def _verify_every_stage(monkeypatch):
    """The use-after-free and double-free check on the traced IR and after each stage
    (``run_pipeline`` runs it when ``ISOZYME_VERIFY=1``, as tests/conftest.py sets)."""
    monkeypatch.setenv("ISOZYME_VERIFY", "1")


def _fd_gradient(f, v, eps=1e-6):
    g = np.zeros_like(v)
    for i in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[i] = eps
        g[i] = (f(v + e) - f(v - e)) / (2 * eps)
    return g


# --------------------------------------------------------------------------- programs


def _twice(x):
    z = x * 2.0
    return z, z


def same_local_twice(x):  # the reported program
    a, b = _twice(x)
    return np.sum(a * b)


def _argument_and_local(x):
    z = x * 2.0
    return x, z


def argument_and_local(x):
    a, b = _argument_and_local(x)
    return np.sum(a * b)


def _view_and_local(x):
    z = x * 2.0
    return z[1:], z


def view_and_local(x):
    a, b = _view_and_local(x)
    return np.sum(a) + np.sum(b * b)


def _identity(x):
    return x


def _tail(x):
    return x[1:]


def _doubled_through_identity(x):
    z = x * 2.0
    return _identity(z)  # the caller's own buffer comes back: it is returned, not freed


def _doubled_tail(x):
    z = x * 2.0
    return _tail(z)  # a view of a buffer freed on return: copied


def helpers_returning_their_argument(x):
    return np.sum(_doubled_through_identity(x) * x) + np.sum(np.sin(_doubled_tail(x)))


def same_local_twice_in_a_loop(x):
    s = 0.0
    for i in range(len(x)):
        a, b = _twice(x * x[i])
        s = s + np.sum(a * b)
    return s


def same_local_twice_in_branches(x):
    if x[0] > 0.0:
        a, b = _twice(x)
        s = np.sum(a * b)
    else:
        v, z = _view_and_local(x)
        s = np.sum(v) * np.sum(z)
    return s


def carried_through_a_loop(x):
    y = x * 1.0
    for _ in range(3):
        y, w = _twice(np.sin(y))
        y = y + w
    return np.sum(y)


def view_carried_through_a_loop(x):
    y = x * 1.0
    t = 0.0
    for _ in range(2):
        v, y = _view_and_local(np.cos(y))
        t = t + np.sum(v * v)
    return t + np.sum(y)


PROGRAMS = [
    same_local_twice,
    argument_and_local,
    view_and_local,
    helpers_returning_their_argument,
    same_local_twice_in_a_loop,
    same_local_twice_in_branches,
    carried_through_a_loop,
    view_carried_through_a_loop,
]


def test_reported_program_exact():
    x = np.arange(3.0)
    dx = np.zeros(3)
    assert autodiff(ReverseWithPrimal, same_local_twice, Active, Duplicated(x, dx)) == (
        (None,), 20.0)
    np.testing.assert_array_equal(dx, 8.0 * x)  # d/dx sum(4 x^2)
    (t,) = autodiff(Forward, same_local_twice, Duplicated(x, np.ones(3)))
    assert t == 24.0


@pytest.mark.parametrize("f", PROGRAMS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["pos", "neg"])
def test_reverse_gradient_and_primal(f, sign):
    x = sign * RNG.uniform(0.2, 1.0, 5)
    dx = np.zeros_like(x)
    (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(x.copy(), dx))
    assert primal == pytest.approx(f(x), rel=1e-12)
    np.testing.assert_allclose(dx, _fd_gradient(f, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("f", PROGRAMS, ids=lambda f: f.__name__)
def test_forward_derivative_and_primal(f):
    x = RNG.uniform(-1.0, 1.0, 5)
    x[0] = abs(x[0]) + 0.1
    seed = RNG.uniform(-1.0, 1.0, 5)
    (t, primal) = autodiff(ForwardWithPrimal, f, Duplicated(x.copy(), seed.copy()))
    assert primal == pytest.approx(f(x), rel=1e-12)
    assert t == pytest.approx(float(np.sum(_fd_gradient(f, x) * seed)), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("f", [same_local_twice, view_and_local, carried_through_a_loop,
                               helpers_returning_their_argument],
                         ids=lambda f: f.__name__)
def test_on_the_emulated_gpu(f):
    x = RNG.uniform(0.2, 1.0, 4)
    dx = np.zeros_like(x)
    with iz.target("cuda-emu"):
        (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(x.copy(), dx))
        (t,) = autodiff(Forward, f, Duplicated(x.copy(), np.ones_like(x)))
    assert primal == pytest.approx(f(x), rel=1e-12)
    np.testing.assert_allclose(dx, _fd_gradient(f, x), rtol=1e-6, atol=1e-8)
    assert t == pytest.approx(float(np.sum(_fd_gradient(f, x))), rel=1e-6)


# --------------------------------------------------------------------------- numpy's aliasing


def write_through_one_name_read_through_the_other(x):
    a, b = _twice(x)  # one array twice, as numpy gives one object twice
    a[0] = 5.0
    return b[0] + np.sum(b * x)


def write_into_the_returned_argument(x):
    y = x * 1.0
    a = _identity(y)  # y itself
    a[1] = 0.0
    return np.sum(y * y)


def write_into_the_array_a_returned_view_views(x):
    v, z = _view_and_local(x)  # v is z[1:]
    z[1] = 10.0
    return v[0] + np.sum(v * x[1:])


def write_into_an_argument_view(x):
    y = x * 1.0
    t = _tail(y)  # a view of y
    t[0] = 3.0
    return np.sum(y * x)


ALIASING = [
    write_through_one_name_read_through_the_other,
    write_into_the_returned_argument,
    write_into_the_array_a_returned_view_views,
    write_into_an_argument_view,
]


@pytest.mark.parametrize("f", ALIASING, ids=lambda f: f.__name__)
def test_returned_arrays_alias_as_in_numpy(f):
    x = RNG.uniform(0.5, 1.5, 4)
    dx = np.zeros_like(x)
    (_, primal) = autodiff(ReverseWithPrimal, f, Active, Duplicated(x.copy(), dx))
    assert primal == pytest.approx(f(x), rel=1e-12)
    np.testing.assert_allclose(dx, _fd_gradient(f, x), rtol=1e-6, atol=1e-8)
    seed = RNG.uniform(-1.0, 1.0, 4)
    (t,) = autodiff(Forward, f, Duplicated(x.copy(), seed))
    assert t == pytest.approx(float(np.sum(_fd_gradient(f, x) * seed)), rel=1e-6)


def test_aliasing_exact_values():
    x = np.array([1.0, 2.0, 3.0])
    # a[0] = 5 is b[0]: 5 + 5*1 + 4*2 + 6*3
    assert autodiff(ReverseWithPrimal, write_through_one_name_read_through_the_other,
                    Active, Duplicated(x.copy(), np.zeros(3)))[1] == 36.0
    # z = 2x = [2, 10 (written), 6]; v = [10, 6]: 10 + 10*2 + 6*3
    assert autodiff(ReverseWithPrimal, write_into_the_array_a_returned_view_views,
                    Active, Duplicated(x.copy(), np.zeros(3)))[1] == 48.0


def test_public_function_returning_one_array_twice():
    def f(x):
        z = x * 2.0
        return z, z

    x = np.arange(3.0)
    ((d0, d1), (p0, p1)) = autodiff(ForwardWithPrimal, f, Duplicated,
                                    Duplicated(x, np.ones(3)))
    np.testing.assert_array_equal(p0, 2.0 * x)
    np.testing.assert_array_equal(d0, [2.0, 2.0, 2.0])
    assert np.shares_memory(p0, p1) and np.shares_memory(d0, d1)  # one buffer each
    p0[0] = 7.0
    assert p1[0] == 7.0
    del p0, p1, d0, d1  # freed once: the process survives collecting them


def test_public_function_returning_a_local_and_a_view_of_it():
    def f(x):
        z = x * 2.0
        return z[1:], z

    x = np.arange(3.0)
    ((d0, d1), (p0, p1)) = autodiff(ForwardWithPrimal, f, Duplicated,
                                    Duplicated(x, np.ones(3)))
    np.testing.assert_array_equal(p0, [2.0, 4.0])
    np.testing.assert_array_equal(p1, [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(d1, [2.0, 2.0, 2.0])


def test_reverse_of_a_scalar_helper_returning_one_value_twice():
    def h(a):
        y = a * a
        return y, y

    def f(a):
        p, q = h(a)
        return p * q

    ((da,),) = autodiff(Reverse, f, Active, Active(1.5))
    assert da == pytest.approx(4.0 * 1.5**3, rel=1e-14)


# --------------------------------------------------------------------------- the verifier

_HELPER_IR = """
func.func private @twice(%n: index) -> (memref<?xf64>, memref<?xf64>) {
  %t = memref.alloc(%n) : memref<?xf64>
  func.return %t, %t : memref<?xf64>, memref<?xf64>
}
func.func private @identity(%a: memref<?xf64>) -> memref<?xf64> {
  func.return %a : memref<?xf64>
}
func.func @f(%n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %a, %b = func.call @twice(%n) : (index) -> (memref<?xf64>, memref<?xf64>)
  %x = memref.load %a[%c0] : memref<?xf64>
  BODY
  func.return %x : f64
}
"""


def _module(body):
    return Parser(make_context(), _HELPER_IR.replace("BODY", body)).parse_module()


def test_verifier_reports_a_double_free_through_two_call_results():
    verify_buffer_lifetimes(_module("memref.dealloc %b : memref<?xf64>"))
    m = _module("memref.dealloc %a : memref<?xf64>\n  memref.dealloc %b : memref<?xf64>")
    with pytest.raises(CompileError, match=r"memref.dealloc in @f uses a buffer that "
                                           r"memref.dealloc in @f already freed \(the "
                                           r"buffer is freed twice: a double free\)"):
        verify_buffer_lifetimes(m)


def test_verifier_follows_a_returned_argument():
    m = _module("%i = func.call @identity(%b) : (memref<?xf64>) -> memref<?xf64>\n"
                "  memref.dealloc %i : memref<?xf64>\n"
                "  %y = memref.load %a[%c0] : memref<?xf64>")
    with pytest.raises(CompileError, match=r"use after free: memref.load in @f"):
        verify_buffer_lifetimes(m)
