"""Property test: random scalar programs, differentiated in both modes, match finite
differences.  Hypothesis builds an expression over ``x`` and ``y`` (with a branch and a
loop around it), writes it to a module file (isozyme reads function source) and checks
Reverse and Forward mode against central differences and against each other."""

import importlib.util
import itertools
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from isozyme import Active, Duplicated, Forward, Reverse, ReverseWithPrimal, autodiff

_UNARY = ["math.sin({})", "math.cos({})", "math.tanh({})", "math.exp(0.3 * {})",
          "math.sqrt(1.0 + {} * {})", "math.atan({})", "-({})", "abs({})"]
_BINARY = ["({} + {})", "({} - {})", "({} * {})", "({} / (1.5 + math.cos({})))",
           "max({}, {})", "min({}, {})"]

_counter = itertools.count()


def expressions(depth: int):
    leaf = st.sampled_from(["x", "y", "0.5", "2.0", "x * y"])
    if depth == 0:
        return leaf
    sub = expressions(depth - 1)
    unary = st.tuples(st.sampled_from(_UNARY), sub).map(lambda t: t[0].format(t[1], t[1]))
    binary = st.tuples(st.sampled_from(_BINARY), sub, sub).map(
        lambda t: t[0].format(t[1], t[2]))
    return st.one_of(leaf, unary, binary)


def make_function(expr: str, shape: str, tmp_path):
    body = {
        "plain": f"    return {expr}\n",
        "branch": f"    if x > y:\n        return {expr}\n    return ({expr}) * y\n",
        "loop": f"    s = 0.0\n    for i in range(n):\n        s = s * 0.5 + {expr} * (i + 1)\n"
                "    return s\n",
    }[shape]
    name = f"hyp_mod_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    path.write_text(f"import math\n\n\ndef f(x, y, n):\n{body}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.f


def central(f, x, y, n, h=1e-6):
    return ((f(x + h, y, n) - f(x - h, y, n)) / (2 * h),
            (f(x, y + h, n) - f(x, y - h, n)) / (2 * h))


def smooth_at(f, x, y, n, h=1e-5):
    """True when the one-sided differences agree in both directions (no kink/branch)."""
    f0 = f(x, y, n)
    for dx, dy in ((h, 0.0), (0.0, h)):
        fwd = (f(x + dx, y + dy, n) - f0) / h
        bwd = (f0 - f(x - dx, y - dy, n)) / h
        if not math.isclose(fwd, bwd, rel_tol=1e-3, abs_tol=1e-4):
            return False
    return True


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(expr=expressions(3), shape=st.sampled_from(["plain", "branch", "loop"]),
       x=st.floats(-1.5, 1.5), y=st.floats(-1.5, 1.5))
def test_random_programs_match_finite_differences(tmp_path, expr, shape, x, y):
    # AD is exact only where every intermediate is differentiable: keep away from the
    # kinks of abs/min/max at 0 and at ties (min(sin(|y|), y) is smooth at y = 0, but
    # the abs inside it is not, and no AD tool gets its derivative there)
    assume(min(abs(x), abs(y), abs(x - y)) >= 0.05)
    f = make_function(expr, shape, tmp_path)
    n = 3
    # stay away from kinks (abs/max/min/branch) where differences are meaningless
    assume(smooth_at(f, x, y, n))
    gx, gy = central(f, x, y, n)
    (grads, primal) = autodiff(ReverseWithPrimal, f, Active, Active(x), Active(y), n)
    assert primal == pytest.approx(f(x, y, n), rel=1e-12, abs=1e-12)
    assert grads[0] == pytest.approx(gx, rel=1e-5, abs=1e-5)
    assert grads[1] == pytest.approx(gy, rel=1e-5, abs=1e-5)
    (tx,) = autodiff(Forward, f, Duplicated(x, 1.0), y, n)
    (ty,) = autodiff(Forward, f, x, Duplicated(y, 1.0), n)
    assert tx == pytest.approx(grads[0], rel=1e-9, abs=1e-12)
    assert ty == pytest.approx(grads[1], rel=1e-9, abs=1e-12)
    assert autodiff(Reverse, f, Active(x), y, n)[0][0] == pytest.approx(grads[0], rel=1e-9,
                                                                         abs=1e-12)
