"""Functions the CLI misuse tests differentiate."""


def hashes(x):
    return x * hash(x)
