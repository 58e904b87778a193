"""GradBench's validity rule, and the expected outputs it compares with.

GradBench (``gradbench.comparison.compare_json_objects``, after ADBench's
``JacobianComparison.cs``) walks the expected and actual JSON values together: same keys,
same list lengths, equal ints and strings, and floats with
``|x - y| / max(1, |x| + |y|) <= 1e-4``. An output is valid when nothing mismatches.
This module re-states that rule (it does not import GradBench) and loads the expected
outputs: the golden tool's recorded outputs (``data/golden``, see ``make_golden.py``) for
``ba``, ``ht`` and ``kmeans``, GradBench's constants for ``particle`` and ``saddle``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import numpy as np

from gradbench import inputs

#: GradBench's default tolerance (``compare_json_objects(tolerance=1e-4)``).
TOLERANCE = 1e-4

#: The outputs GradBench's ``particle`` and ``saddle`` evals expect, whatever the variant.
PARTICLE_EXPECTED = 0.2071918746486116
SADDLE_EXPECTED = [8.246324826140356e-06] * 4


def difference(x: float, y: float) -> float:
    """ADBench's normalised difference: absolute below 1, relative above."""
    return abs(x - y) / max(1.0, abs(x) + abs(y))


def mismatches(expected: Any, actual: Any, path: str = "", tol: float = TOLERANCE) -> list[str]:
    """Every place where ``actual`` differs from ``expected`` under GradBench's rule.

    ``actual`` may hold numpy arrays and scalars; they compare as the lists and floats
    they serialise to.
    """
    if isinstance(actual, np.ndarray):
        actual = actual.tolist()
    elif isinstance(actual, np.generic):
        actual = actual.item()
    if isinstance(actual, tuple):
        actual = list(actual)
    if type(expected) is int and type(actual) is float:
        expected = float(expected)
    if type(expected) is float and type(actual) is int:
        actual = float(actual)
    if type(expected) is not type(actual):
        return [f"{path}: expected {type(expected).__name__}, got {type(actual).__name__}"]
    if isinstance(expected, dict):
        out = [f"{path}.{k}: missing or unexpected" for k in set(expected) ^ set(actual)]
        for k in expected.keys() & actual.keys():
            out += mismatches(expected[k], actual[k], f"{path}.{k}", tol)
        return out
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{path}: expected length {len(expected)}, got {len(actual)}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += mismatches(e, a, f"{path}[{i}]", tol)
        return out
    if isinstance(expected, float):
        ok = difference(expected, actual) <= tol  # a NaN fails too
        return [] if ok else [f"{path}: {expected} != {actual}"]
    return [] if expected == actual else [f"{path}: {expected} != {actual}"]


@cache
def golden(tool: str) -> dict[str, dict[str, Any]]:
    """The recorded outputs of GradBench's golden tool: description -> function -> output."""
    return json.loads((inputs.DATA / "golden" / f"{tool}.json").read_text())


def check(expected: Any, actual: Any, what: str) -> None:
    """Raise ``AssertionError`` listing up to 10 mismatches when ``actual`` is not valid."""
    bad = mismatches(expected, actual)
    if bad:
        shown = "\n  ".join(bad[:10])
        raise AssertionError(
            f"{what}: {len(bad)} mismatches with GradBench's reference:\n  {shown}")
