"""A file for the CLI tests."""

import math


def rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def looped(x, n):
    s = 0.0
    for i in range(n):
        s = s + math.sin(x * i)
    return s
