"""The registry of Python constructs (``isozyme/frontends/python/constructs.py``) the
docs' table is generated from: every supported construct's example
(``docs/construct_examples.py``) traces, matches plain Python and has the gradient
central differences give, in both modes; every refused one raises the error the table
names; every example has a row and every row an example."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, ReverseWithPrimal, autodiff
from isozyme.frontends.python.constructs import CONSTRUCTS
from tests.finite_differences import central_gradient

X = np.array([0.45, 0.25, 0.7, 0.1, 0.55, 0.35])

_spec = importlib.util.spec_from_file_location(
    "construct_examples", Path(__file__).resolve().parents[2] / "docs" / "construct_examples.py")
EXAMPLES = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(EXAMPLES)


SUPPORTED = [c for c in CONSTRUCTS if c.supported]
REFUSED = [c for c in CONSTRUCTS if not c.supported]


def test_every_example_has_a_row_and_every_row_an_example():
    defined = {n for n, v in vars(EXAMPLES).items()
               if callable(v) and getattr(v, "__module__", None) == EXAMPLES.__name__}
    assert defined == {c.example for c in CONSTRUCTS}


@pytest.mark.parametrize("c", SUPPORTED, ids=[c.example for c in SUPPORTED])
def test_supported_construct_matches_python_and_finite_differences(c):
    f = getattr(EXAMPLES, c.example)
    want = f(X.copy(), *c.extra)
    dx = np.zeros_like(X)
    x = X.copy()
    grads, primal = autodiff(ReverseWithPrimal, f, Active, Duplicated(x, dx),
                             *[Const(e) for e in c.extra])
    assert primal == pytest.approx(want, rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(x, X)
    fd = central_gradient(f, [X], c.extra)
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)
    v = np.linspace(-1.0, 1.0, X.size)
    (jvp,) = autodiff(Forward, f, Duplicated(X.copy(), v), *[Const(e) for e in c.extra])
    assert jvp == pytest.approx(float(fd @ v), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("c", REFUSED, ids=[c.example for c in REFUSED])
def test_refused_construct_raises_what_the_table_says(c):
    with pytest.raises(iz.IsozymeError, match=c.error):
        autodiff(ReverseWithPrimal, getattr(EXAMPLES, c.example), Active, Duplicated(X.copy(), np.zeros(6)),
                 *[Const(e) for e in c.extra])
