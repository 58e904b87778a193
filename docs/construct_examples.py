"""The examples of the Python constructs table (``docs/supported.md``): ordinary user
code, one function per row of ``isozyme.frontends.python.constructs.CONSTRUCTS``
(matched by name). ``tests/frontends/test_constructs.py`` runs each against plain Python
and central differences (a refused one for its error); ``generate_support_tables.py``
prints their source. They live outside the package because isozyme reports errors at
the user's file and line, which it finds by skipping its own files.

Each takes a float64 array ``x`` (differentiated) and an int ``n``.
"""

import functools
import math

import numpy as np



def if_on_traced(x, n):
    s = 0.0
    for i in range(n):
        if x[i] > 0.5:
            s += x[i] ** 2
        elif x[i] > 0.2:
            s += math.sin(x[i])
        else:
            s -= x[i]
    return s


def while_on_traced(x, n):
    y = x[0]
    while y < 10.0:
        y = y * 1.5 + x[1]
    return y


def array_rebound_in_loop(x, n):
    w = x.copy()
    for _ in range(n):
        w = w - 0.1 * np.sin(w)
    return float(np.sum(w * w))


def array_rebound_in_if(x, n):
    if x[0] > 0.3:
        h = np.tanh(x)
    else:
        h = x * 2.0
    return float(np.sum(h))


def ping_pong_buffers(x, n):
    u = x.copy()
    v = np.zeros_like(x)
    for _ in range(n):
        v[1:-1] = 0.5 * u[1:-1] + 0.25 * (u[:-2] + u[2:])
        v[0], v[-1] = u[0], u[-1]
        u, v = v, u
    return float(np.sum(u * u))


def break_and_continue(x, n):
    s = 0.0
    i = 0
    while True:
        i += 1
        if i >= n:
            break
        if x[i] < 0.3:
            continue
        s += x[i] * x[i - 1]
    return s


def return_inside_loop(x, n):
    s = 0.0
    for i in range(n):
        s += x[i]
        if s > 1.0:
            return s * 2.0
    return s


def assigned_in_loop_used_after(x, n):
    for i in range(n):
        last = x[i] * x[i]
    return last


def iterate_over_array(x, n):
    X = x.reshape(2, 3)
    s = 0.0
    for row in X:
        s += np.sum(row * row)
    for k, (a, b) in enumerate(zip(x[:3], x[3:])):
        s += k * a * b
    return s


def reversed_range(x, n):
    s = 0.0
    for i in reversed(range(n)):
        s = s * x[i] + 1.0
    return s


def sum_of_generator(x, n):
    return sum(x[i] * x[i + 1] for i in range(n - 1))


def comprehension_over_python_range(x, n):
    parts = [x[i] * (i + 1) for i in range(3)]
    return parts[0] + parts[1] * parts[2]


def assert_on_shapes(x, n):
    assert x.shape[0] >= n, "x is too short"
    return float(np.sum(x[:n]))


def sizes_as_python_ints(x, n):
    idx = tuple(range(x.shape[0]))
    return sum(x[i] * (len(idx) - i) for i in idx)


def fancy_gather_and_scatter(x, n):
    idx = np.array([0, 2, 2, 5])
    g = x[idx]
    out = np.zeros(6)
    np.add.at(out, idx, g * g)
    return float(np.sum(out * x))


def boolean_mask(x, n):
    big = x[x > 0.4]
    y = x.copy()
    y[x < 0.3] = 0.0
    return float(np.sum(big * big) + np.sum(y))


def partial_and_lambda(x, n):
    def scale(a, k):
        return a * k

    double = functools.partial(scale, k=2.0)
    square = lambda t: t * t  # noqa: E731
    return float(np.sum(square(double(x))))


def closure_helper(x, n):
    c = x[0]

    def f(t):
        return t * c

    return float(np.sum(f(x)))


def yield_in_traced_code(x, n):
    def gen():
        for i in range(n):
            yield x[i]

    return sum(gen())
