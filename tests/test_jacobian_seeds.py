"""jacobian's forward-mode seeds: shared read-only unit-seed lanes (isozyme.seeds
.unit_seed_lanes), the fallback to fresh writeable ones for a function that writes its
argument, and chunk padding."""

import numpy as np
import pytest

from isozyme import Forward, jacobian
from isozyme.seeds import unit_seed_lanes


def scale_in_place(x):
    x *= 2.0
    return np.sin(x)


def sin_sq(x):
    return np.sin(x) * x


def test_unit_seed_lanes_cover_every_chunk_and_pad_with_zeros():
    x = np.zeros((2, 3))
    lanes = unit_seed_lanes(x, 4, 4)
    assert len(lanes) == 4 and all(s.shape == (2, 3) for s in lanes)
    np.testing.assert_array_equal(lanes[0].ravel(), [0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(lanes[1].ravel(), [0, 0, 0, 0, 0, 1])
    assert not lanes[2].any() and not lanes[3].any()
    assert not lanes[0].flags.writeable  # shared between calls
    assert unit_seed_lanes(x, 4, 4)[0] is lanes[0]
    fresh = unit_seed_lanes(x, 4, 4, cache=False)
    assert fresh[0].flags.writeable
    np.testing.assert_array_equal(fresh[0], lanes[0])


@pytest.mark.parametrize("chunk", [4, None])
def test_jacobian_of_a_function_writing_its_argument(chunk):
    """Its shadows are written too, so the shared read-only seeds are refused and
    fresh ones used (one sweep: later sweeps would see the doubled x)."""
    x = np.array([0.3, -1.2, 0.7, 2.0])
    (J,) = jacobian(Forward, scale_in_place, x.copy(), chunk=chunk)
    np.testing.assert_allclose(J, np.diag(2.0 * np.cos(2.0 * x)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("chunk", [1, 3, 4, 5])
def test_jacobian_chunks_and_padding(chunk):
    x = np.array([0.3, -1.2, 0.7, 2.0, 0.1])
    (J,) = jacobian(Forward, sin_sq, x, chunk=chunk)
    want = np.diag(np.cos(x) * x + np.sin(x))
    np.testing.assert_allclose(J, want, rtol=1e-12, atol=1e-14)
