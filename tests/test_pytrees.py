"""Pytree arguments: tuples, lists, dicts, NamedTuples and dataclasses of scalars and arrays."""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest

from isozyme import (
    Active,
    AnnotationError,
    Const,
    Duplicated,
    Forward,
    ForwardWithPrimal,
    Reverse,
    ReverseWithPrimal,
    autodiff,
)


def tuple_fn(p):
    a, b = p
    return a * a * b


def list_fn(v):
    return v[0] * v[1] * v[2]


def dict_dot(p):
    s = 0.0
    for i in range(len(p["w"])):
        s += p["w"][i] * p["x"][i]
    return s * p["scale"]


class Params(NamedTuple):
    scale: float
    weights: np.ndarray


@dataclass
class Model:
    bias: float
    weights: np.ndarray


def named_fn(p):
    s = 0.0
    for i in range(len(p.weights)):
        s += p.weights[i] ** 2
    return p.scale * s


def dataclass_fn(m):
    s = m.bias
    for i in range(len(m.weights)):
        s += m.weights[i] * m.weights[i]
    return s


def nested_fn(t):
    (a, (b, c)) = t
    return a * b + c


def test_active_tuple_returns_gradient_tuple():
    assert autodiff(Reverse, tuple_fn, Active((3.0, 2.0))) == (((12.0, 9.0),),)
    assert autodiff(ReverseWithPrimal, tuple_fn, Active((3.0, 2.0))) == (((12.0, 9.0),), 18.0)


def test_active_nested_tuple():
    assert autodiff(Reverse, nested_fn, Active((2.0, (3.0, 4.0)))) == (((3.0, (2.0, 1.0)),),)


def test_duplicated_list_of_scalars_forward():
    assert autodiff(Forward, list_fn, Duplicated([1.0, 2.0, 3.0], [1.0, 0.0, 0.0])) == (6.0,)
    assert autodiff(Forward, list_fn, Duplicated([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])) == (11.0,)


def test_duplicated_dict_reverse_accumulates_into_shadow_arrays():
    w, x = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    dw, dx = np.zeros(2), np.zeros(2)
    res = autodiff(Reverse, dict_dot_arrays, Active,
                   Duplicated({"w": w, "x": x}, {"w": dw, "x": dx}), Const(2.0))
    assert res == ((None, None),)
    assert dw.tolist() == [6.0, 8.0] and dx.tolist() == [2.0, 4.0]


def dict_dot_arrays(p, scale):
    s = 0.0
    for i in range(len(p["w"])):
        s += p["w"][i] * p["x"][i]
    return s * scale


def test_dict_forward_with_scalar_leaf():
    w, x = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out = autodiff(ForwardWithPrimal, dict_dot,
                   Duplicated({"w": w, "x": x, "scale": 2.0},
                              {"w": np.ones(2), "x": np.zeros(2), "scale": 1.0}))
    # d/dt [(w+t)·x * (2+t)] at 0 = (x·1)*2 + (w·x)*1 = 14 + 11
    assert out == (25.0, 22.0)


def test_namedtuple_and_dataclass():
    w = np.array([1.0, 2.0])
    res = autodiff(ForwardWithPrimal, named_fn, Duplicated(Params(3.0, w), Params(1.0, np.zeros(2))))
    assert res == (5.0, 15.0)
    res = autodiff(Forward, dataclass_fn, Duplicated(Model(0.5, w), Model(1.0, np.ones(2))))
    assert res == (1.0 + 2.0 + 4.0,)


def test_const_pytree_argument():
    assert autodiff(Reverse, dict_dot_arrays, Active,
                    Const({"w": np.array([1.0]), "x": np.array([2.0])}), Active(3.0)) == (
        (None, 2.0),)


def test_structure_mismatch_is_rejected():
    with pytest.raises(AnnotationError, match="structure"):
        Duplicated({"w": np.ones(2)}, {"v": np.zeros(2)})
    with pytest.raises(AnnotationError, match="structure"):
        Duplicated((np.ones(2), np.ones(2)), (np.zeros(2),))


def test_active_pytree_needs_float_leaves():
    with pytest.raises(AnnotationError, match="Active"):
        Active((1.0, np.ones(2)))


def test_duplicated_scalar_leaf_in_reverse_is_rejected():
    with pytest.raises(AnnotationError, match="immutable scalar"):
        autodiff(Reverse, tuple_fn, Active, Duplicated((1.0, 2.0), (0.0, 0.0)))
