"""GradBench's ba, ht, kmeans, particle and saddle evals (``benchmarks/gradbench``) give
outputs GradBench's validator accepts, on the small inputs.

Expected outputs are GradBench's: the recorded outputs of its golden tool (hand-written
derivatives, ``data/golden``) for ba, ht and kmeans, its constants for particle and
saddle; compared with GradBench's rule (``validate.mismatches``, tolerance 1e-4).  The
nested-AD gradients are also checked against central differences and exact values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import isozyme as iz

# benchmarks/ holds the ``gradbench`` package; on sys.path only while importing it, so
# the other benchmark scripts there do not become importable top-level modules.
_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
sys.path.insert(0, _BENCHMARKS)
try:
    from gradbench import ba, ht, inputs, kmeans, particle, saddle, validate
finally:
    sys.path.remove(_BENCHMARKS)


def test_validator_rejects_what_gradbench_rejects():
    """The restated rule: absolute error below 1, relative above, at 1e-4; lengths,
    keys and ints must match exactly."""
    assert validate.mismatches([1.0, 1e3], [1.0 + 5e-5, 1e3 * (1 + 1e-4)]) == []
    assert validate.mismatches([1.0], [1.0 + 3e-4]) != []
    assert validate.mismatches({"a": [1.0, 2.0]}, {"a": np.array([1.0])}) != []
    assert validate.mismatches({"rows": [0, 15]}, {"rows": [0, 16]}) != []
    assert validate.mismatches(0.5, float("nan")) != []
    with pytest.raises(AssertionError, match="1 mismatches"):
        validate.check([2.0, 3.0], [2.0, 3.01], "x")


def test_ba():
    """Objective and the sparse Jacobian (15 compressed forward lanes) on ba1."""
    f = inputs.ba_files()[0]
    inp, gold = inputs.load_ba(f), validate.golden("ba")[f.stem]
    validate.check(gold["objective"], ba.run_objective(inp), "ba objective")
    jac = ba.run_jacobian(inp)
    validate.check(gold["jacobian"], jac, "ba jacobian")
    bad = dict(jac, vals=[*jac["vals"][:5], jac["vals"][5] * 1.01, *jac["vals"][6:]])
    assert validate.mismatches(gold["jacobian"], bad)  # the comparison can fail


def test_ht():
    """Residuals on hand1, complicated and simple; the Jacobian (theta by
    jacobian(Forward), us by a width-2 sweep) of the complicated variant, GradBench's
    default (the simple one compiles its own Jacobian, 9 s more: run.py checks it)."""
    for f in inputs.ht_files():
        inp, gold = inputs.load_ht(f), validate.golden("ht")[f.stem]
        validate.check(gold["objective"], ht.run_objective(inp), f"ht objective {f.stem}")
        if inp.complicated:
            jac = ht.run_jacobian(inp)
            assert len(jac[0]) == 2 + 26
            validate.check(gold["jacobian"], jac, f"ht jacobian {f.stem}")


def test_kmeans():
    """cost, and dir by forward over reverse-mode autodiff (gradient and Hessian
    diagonal in one call); on a tiny input, ``hvp`` gives the same direction."""
    inp, gold = inputs.kmeans_input(), validate.golden("kmeans")["k=10,n=1000,d=8"]
    validate.check(gold["cost"], kmeans.run_cost(inp), "kmeans cost")
    validate.check(gold["dir"], kmeans.run_dir(inp), "kmeans dir")
    tiny = inputs.kmeans_input(k=2, n=10, d=2)
    np.testing.assert_allclose(kmeans.run_dir_hvp(tiny), kmeans.run_dir(tiny), rtol=1e-12)


def test_particle():
    """All four variants reach GradBench's w; the nested gradient (through the Euler
    loop and every inner AD call) matches central differences of the compiled primal."""
    for v in particle.VARIANTS:
        validate.check(validate.PARTICLE_EXPECTED, particle.run(v, inputs.PARTICLE_W0),
                       f"particle {v}")

    def cost(w: float) -> float:
        return iz.autodiff(iz.ForwardWithPrimal, particle.naive_euler, iz.Const(w), "r")[1]

    w, h = 0.1, 1e-6
    fd = (cost(w + h) - cost(w - h)) / (2 * h)
    for outer in "fr":
        for inner in "fr":
            assert particle.cost_gradient(outer, inner, w) == pytest.approx(fd, rel=1e-6)


def test_saddle():
    """All four variants reach GradBench's saddle point; the outer gradient of
    max_p2 f(p1, p2) is exactly 2 p1 (the inner argmax does not depend on p1)."""
    for v in saddle.VARIANTS:
        validate.check(validate.SADDLE_EXPECTED, saddle.run(v, inputs.SADDLE_START),
                       f"saddle {v}")
    p1 = np.array([0.3, -0.7])
    for outer in "fr":
        for max_primal in (saddle.max_primal_r, saddle.max_primal_f):
            g = saddle.outer_gradient(outer, max_primal, p1, inputs.SADDLE_START)
            np.testing.assert_allclose(g, 2 * p1, rtol=1e-12)
