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
