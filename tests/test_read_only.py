"""Read-only arrays (issue 6, item 4): a function that may write an argument (known from
its IR, through views and helpers) refuses a non-writeable array, and a non-writeable
shadow, before it runs; nothing is written."""

import numpy as np
import pytest

from isozyme import (
    Active,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    ReadOnlyError,
    Reverse,
    autodiff,
)
from tests import semantics_programs as P


def read_only(a):
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def frombuffer(values):
    return np.frombuffer(np.array(values, dtype=np.float64).tobytes(), dtype=np.float64)


def memmap(tmp_path, values):
    path = tmp_path / "data.bin"
    np.array(values, dtype=np.float64).tofile(path)
    return np.memmap(path, dtype=np.float64, mode="r")


@pytest.mark.parametrize("make", ["setflags", "frombuffer", "memmap"])
@pytest.mark.parametrize("f", [P.write_first, P.write_through_transpose, P.write_in_helper])
def test_a_written_read_only_argument_is_refused(make, f, tmp_path):
    values = [1.0, 2.0, 3.0, 4.0]
    x = {"setflags": lambda: read_only(values), "frombuffer": lambda: frombuffer(values),
         "memmap": lambda: memmap(tmp_path, values)}[make]()
    if f is P.write_through_transpose:
        x = x.reshape(2, 2)
    assert not x.flags.writeable
    before = x.copy()
    with pytest.raises(ReadOnlyError, match="read-only"):
        autodiff(ForwardWithPrimal, f, Const(x))
    with pytest.raises(ReadOnlyError, match="read-only"):
        autodiff(Reverse, f, Active, Duplicated(x, np.zeros(x.shape)))
    np.testing.assert_array_equal(x, before)
    # a writeable copy works and gives numpy's answer
    y, want = before.copy(), before.copy()
    assert autodiff(ForwardWithPrimal, f, Const(y))[1] == pytest.approx(f(want))
    np.testing.assert_array_equal(y, want)


def test_a_read_only_argument_that_is_only_read_is_fine(tmp_path):
    for x in (read_only([1.0, 2.0]), frombuffer([1.0, 2.0]), memmap(tmp_path, [1.0, 2.0])):
        dx = np.zeros(2)
        autodiff(Reverse, P.read_only_use, Active, Duplicated(x, dx))
        np.testing.assert_array_equal(dx, [2.0, 4.0])
        assert autodiff(Forward, P.read_only_use, Duplicated(x, np.ones(2)))[0] == 6.0


def test_a_read_only_shadow_is_refused_where_it_would_be_written():
    x, dx = np.array([1.0, 2.0]), read_only([5.0, 5.0])
    with pytest.raises(ReadOnlyError, match="the shadow of argument 0"):
        autodiff(Reverse, P.read_only_use, Active, Duplicated(x, dx))
    np.testing.assert_array_equal(dx, [5.0, 5.0])
    # forward mode only reads the shadow of an argument it does not write
    assert autodiff(Forward, P.read_only_use, Duplicated(x, dx))[0] == 30.0
    y = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ReadOnlyError, match="the shadow of argument 0"):
        autodiff(Forward, P.write_first, Duplicated(y, read_only([1.0, 0.0, 0.0])))
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.0])
