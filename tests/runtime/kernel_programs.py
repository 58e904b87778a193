"""prange kernels that the cuda-emu and the device tests both run."""

import isozyme as iz


def saxpy(a, x, y):
    for i in iz.prange(x.shape[0]):
        y[i] = a * x[i] + y[i]


def sum_sq(x):
    s = 0.0
    for i in iz.prange(x.shape[0]):
        s += x[i] * x[i]
    return s


def heat(u, v, steps):
    n = u.shape[0]
    for _ in range(steps):
        for i in iz.prange(1, n - 1):
            v[i] = u[i] + 0.25 * (u[i - 1] - 2.0 * u[i] + u[i + 1])
        for i in iz.prange(1, n - 1):
            u[i] = v[i]
