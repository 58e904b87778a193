"""Array programs for the finite-difference harness (loop form, in-place updates)."""

import math

import numpy as np


def rosenbrock_inp(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def rosenbrock_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += (1.0 - x[i]) ** 2 + 100.0 * (x[i + 1] - x[i] ** 2) ** 2
    return s


def sum_sq(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i] * x[i]
    return s


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def scale_in_place(x, a):
    for i in range(len(x)):
        x[i] = x[i] * a
    s = 0.0
    for i in range(len(x)):
        s += math.sin(x[i])
    return s


def matvec_norm(A, v):
    s = 0.0
    for i in range(A.shape[0]):
        r = 0.0
        for j in range(A.shape[1]):
            r += A[i, j] * v[j]
        s += r * r
    return s


def local_buffer(x):
    n = len(x)
    tmp = np.zeros(n)
    for i in range(n):
        tmp[i] = math.exp(x[i])
    s = 0.0
    for i in range(n):
        s += tmp[i] * x[i]
    return s


def stencil_steps(u, steps):
    n = len(u)
    for t in range(steps):
        new = np.zeros(n)
        for i in range(1, n - 1):
            new[i] = u[i] + 0.1 * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in range(1, n - 1):
            u[i] = new[i]
    s = 0.0
    for i in range(n):
        s += u[i] * u[i]
    return s


def last_element(x):
    return x[-1] * x[0] + x[-2]


def branchy(x):
    s = 0.0
    for i in range(len(x)):
        if x[i] > 0.0:
            s += x[i] ** 3
        else:
            s -= 2.0 * x[i]
    return s


def while_over_array(x):
    i = 0
    s = 0.0
    while s < 5.0:
        s += x[i % len(x)] ** 2
        i += 1
    return s


def write_output(x, out):
    for i in range(len(x)):
        out[i] = x[i] * x[i] + 1.0
    return 0.0


# -- whole-array numpy ----------------------------------------------------------------
def elementwise(x, y):
    return np.sum(np.sin(x) * y + x / (1.0 + y * y))


def ufuncs(x):
    return np.sum(np.exp(x) + np.tanh(x) + np.sqrt(x * x + 1.0) + np.log1p(x * x) + np.arctan(x))


def power_ops(x):
    return np.sum(x ** 2 + np.abs(x) ** 1.5 + np.square(x) * 0.5)


def broadcast_row(A, v):
    return np.sum((A - v) ** 2)


def broadcast_newaxis(x, y):
    return np.sum(np.cos(x[:, None] * y[None, :]))


def reduce_axis0(A):
    return np.sum(np.sum(A * A, axis=0) ** 2)


def reduce_axis1_keepdims(A):
    return np.sum(A / np.sum(A * A, axis=1, keepdims=True))


def mean_and_prod(x):
    return np.mean(x * x) + np.prod(x)


def max_min(x):
    return np.max(x * x) - np.min(np.sin(x))


def dot_vec(x, y):
    return np.dot(x, y) ** 2


def matvec(A, x):
    return np.sum((A @ x) ** 2)


def matmat(A, B):
    return np.sum(np.tanh(A @ B))


def outer_fn(x, y):
    return np.sum(np.outer(x, y) ** 2)


def transpose_fn(A):
    return np.sum(A.T @ A)


def einsum_fn(A, B):
    return np.sum(np.einsum("ik,jk->ij", A, B) ** 2)


def where_fn(x):
    return np.sum(np.where(x > 0.0, x * x, -2.0 * x))


def clip_fn(x):
    return np.sum(np.clip(x, -0.5, 0.5) * x)


def maximum_fn(x, y):
    return np.sum(np.maximum(x, y) * np.minimum(x, y))


def logsumexp(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def logsumexp_rows(A):
    m = np.max(A, axis=1, keepdims=True)
    return np.sum(m[:, 0] + np.log(np.sum(np.exp(A - m), axis=1)))


def diag_fn(A):
    return np.sum(np.diag(A) ** 2) + np.sum(np.diag(np.diag(A)) * A)


def stack_concat(x, y):
    return np.sum(np.concatenate([x, y]) ** 2) + np.sum(np.stack([x, y]) * 2.0)


def array_from_scalars(x):
    v = np.array([x[0] * x[1], np.sin(x[0]), x[1] ** 2])
    return np.sum(v * v)


def reshape_fn(x):
    return np.sum(x.reshape(2, -1) @ x.reshape(-1, 2))


def scalar_times_array(x, a):
    return np.sum(a * x * x) * a


def gmm_objective(alphas, means, icf, x):
    qdiags = np.exp(icf)
    sum_qs = np.sum(icf, axis=1)
    xcentered = x[:, None, :] - means[None, :, :]
    lx = qdiags[None, :, :] * xcentered
    sqsum = np.sum(lx * lx, axis=2)
    inner = alphas[None, :] + sum_qs[None, :] - 0.5 * sqsum
    m = np.max(inner, axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.sum(np.exp(inner - m), axis=1))
    am = np.max(alphas)
    return np.sum(lse) - x.shape[0] * (am + np.log(np.sum(np.exp(alphas - am))))


def mixed_loop_and_array(x):
    y = np.sin(x) * 2.0
    s = 0.0
    for i in range(len(y)):
        s += y[i] * x[i]
    return s + np.sum(y * y)


def in_place_whole_array(x, y):
    x += y * y
    return np.sum(x * x)


def write_only(x, out):
    for i in range(len(x)):
        out[i] = x[i] * x[i] + 1.0


def returns_array(x):
    return np.sin(x) * x


def returns_pair(x):
    y = x * x
    return y, np.sum(y)


def rows_in_loop(A, v):
    s = 0.0
    for i in range(A.shape[0]):
        s += np.sum(A[i] * v) ** 2
    return s


def vectorized_rosenbrock(x):
    return np.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)


def stencil_vectorized(u, steps):
    for t in range(steps):
        u[1:-1] = u[1:-1] + 0.1 * (u[:-2] - 2.0 * u[1:-1] + u[2:])
    return np.sum(u * u)


def slice_assign(x, y):
    z = np.zeros(len(x) + len(y))
    z[: len(x)] = x * 2.0
    z[len(x):] = np.sin(y)
    return np.sum(z * z)


def strided_slices(x):
    return np.sum(x[::2] * x[1::2]) + np.sum(x[::-1] * x)


def gmm_einsum(alphas, means, icf, x):
    """The GMM objective with the contractions written as einsums."""
    q = np.exp(icf)
    xc = x[:, None, :] - means[None, :, :]
    sq = np.einsum("nkd,nkd->nk", xc * q[None, :, :], xc * q[None, :, :])
    inner = alphas[None, :] + np.einsum("kd->k", icf)[None, :] - 0.5 * sq
    m = np.max(inner, axis=1, keepdims=True)
    return np.sum(m[:, 0] + np.log(np.sum(np.exp(inner - m), axis=1)))
