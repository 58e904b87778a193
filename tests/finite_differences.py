"""Central differences shared by the frontend tests of issue 9."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def central_gradient(f: Callable[..., float], arrays: Sequence[np.ndarray],
                     extra: Sequence[object] = (), k: int = 0, h: float = 1e-6) -> np.ndarray:
    """d f(*arrays, *extra) / d arrays[k], every element by a central difference."""
    g = np.zeros(arrays[k].shape)
    for idx in np.ndindex(arrays[k].shape):
        plus = [a.copy() for a in arrays]
        minus = [a.copy() for a in arrays]
        plus[k][idx] += h
        minus[k][idx] -= h
        g[idx] = (f(*plus, *extra) - f(*minus, *extra)) / (2 * h)
    return g
