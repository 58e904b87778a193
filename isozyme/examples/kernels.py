"""A parallel-loop example for the demo: a smoothing stencil and a sum of squares,
written with ``isozyme.prange`` (kernels on the GPU targets, loops on the CPU)."""

from isozyme import prange


def smooth_energy(x, y):
    """y = a 3-point smoothing of x (interior points), then the sum of y**2."""
    n = x.shape[0]
    for i in prange(1, n - 1):
        y[i] = 0.25 * x[i - 1] + 0.5 * x[i] + 0.25 * x[i + 1]
    s = 0.0
    for i in prange(n):
        s += y[i] * y[i]
    return s
