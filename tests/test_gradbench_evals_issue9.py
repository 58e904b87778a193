"""GradBench's ode, lstm, gmm and det evals (``benchmarks/gradbench``), written the way a
numpy user writes them (issue 9's acceptance programs), give outputs GradBench's
validator accepts on its small inputs.

Expected outputs are GradBench's: the recorded outputs of its golden tool
(``tools/manual``, hand-written derivatives, ``data/golden``, see ``make_golden.py``),
compared with GradBench's rule (``validate.mismatches``, tolerance 1e-4).  The programs
use the constructs issue 9 adds: arrays re-bound in traced loops (``y = y + h * k`` in
ode's Runge-Kutta loop, ``x = hidden`` and ``hidden, cell = lstm_step(...)`` in lstm),
``np.triu_indices`` and the fancy-indexed store ``Qs[:, rows, cols] = l`` in gmm,
``math.lgamma`` over a generator in gmm's prior, and ``tuple(range(A.shape[0]))`` with
recursion on tuples in det.  Gradients are also checked against central differences of
the compiled primal, and the loops must stay loops (the traced IR does not grow with the
trip count).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import isozyme as iz
from isozyme import Const, ForwardWithPrimal

# benchmarks/ holds the ``gradbench`` package; on sys.path only while importing it, so
# the other benchmark scripts there do not become importable top-level modules.
_BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
sys.path.insert(0, _BENCHMARKS)
try:
    from gradbench import det, gmm, inputs, lstm, ode, validate
finally:
    sys.path.remove(_BENCHMARKS)


def _central_differences(f, x: np.ndarray, idx: list[int], h: float) -> np.ndarray:
    """(f(x + h e_i) - f(x - h e_i)) / 2h for the flat indices ``idx`` of ``x``."""
    out = []
    for i in idx:
        xp, xm = x.copy(), x.copy()
        xp.reshape(-1)[i] += h
        xm.reshape(-1)[i] -= h
        out.append((f(xp) - f(xm)) / (2 * h))
    return np.array(out)


def test_ode_golden():
    """primal and gradient on GradBench's three smallest inputs (n = 1000 and 10000,
    s = 1 and 10): Runge-Kutta with ``y = y + h / 6 * (...)`` re-bound in the loop."""
    for inp in inputs.ode_inputs():
        gold = validate.golden("ode")[inp.description]
        y = ode.run_primal(inp)
        validate.check(gold["primal"], y, f"ode primal {inp.description}")
        np.testing.assert_allclose(y, ode.primal(inp.x, inp.s), rtol=1e-13, atol=1e-300)
        validate.check(gold["gradient"], ode.run_gradient(inp), f"ode gradient {inp.description}")
    bad = np.array(gold["primal"])
    bad[3] += 1e-3
    assert validate.mismatches(gold["primal"], bad)  # the comparison can fail


def test_ode_gradient_matches_differences():
    """On a short system (n = 6, 5 steps) the last component depends on every x: the
    reverse gradient through the 5 steps matches central differences of the compiled
    primal, and the exact solution's derivative (the golden tool's) to the method's
    accuracy."""
    x = np.array([0.9, 0.4, 0.7, 0.2, 0.5, 0.8])
    inp = inputs.ODEInput(json={}, x=x, s=5)
    g = ode.run_gradient(inp)
    last = lambda v: ode.run_primal(inputs.ODEInput(json={}, x=v, s=5))[-1]  # noqa: E731
    fd = _central_differences(last, x, list(range(6)), 1e-6)
    np.testing.assert_allclose(g, fd, rtol=1e-7)
    y_exact = x[0] * np.prod(x[1:] * ode.TF / np.arange(2, 7)) * ode.TF  # x0 t^6/6! prod x_i
    np.testing.assert_allclose(g, y_exact / x, rtol=2e-2)


def test_ode_loop_stays_a_loop():
    """The traced IR of the Runge-Kutta loop is the same size for 1 and 100 steps and
    for 10 and 1000 unknowns: the steps are an ``scf.for`` carrying ``y``."""
    sizes = set()
    for n, s in ((10, 1), (1000, 100)):
        text = iz.ir(ForwardWithPrimal, ode.primal, Const(np.full(n, 0.5)), Const(s),
                     stage="traced")
        assert "scf.for" in text
        sizes.add(len(text.splitlines()))
    assert len(sizes) == 1


def test_lstm_golden():
    """objective and jacobian on ADBench's l = 2, c = 1024 input (``hidden, cell =
    lstm_step(...)`` and ``x = hidden`` re-bound in the loop over layers)."""
    f = inputs.lstm_files()[0]
    inp, gold = inputs.load_lstm(f), validate.golden("lstm")[f.stem]
    validate.check(gold["objective"], lstm.run_objective(inp), "lstm objective")
    jac = lstm.run_jacobian(inp)
    assert jac.shape == (inp.main_params.size + inp.extra_params.size,)
    validate.check(gold["jacobian"], jac, "lstm jacobian")
    bad = jac.copy()
    bad[7] += 1e-3
    assert validate.mismatches(gold["jacobian"], bad)


def test_lstm_gradient_matches_differences():
    """On 12 characters of the l = 4 input, the gradient matches central differences of
    the compiled objective in main and extra parameters."""
    inp = inputs.load_lstm(inputs.lstm_files()[1])
    short = inputs.LSTMInput(json={}, main_params=inp.main_params,
                             extra_params=inp.extra_params, state=inp.state,
                             sequence=inp.sequence[:12].copy())
    jac = lstm.run_jacobian(short)
    n_main = short.main_params.size

    def loss(main_params: np.ndarray, extra_params: np.ndarray) -> float:
        return lstm.run_objective(inputs.LSTMInput(
            json={}, main_params=main_params, extra_params=extra_params, state=short.state,
            sequence=short.sequence))

    idx = [0, 5, 17, 60, n_main - 1]
    fd = _central_differences(lambda m: loss(m, short.extra_params), short.main_params, idx,
                               1e-6)
    np.testing.assert_allclose(jac[idx], fd, rtol=1e-5, atol=1e-9)
    idx = [0, 20, 41]
    fd = _central_differences(lambda e: loss(short.main_params, e), short.extra_params, idx,
                              1e-6)
    np.testing.assert_allclose(jac[[n_main + i for i in idx]], fd, rtol=1e-5, atol=1e-9)


def test_lstm_loop_stays_a_loop():
    """The traced IR does not grow with the sequence or the number of layers."""
    inp = inputs.load_lstm(inputs.lstm_files()[1])
    sizes = set()
    for layers, chars in ((1, 3), (4, 1024)):
        text = iz.ir(ForwardWithPrimal, lstm.objective, Const(inp.main_params[:2 * layers]),
                     Const(inp.extra_params), Const(inp.state[:2 * layers]),
                     Const(inp.sequence[:chars]), stage="traced")
        assert "scf.for" in text
        sizes.add(len(text.splitlines()))
    assert len(sizes) == 1


def test_gmm_golden():
    """objective and jacobian on (d, k) = (2, 5) and (10, 5), n = 1000 (``Qs[:, rows,
    cols] = l`` from ``np.triu_indices``, ``math.lgamma`` in the prior)."""
    for inp in inputs.gmm_inputs()[::2]:
        gold = validate.golden("gmm")[inp.description]
        validate.check(gold["objective"], gmm.run_objective(inp), f"gmm objective {inp.description}")
        jac = gmm.run_jacobian(inp)
        validate.check(gold["jacobian"], jac, f"gmm jacobian {inp.description}")
    bad = dict(jac, l=[[v * 1.01 for v in row] for row in jac["l"]])
    assert validate.mismatches(gold["jacobian"], bad)


def test_gmm_gradient_matches_differences():
    """On 20 points in 3 dimensions, 4 components, m = 2, gamma = 0.7, the gradient in
    l (the fancy-indexed store's adjoint is a gather) and q (the diagonal's) matches
    central differences of the compiled objective."""
    inp = inputs.gmm_input(d=3, k=4, n=20, m=2, gamma=0.7)
    jac = gmm.run_jacobian(inp)
    for name in ("l", "q", "mu", "alpha"):
        arr = getattr(inp, name)

        def obj(v: np.ndarray, name: str = name) -> float:
            return gmm.run_objective(inputs.GMMInput(**{**inp.__dict__, name: v}))

        idx = list(range(arr.size))
        fd = _central_differences(obj, arr, idx, 1e-6)
        np.testing.assert_allclose(np.array(jac[name]).reshape(-1), fd, rtol=1e-6, atol=1e-7)


def test_det_golden():
    """primal and gradient for ell = 5, GradBench's smallest (recursion on the tuples of
    remaining rows and columns, from ``tuple(range(A.shape[0]))``); the gradient is the
    cofactor matrix.  (ell = 6 compiles for minutes: run.py checks it.)"""
    for inp in inputs.det_inputs((5,)):
        gold = validate.golden("det")[inp.description]
        validate.check(gold["primal"], det.run_primal(inp), f"det primal {inp.description}")
        g = det.run_gradient(inp)
        validate.check(gold["gradient"], g, f"det gradient {inp.description}")
        cofactors = np.linalg.det(inp.A) * np.linalg.inv(inp.A).T
        np.testing.assert_allclose(g, cofactors.reshape(-1), rtol=1e-10)
    assert validate.mismatches(gold["gradient"], g[::-1])


def test_det_sizes_compile_separately():
    """The matrix's size is fixed per compilation: a 3 x 3 and a 4 x 4 matrix give their
    own determinants (exact values) from the same function."""
    A3 = np.array([[2.0, 0.0, 1.0], [1.0, 3.0, 0.0], [0.0, 1.0, 4.0]])
    assert det.run_primal(inputs.DetInput(json={}, A=A3)) == pytest.approx(25.0, rel=1e-14)
    A4 = np.diag([1.0, 2.0, 3.0, 4.0]) + np.triu(np.ones((4, 4)), 1)
    assert det.run_primal(inputs.DetInput(json={}, A=A4)) == pytest.approx(24.0, rel=1e-14)
    g3 = det.run_gradient(inputs.DetInput(json={}, A=A3)).reshape(3, 3)
    np.testing.assert_allclose(g3, 25.0 * np.linalg.inv(A3).T, rtol=1e-12)


def test_forward_mode_matches_reverse():
    """The four programs differentiate in forward mode too: ``gradient(Forward, ...)``
    (vector forward sweeps through the carried arrays, the fancy-indexed store and the
    recursion) equals the reverse gradient on small inputs."""
    from isozyme import Forward, Reverse

    x = np.array([0.9, 0.4, 0.7, 0.2, 0.5, 0.8])
    fwd, _ = iz.gradient(Forward, ode.last, x, Const(5))
    np.testing.assert_allclose(fwd, ode.run_gradient(inputs.ODEInput(json={}, x=x, s=5)),
                               rtol=1e-12)

    inp = inputs.load_lstm(inputs.lstm_files()[0])
    seq = inp.sequence[:6].copy()
    fwd = iz.gradient(Forward, lstm.objective, inp.main_params, inp.extra_params,
                      Const(inp.state), Const(seq))
    rev = iz.gradient(Reverse, lstm.objective, inp.main_params, inp.extra_params,
                      Const(inp.state), Const(seq))
    for f, r in zip(fwd[:2], rev[:2]):
        np.testing.assert_allclose(f, r, rtol=1e-10, atol=1e-15)

    g = inputs.gmm_input(d=3, k=2, n=7, m=1, gamma=0.5)
    args = (g.alpha, g.mu, g.q, g.l, Const(g.x), Const(g.m), Const(g.gamma))
    fwd = iz.gradient(Forward, gmm.objective, *args)
    rev = iz.gradient(Reverse, gmm.objective, *args)
    for f, r in zip(fwd[:4], rev[:4]):
        np.testing.assert_allclose(f, r, rtol=1e-10, atol=1e-12)

    A = inputs.det_inputs((5,))[0].A[:4, :4].copy()
    (fwd,) = iz.gradient(Forward, det.det, A)
    np.testing.assert_allclose(fwd, np.linalg.det(A) * np.linalg.inv(A).T, rtol=1e-10)
