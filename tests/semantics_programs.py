"""Programs for tests/test_numpy_semantics.py: numpy's broadcasting (size-1 dimensions
known at trace time and at run time) and view semantics (reshape, ravel, asarray, .T,
new axes), each returning a float so that it can be differentiated."""

import numpy as np


# -- broadcasting --------------------------------------------------------------------
def col_times_matrix(w, X):
    return np.sum(w.reshape(-1, 1) * X)


def const_row(X):
    return np.sum(X * np.array([[1.0, 2.0, 3.0]]))


def zeros_column(X):
    return np.sum((np.zeros((X.shape[0], 1)) + X) ** 2)


def slice_ratio(A):
    return np.sum(A[:, 0:2] / A[:, 2:3])


def times(x, y):
    return np.sum(x * y)


def tail_times(x, y):
    return np.sum(x[2:] * y)


def first_into(X, v):
    Y = X.copy()
    Y += v[0:1] * 2.0
    return np.sum(Y * Y)


def row_assign(X, v):
    Y = np.zeros((X.shape[0], X.shape[1]))
    Y[:, :] = v[1:2]
    return np.sum(Y * X)


def stencil_like(u):
    return np.sum((u[:-2] - 2.0 * u[1:-1] + u[2:]) ** 2)


# -- views -----------------------------------------------------------------------------
def reshape_write(x):
    y = x.reshape(2, -1)
    y[0, 1] = x[0] * 3.0
    return np.sum(x**2)


def ravel_write(X):
    r = X.ravel()
    r[1] = X[0, 0] ** 2
    return np.sum(X * X)


def asarray_write(x):
    y = np.asarray(x)
    y[0] = x[1] * 2.0
    return np.sum(x**3)


def transpose_sees_writes(X):
    t = X.T
    X[0, 1] = X[1, 0] * 5.0
    return np.sum(t * t)


def transpose_write(X):
    t = np.transpose(X)
    t[0, 1] = X[0, 0] * 3.0
    return np.sum(X**2)


def newaxis_sees_writes(x):
    c = x[:, None]
    x[0] = x[1] * 2.0
    return np.sum(c * c)


def flatten_copies(x):
    f = x.flatten()
    f[0] = 100.0
    return np.sum(x**2) + f[0] * x[1]


def reshape_2d(X):
    Y = X.reshape(3, 2)
    return np.sum(Y[0] * Y[2]) + np.sum(X.reshape(-1, 1) * X.ravel())


def transposed_product(A, x):
    return np.sum((A.T @ x) ** 2)


def ravel_any(X):
    return np.sum(X.ravel() * np.arange(X.size))


def add_into(X, v):
    Y = X.copy()
    Y += v
    return np.sum(Y * Y)


def reshape_flat_write(X):
    f = X.reshape(-1)
    f[1] = 7.0
    return np.sum(f * f)


def matvec(A, x):
    return np.sum((A @ x) ** 2)


def matvec_tail(A, x):
    return np.sum((A @ x[1:]) ** 2)


def einsum_rows(A, w):
    return np.sum(np.einsum("ij,ij->i", A, w) ** 2)


def write_first(x):
    x[0] = 2.0 * x[1]
    return np.sum(x * x)


def read_only_use(x):
    return np.sum(x * x)


def write_through_transpose(X):
    X.T[1:, 0] = 1.0
    return np.sum(X)


def _scale(v):
    v *= 2.0


def write_in_helper(x):
    _scale(x[1:])
    return np.sum(x)


def zeros_of(x, k):
    return np.sum(np.zeros(k) + x[0])


def ravel_then_write(X):
    r = X.ravel()
    r[0] = 5.0 * r[1]
    return np.sum(r * r) + np.sum(X * X)


def reshape_then_write(X):
    r = X.reshape(-1)
    r[0] = 5.0 * r[1]
    return np.sum(r * r) + np.sum(X * X)


def ravel_of_slice(X):
    return np.sum(X[:, :3].ravel() * 2.0)


def assign_with_leading_ones(x, V):
    y = x.copy()
    y[1:] = V
    return np.sum(y * x)


def stacked(x, y):
    return np.sum(np.stack([x, y], axis=1) ** 2) + np.sum(np.array([x, y])[1] * x)


def batched_matmul(A, B):
    return np.sum((A @ B) ** 2)


def newaxis_targets(x, V):
    t = x.copy()
    t[:, None] += V
    t[None, 1:] = t[None, :-1] * 2.0
    return np.sum(t * x)


def ends_where(x, Y):
    return np.sum(np.where(Y > x, x[-1:], x[0:1]))


def max_of(X):
    return np.max(X) + np.sum(np.min(X, axis=0))


def _weighted_flat(x):
    return np.sum(x.reshape(-1) * np.arange(6.0))


def reshape_in_helper(x):
    return _weighted_flat(x)


def ravel_reversed(x):
    r = x[::-1].ravel()
    r[0] = 10.0
    return np.sum(r * x)
