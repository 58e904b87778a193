"""jacobian's forward-mode seeds: shared read-only unit-seed lanes (isozyme.seeds
.unit_seed_chunks), the fallback to fresh writeable ones for a function that writes its
argument, and chunk padding."""

import numpy as np
import pytest

from isozyme import Forward, jacobian
from isozyme.seeds import unit_seed_chunks


def scale_in_place(x):
    x *= 2.0
    return np.sin(x)


def sin_sq(x):
    return np.sin(x) * x


def test_unit_seed_chunks_cover_every_element_and_pad_with_zeros():
    x = np.zeros((2, 3))
    chunks = unit_seed_chunks(x, 4)
    assert len(chunks) == 2 and all(len(c) == 4 for c in chunks)
    assert all(s.shape == (2, 3) for c in chunks for s in c)
    flat = np.array([s.ravel() for c in chunks for s in c])
    np.testing.assert_array_equal(flat[:6], np.eye(6))
    assert not flat[6:].any()
    assert not chunks[1][0].flags.writeable  # shared between calls
    assert unit_seed_chunks(x, 4) is chunks
    fresh = list(unit_seed_chunks(x, 4, cache=False))
    assert fresh[1][0].flags.writeable
    np.testing.assert_array_equal(np.array([s.ravel() for c in fresh for s in c]), flat)


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
