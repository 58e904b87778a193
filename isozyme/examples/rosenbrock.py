"""The functions of Enzyme.jl's getting-started guide, plus a loop example."""


def rosenbrock(x, y):
    """Rosenbrock's function of two scalars."""
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def power_loop(x, n):
    """x**n by repeated multiplication in a loop whose trip count is an argument."""
    acc = 1.0
    for _ in range(n):
        acc = acc * x
    return acc
