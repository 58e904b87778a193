"""Reverse mode of Duplicated pytrees holding float leaves, and calls mixing Active
scalars with Duplicated arrays: derivatives against central differences, the float
leaves' derivatives added into the shadow pytree, the refusal of float leaves in
immutable containers (nothing written)."""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest

from isozyme import (
    Active,
    AnnotationError,
    Const,
    Duplicated,
    Reverse,
    ReverseWithPrimal,
    autodiff,
    vjp,
)


@dataclass
class Layer:
    w: np.ndarray
    scale: float


@dataclass(frozen=True)
class FrozenLayer:
    w: np.ndarray
    scale: float


class Pair(NamedTuple):
    w: np.ndarray
    scale: float


def dict_loss(p, a):
    s = 0.0
    for i in range(len(p["w"])):
        s += np.sin(p["w"][i] * p["b"]) * a
    return s + p["b"] ** 2


def layer_loss(layer, x):
    s = 0.0
    for i in range(len(x)):
        s += (layer.w[i] * x[i] * layer.scale) ** 2
    return s


def nested_loss(p):
    # a list of dicts inside a dict: float leaves at several depths
    s = p["c"] * p["c"]
    for k in range(2):
        s += p["layers"][k]["w"][0] * p["layers"][k]["b"] * p["c"]
    return s


def list_loss(p):
    return p[0] * p[1][1] + p[2] ** 3


def fd(f, x0, h=1e-6):
    return (f(x0 + h) - f(x0 - h)) / (2 * h)


W = np.array([0.3, -0.7, 1.1])
X = np.array([0.5, 2.0, -1.0])


def test_dict_float_leaf_accumulates_into_the_shadow():
    dw = np.zeros(3)
    shadow = {"w": dw, "b": 0.25}
    derivs = autodiff(Reverse, dict_loss, Active,
                      Duplicated({"w": W.copy(), "b": 1.5}, shadow), Active(2.0))
    assert derivs[0][0] is None
    assert derivs[0][1] == pytest.approx(fd(lambda a: dict_loss({"w": W, "b": 1.5}, a), 2.0))
    db = fd(lambda b: dict_loss({"w": W, "b": b}, 2.0), 1.5)
    assert shadow["b"] == pytest.approx(0.25 + db, rel=1e-7)
    for i in range(3):
        def at(t, i=i):
            w = W.copy()
            w[i] = t
            return dict_loss({"w": w, "b": 1.5}, 2.0)
        assert dw[i] == pytest.approx(fd(at, W[i]), rel=1e-7)
    # a second call (compiled once) accumulates again
    autodiff(Reverse, dict_loss, Active, Duplicated({"w": W.copy(), "b": 1.5}, shadow),
             Active(2.0))
    assert shadow["b"] == pytest.approx(0.25 + 2 * db, rel=1e-7)


def test_dataclass_and_list_float_leaves():
    layer, dlayer = Layer(W.copy(), 0.5), Layer(np.zeros(3), 0.0)
    derivs, val = autodiff(ReverseWithPrimal, layer_loss, Active,
                           Duplicated(layer, dlayer), Const(X))
    assert derivs == (None, None)
    assert val == pytest.approx(layer_loss(Layer(W, 0.5), X))
    assert dlayer.scale == pytest.approx(fd(lambda s: layer_loss(Layer(W, s), X), 0.5), rel=1e-7)
    np.testing.assert_allclose(dlayer.w, 2 * W * (X * 0.5) ** 2, rtol=1e-12)

    p = [1.5, np.array([2.0, 3.0]), -0.5]
    dp = [0.0, np.zeros(2), 1.0]
    autodiff(Reverse, list_loss, Active, Duplicated(p, dp))
    assert dp[0] == pytest.approx(3.0) and dp[2] == pytest.approx(1.0 + 3 * 0.25)
    np.testing.assert_allclose(dp[1], [0.0, 1.5])


def test_nested_float_leaves():
    def tree(c, b0, b1):
        return {"c": c, "layers": [{"w": np.array([2.0]), "b": b0},
                                   {"w": np.array([-1.0]), "b": b1}]}

    p = tree(0.7, 1.5, 2.5)
    dp = {"c": 0.0, "layers": [{"w": np.zeros(1), "b": 0.0}, {"w": np.zeros(1), "b": 0.0}]}
    autodiff(Reverse, nested_loss, Active, Duplicated(p, dp))
    assert dp["c"] == pytest.approx(fd(lambda c: nested_loss(tree(c, 1.5, 2.5)), 0.7))
    assert dp["layers"][0]["b"] == pytest.approx(2.0 * 0.7)
    assert dp["layers"][1]["b"] == pytest.approx(-1.0 * 0.7)
    assert dp["layers"][0]["w"][0] == pytest.approx(1.5 * 0.7)
    assert dp["layers"][1]["w"][0] == pytest.approx(2.5 * 0.7)


@pytest.mark.parametrize("primal,shadow,where", [
    ((1.0, 2.0), (0.0, 0.0), r"float leaf \[0\] .* immutable tuple"),
    (Pair(W.copy(), 0.5), Pair(np.zeros(3), 0.0), r"float leaf \[1\] .* immutable NamedTuple Pair"),
    (FrozenLayer(W.copy(), 0.5), FrozenLayer(np.zeros(3), 0.0),
     r"float leaf \.scale .* immutable frozen dataclass FrozenLayer"),
    ({"a": (W.copy(), 2.0)}, {"a": (np.zeros(3), 0.0)}, r"float leaf \['a'\]\[1\] .* tuple"),
])
def test_float_leaf_in_an_immutable_container_is_refused(primal, shadow, where):
    def f(p):
        return 1.0

    arrays = [v for v in (shadow if isinstance(shadow, tuple) else [])
              if isinstance(v, np.ndarray)]
    with pytest.raises(AnnotationError, match=where + ".*immutable scalar"):
        autodiff(Reverse, f, Active, Duplicated(primal, shadow))
    for a in arrays:
        assert not a.any()


def test_immutable_container_of_arrays_only_is_fine():
    p, dp = Pair(W.copy(), np.array([0.5])), Pair(np.zeros(3), np.zeros(1))

    def f(p):
        s = 0.0
        for i in range(3):
            s += p.w[i] * p.scale[0]
        return s

    autodiff(Reverse, f, Active, Duplicated(p, dp))
    np.testing.assert_allclose(dp.w, 0.5)
    assert dp.scale[0] == pytest.approx(W.sum())


def mixed(x, a, y, b):
    s = 0.0
    for i in range(len(x)):
        s += a * x[i] * y[i] + b * x[i] ** 2
    return s


def test_one_call_mixing_active_scalars_and_duplicated_arrays():
    dx, dy = np.zeros(3), np.zeros(3)
    (derivs,) = autodiff(Reverse, mixed, Active, Duplicated(X.copy(), dx), Active(1.5),
                         Duplicated(W.copy(), dy), Active(-0.5))
    assert derivs[0] is None and derivs[2] is None
    assert derivs[1] == pytest.approx(float(X @ W))
    assert derivs[3] == pytest.approx(float(X @ X))
    np.testing.assert_allclose(dx, 1.5 * W - 1.0 * X, rtol=1e-12)
    np.testing.assert_allclose(dy, 1.5 * X, rtol=1e-12)
    # with a Const in the middle and the primal
    dx[:] = 0.0
    derivs, val = autodiff(ReverseWithPrimal, mixed, Active, Duplicated(X.copy(), dx),
                           Const(1.5), W.copy(), Active(-0.5))
    assert derivs == (None, None, None, pytest.approx(float(X @ X)))
    assert val == pytest.approx(mixed(X, 1.5, W, -0.5))
    np.testing.assert_allclose(dx, 1.5 * W - 1.0 * X, rtol=1e-12)


def test_vjp_with_a_float_leaf_in_a_duplicated_dict():
    def f(p):
        return np.sin(p["w"]) * p["b"]

    dw = np.zeros(3)
    shadow = {"w": dw, "b": 0.0}
    seed = np.array([1.0, -2.0, 0.5])
    vjp(Reverse, f, seed, Duplicated({"w": W.copy(), "b": 3.0}, shadow))
    np.testing.assert_allclose(dw, 3.0 * np.cos(W) * seed, rtol=1e-12)
    assert shadow["b"] == pytest.approx(float(np.sin(W) @ seed))
