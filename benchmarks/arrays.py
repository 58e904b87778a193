"""Array workloads: isozyme's compiled primal and gradient beside JAX, numba and PyTorch.

    python benchmarks/arrays.py            # full run, writes benchmarks/results/arrays-cpu.*
    python benchmarks/arrays.py --quick    # fewer/shorter repeats, for a smoke test
    python benchmarks/arrays.py --no-write # print only
    python benchmarks/arrays.py --cpu-time # process CPU time, for a loaded machine

Workloads (float64, one process, one thread):

One thread per tool: isozyme runs with ``isozyme.config(threads=1)``
(``ISOZYME_THREADS=1``); numba, OpenMP, OpenBLAS and MKL get ``*_NUM_THREADS=1``; XLA gets
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``
(checked: JAX's process CPU time over wall time is 1.00 on these workloads with and
without the flags, so XLA ran them on one thread either way); PyTorch
``set_num_threads(1)``.  The report records the process's CPU time over wall time for
the whole run (about 1.0 when nothing ran in parallel) and its CPU affinity; to pin the
process to one core as well, run it under ``taskset -c 0``.

1. **rosenbrock**, n = 10**6, loop form
   ``for i in range(len(x) - 1): s += (1 - x[i])**2 + 100 (x[i+1] - x[i]**2)**2``;
   the vectorized form ``np.sum((1 - x[:-1])**2 + ...)`` is tried too and reported
   "unsupported" when isozyme's tracer rejects it.
2. **heat**: 1-D explicit heat stencil, n = 10**4, 100 steps (a local ``np.zeros(n)`` per
   step, copied back into ``u``), loss = sum of squares.
3. **gmm**: ADBench's GMM objective, d = 10, k = 25, n = 1000 (loop form for isozyme:
   points x components x dimensions, logsumexp over the components of each point; the
   log-gamma constant of the Wishart prior is computed outside and passed in).  As in
   ADBench's objective and the JAX version, ``exp(icf[c, :d])`` and ``sum(icf[c, :d])``
   are computed once per component, into local arrays (until 2026-12-01 the loop form
   recomputed them for every point: 250,000 exps instead of 250).

Measured for each (``timeit``-style: each repeat runs enough calls to last
``--min-time`` seconds; best and median of ``--repeat`` repeats, per call; the repeats
are interleaved round-robin over the tools of a workload so that load from other
processes hits every tool alike):

* isozyme **primal**: ``autodiff(ForwardWithPrimal, f, Const, Const(x), ...)``.  isozyme
  has no separate "compile only the primal" entry point; with every argument and the
  return ``Const`` the forward pass has nothing to differentiate and the compiled code is
  the primal alone (the script checks the ``simplified`` IR has no derivative ops and
  records that check).  For reference the forward pass with a zero tangent,
  ``autodiff(ForwardWithPrimal, f, Duplicated(x, zeros))``, is timed too.
* isozyme **gradient**: ``autodiff(Reverse, f, Active, Duplicated(x, dx))`` with
  ``dx[:] = 0`` inside the timed call (the shadow accumulates: zeroing is part of the
  user's cost; rosenbrock's 8 MB memset is ~0.3 ms of it), and the same with
  ``ReverseWithPrimal``; for rosenbrock and heat also without the zeroing ("shadow not
  zeroed", the cost of the compiled code alone).
* JAX ``jit(f)`` and ``jit(grad(f))`` of a vectorized jnp formulation (x64), with
  ``block_until_ready``.
* numba ``@njit`` (``fastmath=False``: isozyme reassociates only its own adjoint sums)
  of the same loop-form function (primal), and hand-written adjoints, the reference of
  the "within 1.2x" goal: rosenbrock's in gather form, the gradient alone (what
  ``Reverse`` and ``jit(grad)`` compute; its loop vectorizes), and value and gradient in
  one pass (beside ``ReverseWithPrimal``: its sum is a serial reduction); heat's with a
  double buffer forward and the transposed step in gather form (the stencil is linear,
  so it keeps no tape); GMM's per point, scattering the logsumexp's softmax weights into
  the component's parameters (it zeroes its gradient inside).
* PyTorch (CPU, one thread): the vectorized function under ``no_grad`` and
  ``backward()``.

The in-place heat workload copies ``u`` (10**4 doubles, about 2 us) inside every timed
call of every tool.  Each isozyme gradient is checked against JAX at the benchmark size
and against central finite differences at a small size before timing; mismatches are
reported.  Timings are reported, never asserted: each goal is marked met or not met.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMBA_NUM_THREADS", "ISOZYME_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from machine_info import machine  # noqa: E402

import numpy as np  # noqa: E402

# issue 12's goals
GOAL_GRAD_OVER_PRIMAL = 2.5
GOAL_ISOZYME_OVER_JAX = 1.0  # strictly faster: isozyme / JAX < 1
GOAL_ISOZYME_OVER_ADJOINT = 1.2

ROSEN_N = 10**6
HEAT_N, HEAT_STEPS = 10**4, 100
GMM_D, GMM_K, GMM_N = 10, 25, 1000


# =========================================================================== workloads
# isozyme reads these functions' source: keep them at module level in this file.
def rosenbrock_loop(x):
    s = 0.0
    for i in range(len(x) - 1):
        s += (1.0 - x[i]) ** 2 + 100.0 * (x[i + 1] - x[i] ** 2) ** 2
    return s


def rosenbrock_vec(x):
    return np.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)


def heat_loop(u, steps):
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


def gmm_loop(alphas, means, icf, x, wishart_gamma, wishart_m, log_gamma_term):
    """ADBench's GMM objective.  icf[c, :d] are the log-diagonal of component c's
    inverse Cholesky factor, icf[c, d:] its strictly lower part, packed column by column;
    log_gamma_term is log Gamma_d((d + m + 1) / 2), which does not depend on the inputs."""
    n = x.shape[0]
    k = means.shape[0]
    d = means.shape[1]
    # once per component, as ADBench's objective (and the JAX version) do
    qdiag = np.zeros((k, d))
    sumq = np.zeros(k)
    for c in range(k):
        for r in range(d):
            qdiag[c, r] = math.exp(icf[c, r])
            sumq[c] += icf[c, r]
    main = np.zeros(k)
    slse = 0.0
    for i in range(n):
        for c in range(k):
            sq = 0.0
            for r in range(d):
                qx = qdiag[c, r] * (x[i, r] - means[c, r])
                for j in range(r):
                    qx += icf[c, d + j * (2 * d - j - 1) // 2 + r - j - 1] * (x[i, j] - means[c, j])
                sq += qx * qx
            main[c] = alphas[c] + sumq[c] - 0.5 * sq
        mx = main[0]
        for c in range(1, k):
            if main[c] > mx:
                mx = main[c]
        se = 0.0
        for c in range(k):
            se += math.exp(main[c] - mx)
        slse += mx + math.log(se)
    amx = alphas[0]
    for c in range(1, k):
        if alphas[c] > amx:
            amx = alphas[c]
    ase = 0.0
    for c in range(k):
        ase += math.exp(alphas[c] - amx)
    lse_alphas = amx + math.log(ase)
    nn = d + wishart_m + 1
    prior = 0.0
    for c in range(k):
        fro = 0.0
        for r in range(d):
            fro += qdiag[c, r] * qdiag[c, r]
        for j in range(d, icf.shape[1]):
            fro += icf[c, j] * icf[c, j]
        prior += 0.5 * wishart_gamma * wishart_gamma * fro - wishart_m * sumq[c]
    cst = nn * d * (math.log(wishart_gamma) - 0.5 * math.log(2.0)) - log_gamma_term
    constant = -n * d * 0.5 * math.log(2.0 * math.pi)
    return constant + slse - n * lse_alphas + prior - k * cst


def tril_indices_packed(d: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the strictly lower entries in icf[:, d:]'s column-major order."""
    rows, cols = [], []
    for j in range(d):
        for r in range(j + 1, d):
            rows.append(r)
            cols.append(j)
    return np.array(rows), np.array(cols)


def log_gamma_term(d: int, m: int) -> float:
    a = 0.5 * (d + m + 1)
    return 0.25 * d * (d - 1) * math.log(math.pi) + sum(
        math.lgamma(a + 0.5 * (1 - j)) for j in range(1, d + 1))


# =========================================================================== timing
def first_call_ms(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1e3


def fd_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        p, m = x.copy(), x.copy()
        p[idx] += h
        m[idx] -= h
        g[idx] = (f(p) - f(m)) / (2 * h)
    return g


def compare(name: str, got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> dict:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    err = np.abs(got - want)
    ok = bool(np.all(err <= atol + rtol * np.abs(want)))
    rel = float(np.max(err / np.maximum(np.abs(want), atol / rtol)))
    return {"against": name, "ok": ok, "max_abs_err": float(err.max()),
            "max_scaled_rel_err": rel, "rtol": rtol, "atol": atol}


# =========================================================================== peers
class Peers:
    """The optional peers, imported once (after the thread environment is set)."""

    def __init__(self, use_jax: bool, use_numba: bool, use_torch: bool) -> None:
        self.jax = self.jnp = self.numba = self.torch = None
        self.skipped: dict[str, str] = {}
        self.versions: dict[str, str | None] = {}
        if use_jax:
            try:
                import jax
                import jax.numpy as jnp

                jax.config.update("jax_enable_x64", True)
                jax.config.update("jax_platforms", "cpu")
                self.jax, self.jnp = jax, jnp
                self.versions["jax"] = jax.__version__
            except Exception as e:
                self.skipped["jax"] = f"import jax failed: {type(e).__name__}: {e}"
        else:
            self.skipped["jax"] = "--no-jax"
        if use_numba:
            try:
                import numba

                self.numba = numba
                self.versions["numba"] = numba.__version__
            except Exception as e:
                self.skipped["numba"] = (
                    f"import numba failed ({type(e).__name__}: {e}); install it only if "
                    "`pip install --dry-run numba` keeps the installed llvmlite")
        else:
            self.skipped["numba"] = "--no-numba"
        if use_torch:
            try:
                import torch

                torch.set_num_threads(1)
                try:
                    torch.set_num_interop_threads(1)
                except RuntimeError:
                    pass
                self.torch = torch
                self.versions["torch"] = torch.__version__
            except Exception as e:
                self.skipped["torch"] = f"import torch failed: {type(e).__name__}: {e}"
        else:
            self.skipped["torch"] = "--no-torch"


# =========================================================================== numba adjoints
def numba_kernels(numba) -> dict[str, Callable]:
    njit = numba.njit(cache=False, fastmath=False)

    @njit
    def rosenbrock_fused_adjoint(x, g):
        """Value and gradient in one pass, gradient in gather form (g[i] written once);
        the first and last elements are peeled so the loop body has no branch (n >= 2)."""
        n = len(x)
        a = 1.0 - x[0]
        b = x[1] - x[0] * x[0]
        s = a * a + 100.0 * b * b
        g[0] = -2.0 * a - 400.0 * x[0] * b
        for i in range(1, n - 1):
            xi = x[i]
            bp = xi - x[i - 1] * x[i - 1]
            a = 1.0 - xi
            b = x[i + 1] - xi * xi
            s += a * a + 100.0 * b * b
            g[i] = 200.0 * bp - 2.0 * a - 400.0 * xi * b
        g[n - 1] = 200.0 * (x[n - 1] - x[n - 2] * x[n - 2])
        return s

    @njit
    def rosenbrock_gather_adjoint(x, g):
        """The gradient alone (what ``Reverse`` and ``jit(grad)`` compute), in gather
        form: g[i] written once from x[i-1], x[i], x[i+1]; no reduction, so LLVM
        vectorizes the loop (n >= 2)."""
        n = len(x)
        g[0] = -2.0 * (1.0 - x[0]) - 400.0 * x[0] * (x[1] - x[0] * x[0])
        for i in range(1, n - 1):
            xi = x[i]
            g[i] = (200.0 * (xi - x[i - 1] * x[i - 1]) - 2.0 * (1.0 - xi)
                    - 400.0 * xi * (x[i + 1] - xi * xi))
        g[n - 1] = 200.0 * (x[n - 1] - x[n - 2] * x[n - 2])

    @njit
    def gmm_fused_adjoint(alphas, means, icf, x, wishart_gamma, wishart_m, da, dm, di):
        """ADBench's GMM gradient by hand (zeroes and fills da, dm, di; returns the
        objective without its constant terms): per point, the forward pass keeps
        x - mu and Q(x - mu) of every component, then the softmax weights of the
        logsumexp scatter into the component's parameters; the priors' terms last."""
        n, d = x.shape
        k = alphas.shape[0]
        da[:] = 0.0
        dm[:] = 0.0
        di[:] = 0.0
        qdiag = np.exp(icf[:, :d])
        sumq = np.zeros(k)
        for c in range(k):
            for r in range(d):
                sumq[c] += icf[c, r]
        xc = np.empty((k, d))
        qx = np.empty((k, d))
        main = np.empty(k)
        slse = 0.0
        for i in range(n):
            for c in range(k):
                for r in range(d):
                    xc[c, r] = x[i, r] - means[c, r]
                sq = 0.0
                for r in range(d):
                    v = qdiag[c, r] * xc[c, r]
                    for j in range(r):
                        v += icf[c, d + j * (2 * d - j - 1) // 2 + r - j - 1] * xc[c, j]
                    qx[c, r] = v
                    sq += v * v
                main[c] = alphas[c] + sumq[c] - 0.5 * sq
            mx = main[0]
            for c in range(1, k):
                mx = max(mx, main[c])
            se = 0.0
            for c in range(k):
                main[c] = np.exp(main[c] - mx)
                se += main[c]
            slse += mx + np.log(se)
            for c in range(k):
                w = main[c] / se
                da[c] += w
                for r in range(d):
                    gq = -w * qx[c, r]  # d(-0.5 w |Qxc|^2) / d(Qxc)_r
                    di[c, r] += w + gq * qdiag[c, r] * xc[c, r]
                    dm[c, r] -= gq * qdiag[c, r]
                    for j in range(r):
                        p = d + j * (2 * d - j - 1) // 2 + r - j - 1
                        di[c, p] += gq * xc[c, j]
                        dm[c, j] -= gq * icf[c, p]
        amx = alphas[0]
        for c in range(1, k):
            amx = max(amx, alphas[c])
        ase = 0.0
        for c in range(k):
            ase += np.exp(alphas[c] - amx)
        g2 = wishart_gamma * wishart_gamma
        prior = 0.0
        for c in range(k):
            da[c] -= n * np.exp(alphas[c] - amx) / ase
            fro = 0.0
            for r in range(d):
                q2 = qdiag[c, r] * qdiag[c, r]
                fro += q2
                di[c, r] += g2 * q2 - wishart_m
            for j in range(d, icf.shape[1]):
                fro += icf[c, j] * icf[c, j]
                di[c, j] += g2 * icf[c, j]
            prior += 0.5 * g2 * fro - wishart_m * sumq[c]
        return slse - n * (amx + np.log(ase)) + prior

    @njit
    def heat_fused_adjoint(u, steps, g):
        """Forward sweep with a double buffer (no tape: the step is linear), loss, then the
        transposed step in gather form (n >= 4).  u is used as one of the buffers."""
        n = len(u)
        a = u
        b = np.empty(n)
        b[0] = a[0]
        b[n - 1] = a[n - 1]
        for t in range(steps):
            for i in range(1, n - 1):
                b[i] = a[i] + 0.1 * (a[i - 1] - 2.0 * a[i] + a[i + 1])
            a, b = b, a
        s = 0.0
        ga = np.empty(n)
        gb = np.empty(n)
        for i in range(n):
            s += a[i] * a[i]
            ga[i] = 2.0 * a[i]
        for t in range(steps):
            # d(new)/d(old): interior rows i -> 0.8 at i, 0.1 at i-1 and i+1; boundary
            # rows are the identity.  Gather: gb[j] = sum_i ga[i] * A[i, j].
            gb[0] = ga[0] + 0.1 * ga[1]
            gb[1] = 0.8 * ga[1] + 0.1 * ga[2]
            for j in range(2, n - 2):
                gb[j] = 0.8 * ga[j] + 0.1 * (ga[j - 1] + ga[j + 1])
            gb[n - 2] = 0.8 * ga[n - 2] + 0.1 * ga[n - 3]
            gb[n - 1] = ga[n - 1] + 0.1 * ga[n - 2]
            ga, gb = gb, ga
        g[:] = ga
        return s

    return {
        "rosenbrock_primal": numba.njit(rosenbrock_loop),
        "rosenbrock_adjoint": rosenbrock_gather_adjoint,
        "rosenbrock_adjoint_with_value": rosenbrock_fused_adjoint,
        "heat_primal": numba.njit(heat_loop),
        "heat_adjoint": heat_fused_adjoint,
        "gmm_primal": numba.njit(gmm_loop),
        "gmm_adjoint": gmm_fused_adjoint,
    }


# =========================================================================== JAX / torch
def jax_functions(jax, jnp, d: int) -> dict[str, Callable]:
    rows, cols = tril_indices_packed(d)

    def rosenbrock(x):
        return jnp.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)

    def heat(u, steps):
        def step(_, v):
            return v.at[1:-1].set(v[1:-1] + 0.1 * (v[:-2] - 2.0 * v[1:-1] + v[2:]))

        v = jax.lax.fori_loop(0, steps, step, u)
        return jnp.sum(v * v)

    def gmm(alphas, means, icf, x, wishart_gamma, wishart_m, lg):
        n = x.shape[0]
        k = alphas.shape[0]
        qdiag = jnp.exp(icf[:, :d])
        sum_qs = jnp.sum(icf[:, :d], axis=1)
        ls = jnp.zeros((k, d, d)).at[:, rows, cols].set(icf[:, d:])
        xc = x[:, None, :] - means[None, :, :]                    # n k d
        qxc = qdiag[None] * xc + jnp.einsum("kij,nkj->nki", ls, xc)
        main = alphas[None] + sum_qs[None] - 0.5 * jnp.sum(qxc * qxc, axis=2)
        slse = jnp.sum(jax.scipy.special.logsumexp(main, axis=1))
        lse_alphas = jax.scipy.special.logsumexp(alphas)
        nn = d + wishart_m + 1
        fro = jnp.sum(qdiag * qdiag, axis=1) + jnp.sum(icf[:, d:] ** 2, axis=1)
        prior = jnp.sum(0.5 * wishart_gamma**2 * fro - wishart_m * sum_qs)
        cst = nn * d * (jnp.log(wishart_gamma) - 0.5 * jnp.log(2.0)) - lg
        constant = -n * d * 0.5 * jnp.log(2.0 * jnp.pi)
        return constant + slse - n * lse_alphas + prior - k * cst

    return {"rosenbrock": rosenbrock, "heat": heat, "gmm": gmm}


def torch_functions(torch, d: int) -> dict[str, Callable]:
    rows, cols = (torch.as_tensor(a) for a in tril_indices_packed(d))

    def rosenbrock(x):
        return torch.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)

    def heat(u, steps):
        for _ in range(steps):
            u = torch.cat([u[:1], u[1:-1] + 0.1 * (u[:-2] - 2.0 * u[1:-1] + u[2:]), u[-1:]])
        return torch.sum(u * u)

    def gmm(alphas, means, icf, x, wishart_gamma, wishart_m, lg):
        n = x.shape[0]
        k = alphas.shape[0]
        qdiag = torch.exp(icf[:, :d])
        sum_qs = torch.sum(icf[:, :d], dim=1)
        ls = torch.zeros((k, d, d), dtype=icf.dtype)
        ls[:, rows, cols] = icf[:, d:]
        xc = x[:, None, :] - means[None, :, :]
        qxc = qdiag[None] * xc + torch.einsum("kij,nkj->nki", ls, xc)
        main = alphas[None] + sum_qs[None] - 0.5 * torch.sum(qxc * qxc, dim=2)
        slse = torch.sum(torch.logsumexp(main, dim=1))
        lse_alphas = torch.logsumexp(alphas, dim=0)
        nn = d + wishart_m + 1
        fro = torch.sum(qdiag * qdiag, dim=1) + torch.sum(icf[:, d:] ** 2, dim=1)
        prior = torch.sum(0.5 * wishart_gamma**2 * fro - wishart_m * sum_qs)
        cst = nn * d * (math.log(wishart_gamma) - 0.5 * math.log(2.0)) - lg
        constant = -n * d * 0.5 * math.log(2.0 * math.pi)
        return constant + slse - n * lse_alphas + prior - k * cst

    return {"rosenbrock": rosenbrock, "heat": heat, "gmm": gmm}


# =========================================================================== one workload
DERIV_OPS = ("enzyme.", "Cache")


def primal_ir_is_plain(iz, f: Callable, *args) -> dict:
    """Whether the Const-only ForwardWithPrimal request compiles to the primal alone."""
    try:
        text = iz.ir(iz.ForwardWithPrimal, f, iz.Const, *[iz.Const(a) for a in args],
                     stage="simplified")
    except Exception as e:
        return {"checked": False, "error": f"{type(e).__name__}: {e}"}
    return {"checked": True, "plain_primal": not any(s in text for s in DERIV_OPS),
            "results": text.count("func.return")}


def run_tool(res: dict, key: str, label: str, call: Callable[[], object], args) -> None:
    """Register a tool's call and warm it up (the first call is timed on its own).  A
    failure is recorded instead of raised so one broken tool does not hide the others.
    The timing itself is done by time_interleaved, for all tools of a workload together."""
    try:
        ms = first_call_ms(call)
        # --cpu-time: the process's CPU time, which other processes' load does not
        # inflate (valid because every tool runs on one thread)
        timer = timeit.Timer(call, timer=time.process_time if args.cpu_time
                             else time.perf_counter)
        number = 1
        while timer.timeit(number) < args.min_time:
            number *= 2
        res["timings"][key] = {"label": label, "first_timed_call_ms": ms,
                               "calls_per_repeat": number}
        res.setdefault("_timers", []).append((key, timer, number))
    except Exception as e:
        res["timings"][key] = {"label": label, "error": f"{type(e).__name__}: {e}",
                               "traceback": traceback.format_exc(limit=3)}
        print(f"  {key}: FAILED {type(e).__name__}: {e}")


def time_interleaved(res: dict, args) -> None:
    """Round-robin: each round times every tool once (calls_per_repeat calls), so load
    from other processes hits all tools alike; best and median over the rounds."""
    timers = res.pop("_timers", [])
    samples: dict[str, list[float]] = {k: [] for k, _, _ in timers}
    for _ in range(args.repeat):
        for key, timer, number in timers:
            try:
                samples[key].append(timer.timeit(number) / number * 1e3)
            except Exception as e:
                res["timings"][key]["error"] = f"{type(e).__name__}: {e}"
    for key, ts in samples.items():
        t = res["timings"][key]
        if ts and "error" not in t:
            t.update(best_ms=min(ts), median_ms=statistics.median(ts), max_ms=max(ts),
                     repeats=len(ts))


def bench_rosenbrock(iz, peers: Peers, kern, jf, tf, args) -> dict:
    n = args.rosen_n
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, n)
    dx = np.zeros(n)
    res: dict = {"size": {"n": n}, "timings": {}, "checks": {}}

    # correctness before timing: small n vs finite differences, full n vs JAX
    xs = rng.uniform(-1.0, 1.0, 9)
    g = np.zeros(9)
    iz.autodiff(iz.Reverse, rosenbrock_loop, iz.Active, iz.Duplicated(xs.copy(), g))
    res["checks"]["isozyme_grad_vs_fd_n9"] = compare(
        "central differences", g, fd_gradient(rosenbrock_loop, xs), 1e-6, 1e-6)
    iz.autodiff(iz.Reverse, rosenbrock_loop, iz.Active, iz.Duplicated(x, dx))
    _, val = iz.autodiff(iz.ForwardWithPrimal, rosenbrock_loop, iz.Const, iz.Const(x))
    if peers.jax:
        jx = peers.jnp.asarray(x)
        gj = np.asarray(peers.jax.jit(peers.jax.grad(jf["rosenbrock"]))(jx))
        res["checks"]["isozyme_grad_vs_jax"] = compare("jax.grad", dx, gj, 1e-10, 1e-9)
        res["checks"]["isozyme_primal_vs_jax"] = compare(
            "jax", val, float(peers.jax.jit(jf["rosenbrock"])(jx)), 1e-10, 0.0)
    if kern:
        gn = np.empty(n)
        kern["rosenbrock_adjoint"](x, gn)
        res["checks"]["isozyme_grad_vs_numba_adjoint"] = compare(
            "numba hand-written adjoint", dx, gn, 1e-10, 1e-9)
        gv = np.empty(n)
        kern["rosenbrock_adjoint_with_value"](x, gv)
        res["checks"]["isozyme_grad_vs_numba_adjoint_with_value"] = compare(
            "numba hand-written value and gradient", dx, gv, 1e-10, 1e-9)
    res["primal_ir"] = primal_ir_is_plain(iz, rosenbrock_loop, x[:4])

    # vectorized isozyme form: supported or not
    try:
        dv = np.zeros(9)
        iz.autodiff(iz.Reverse, rosenbrock_vec, iz.Active, iz.Duplicated(xs.copy(), dv))
        chk = compare("central differences", dv, fd_gradient(rosenbrock_loop, xs), 1e-6, 1e-6)
        res["vectorized_isozyme"] = {"supported": True, "check_vs_fd_n9": chk}
    except Exception as e:
        res["vectorized_isozyme"] = {"supported": False,
                                     "error": f"{type(e).__name__}: {e}".splitlines()[0]}

    zeros = np.zeros(n)

    def iz_grad():
        dx[:] = 0.0
        return iz.autodiff(iz.Reverse, rosenbrock_loop, iz.Active, iz.Duplicated(x, dx))

    def iz_grad_wp():
        dx[:] = 0.0
        return iz.autodiff(iz.ReverseWithPrimal, rosenbrock_loop, iz.Active,
                           iz.Duplicated(x, dx))

    run_tool(res, "isozyme_primal", "isozyme primal (Const-only ForwardWithPrimal)",
             lambda: iz.autodiff(iz.ForwardWithPrimal, rosenbrock_loop, iz.Const, iz.Const(x)),
             args)
    run_tool(res, "isozyme_fwd_zero_tangent", "isozyme ForwardWithPrimal, zero tangent",
             lambda: iz.autodiff(iz.ForwardWithPrimal, rosenbrock_loop,
                                 iz.Duplicated(x, zeros)), args)
    run_tool(res, "isozyme_grad", "isozyme gradient (Reverse, dx zeroed)", iz_grad, args)
    run_tool(res, "isozyme_grad_accumulate", "isozyme gradient accumulating (dx not zeroed)",
             lambda: iz.autodiff(iz.Reverse, rosenbrock_loop, iz.Active,
                                 iz.Duplicated(x, dx)), args)
    run_tool(res, "isozyme_grad_with_primal", "isozyme ReverseWithPrimal (dx zeroed)",
             iz_grad_wp, args)
    if res["vectorized_isozyme"]["supported"]:
        dv = np.zeros(n)

        def iz_vec_grad():
            dv[:] = 0.0
            return iz.autodiff(iz.Reverse, rosenbrock_vec, iz.Active, iz.Duplicated(x, dv))

        run_tool(res, "isozyme_vec_primal", "isozyme vectorized primal",
                 lambda: iz.autodiff(iz.ForwardWithPrimal, rosenbrock_vec, iz.Const,
                                     iz.Const(x)), args)
        run_tool(res, "isozyme_vec_grad", "isozyme vectorized gradient", iz_vec_grad, args)
    if peers.jax:
        jax = peers.jax
        jx = peers.jnp.asarray(x)
        pf, gf = jax.jit(jf["rosenbrock"]), jax.jit(jax.grad(jf["rosenbrock"]))
        run_tool(res, "jax_primal", "JAX jit(f)", lambda: jax.block_until_ready(pf(jx)), args)
        run_tool(res, "jax_grad", "JAX jit(grad(f))", lambda: jax.block_until_ready(gf(jx)),
                 args)
    if kern:
        gn = np.empty(n)
        run_tool(res, "numba_primal", "numba @njit primal (loop form)",
                 lambda: kern["rosenbrock_primal"](x), args)
        run_tool(res, "numba_adjoint", "numba hand-written adjoint (gather, gradient only)",
                 lambda: kern["rosenbrock_adjoint"](x, gn), args)
        run_tool(res, "numba_adjoint_with_value", "numba hand-written value and gradient",
                 lambda: kern["rosenbrock_adjoint_with_value"](x, gn), args)
    if tf:
        torch = peers.torch
        tx = torch.from_numpy(x.copy())

        def torch_primal():
            with torch.no_grad():
                return tf["rosenbrock"](tx)

        def torch_grad():
            t = tx.detach().requires_grad_(True)
            tf["rosenbrock"](t).backward()
            return t.grad

        run_tool(res, "torch_primal", "PyTorch primal (no_grad)", torch_primal, args)
        run_tool(res, "torch_grad", "PyTorch backward()", torch_grad, args)
    return res


def bench_heat(iz, peers: Peers, kern, jf, tf, args) -> dict:
    n, steps = args.heat_n, HEAT_STEPS
    rng = np.random.default_rng(1)
    u0 = rng.uniform(-1.0, 1.0, n)
    du = np.zeros(n)
    res: dict = {"size": {"n": n, "steps": steps}, "timings": {}, "checks": {},
                 "note": "every timed call copies u0 (the function updates u in place)"}

    us = rng.uniform(-1.0, 1.0, 8)
    g = np.zeros(8)
    iz.autodiff(iz.Reverse, heat_loop, iz.Active, iz.Duplicated(us.copy(), g), 3)
    res["checks"]["isozyme_grad_vs_fd_n8_steps3"] = compare(
        "central differences", g, fd_gradient(lambda v: heat_loop(v.copy(), 3), us),
        1e-6, 1e-6)
    iz.autodiff(iz.Reverse, heat_loop, iz.Active, iz.Duplicated(u0.copy(), du), steps)
    _, val = iz.autodiff(iz.ForwardWithPrimal, heat_loop, iz.Const, iz.Const(u0.copy()),
                         steps)
    if peers.jax:
        ju = peers.jnp.asarray(u0)
        gj = np.asarray(peers.jax.jit(peers.jax.grad(jf["heat"]), static_argnums=1)(ju, steps))
        res["checks"]["isozyme_grad_vs_jax"] = compare("jax.grad", du, gj, 1e-10, 1e-12)
        res["checks"]["isozyme_primal_vs_jax"] = compare(
            "jax", val, float(peers.jax.jit(jf["heat"], static_argnums=1)(ju, steps)),
            1e-10, 0.0)
    if kern:
        gn = np.empty(n)
        kern["heat_adjoint"](u0.copy(), steps, gn)
        res["checks"]["isozyme_grad_vs_numba_adjoint"] = compare(
            "numba hand-written adjoint", du, gn, 1e-10, 1e-12)
    res["primal_ir"] = primal_ir_is_plain(iz, heat_loop, u0[:8].copy(), 2)

    zeros = np.zeros(n)

    def iz_primal():
        return iz.autodiff(iz.ForwardWithPrimal, heat_loop, iz.Const, iz.Const(u0.copy()),
                           steps)

    def iz_fwd0():
        return iz.autodiff(iz.ForwardWithPrimal, heat_loop,
                           iz.Duplicated(u0.copy(), zeros), steps)

    def iz_grad():
        du[:] = 0.0
        return iz.autodiff(iz.Reverse, heat_loop, iz.Active, iz.Duplicated(u0.copy(), du),
                           steps)

    def iz_grad_wp():
        du[:] = 0.0
        return iz.autodiff(iz.ReverseWithPrimal, heat_loop, iz.Active,
                           iz.Duplicated(u0.copy(), du), steps)

    run_tool(res, "isozyme_primal", "isozyme primal (Const-only ForwardWithPrimal)",
             iz_primal, args)
    run_tool(res, "isozyme_fwd_zero_tangent", "isozyme ForwardWithPrimal, zero tangent",
             iz_fwd0, args)
    run_tool(res, "isozyme_grad", "isozyme gradient (Reverse, dx zeroed)", iz_grad, args)
    run_tool(res, "isozyme_grad_accumulate", "isozyme gradient accumulating (du not zeroed)",
             lambda: iz.autodiff(iz.Reverse, heat_loop, iz.Active,
                                 iz.Duplicated(u0.copy(), du), steps), args)
    run_tool(res, "isozyme_grad_with_primal", "isozyme ReverseWithPrimal (dx zeroed)",
             iz_grad_wp, args)
    if peers.jax:
        jax = peers.jax
        ju = peers.jnp.asarray(u0)
        pf = jax.jit(jf["heat"], static_argnums=1)
        gf = jax.jit(jax.grad(jf["heat"]), static_argnums=1)
        run_tool(res, "jax_primal", "JAX jit(f)",
                 lambda: jax.block_until_ready(pf(ju, steps)), args)
        run_tool(res, "jax_grad", "JAX jit(grad(f))",
                 lambda: jax.block_until_ready(gf(ju, steps)), args)
    if kern:
        gn = np.empty(n)
        run_tool(res, "numba_primal", "numba @njit primal (loop form)",
                 lambda: kern["heat_primal"](u0.copy(), steps), args)
        run_tool(res, "numba_adjoint", "numba hand-written fused adjoint",
                 lambda: kern["heat_adjoint"](u0.copy(), steps, gn), args)
    if tf:
        torch = peers.torch
        tu = torch.from_numpy(u0.copy())

        def torch_primal():
            with torch.no_grad():
                return tf["heat"](tu, steps)

        def torch_grad():
            t = tu.detach().requires_grad_(True)
            tf["heat"](t, steps).backward()
            return t.grad

        run_tool(res, "torch_primal", "PyTorch primal (no_grad)", torch_primal, args)
        run_tool(res, "torch_grad", "PyTorch backward()", torch_grad, args)
    return res


def gmm_inputs(rng, d: int, k: int, n: int):
    alphas = rng.normal(size=k)
    means = rng.uniform(size=(k, d))
    icf = 0.1 * rng.normal(size=(k, d * (d + 1) // 2))
    x = rng.normal(size=(n, d))
    return alphas, means, icf, x


def bench_gmm(iz, peers: Peers, kern, jf, tf, args) -> dict:
    d, k, n = GMM_D, GMM_K, args.gmm_n
    gamma, m = 1.0, 0
    lg = log_gamma_term(d, m)
    rng = np.random.default_rng(2)
    alphas, means, icf, x = gmm_inputs(rng, d, k, n)
    res: dict = {"size": {"d": d, "k": k, "n": n}, "timings": {}, "checks": {},
                 "note": "gradient with respect to alphas, means and icf (x is Const)"}
    da, dm, di = np.zeros(k), np.zeros((k, d)), np.zeros_like(icf)

    def iz_grad():
        da[:] = 0.0
        dm[:] = 0.0
        di[:] = 0.0
        return iz.autodiff(iz.Reverse, gmm_loop, iz.Active, iz.Duplicated(alphas, da),
                           iz.Duplicated(means, dm), iz.Duplicated(icf, di), iz.Const(x),
                           gamma, m, lg)

    def iz_grad_wp():
        da[:] = 0.0
        dm[:] = 0.0
        di[:] = 0.0
        return iz.autodiff(iz.ReverseWithPrimal, gmm_loop, iz.Active,
                           iz.Duplicated(alphas, da), iz.Duplicated(means, dm),
                           iz.Duplicated(icf, di), iz.Const(x), gamma, m, lg)

    # small problem against finite differences (all three differentiated inputs)
    sd, sk, sn = 3, 3, 4
    sa, sm, si, sx = gmm_inputs(np.random.default_rng(3), sd, sk, sn)
    slg = log_gamma_term(sd, m)
    ga, gm, gi = np.zeros(sk), np.zeros((sk, sd)), np.zeros_like(si)
    iz.autodiff(iz.Reverse, gmm_loop, iz.Active, iz.Duplicated(sa, ga), iz.Duplicated(sm, gm),
                iz.Duplicated(si, gi), iz.Const(sx), gamma, m, slg)
    fd = [fd_gradient(lambda v: gmm_loop(v, sm, si, sx, gamma, m, slg), sa),
          fd_gradient(lambda v: gmm_loop(sa, v, si, sx, gamma, m, slg), sm),
          fd_gradient(lambda v: gmm_loop(sa, sm, v, sx, gamma, m, slg), si)]
    res["checks"]["isozyme_grad_vs_fd_d3_k3_n4"] = compare(
        "central differences", np.concatenate([ga, gm.ravel(), gi.ravel()]),
        np.concatenate([f.ravel() for f in fd]), 1e-5, 1e-6)

    iz_grad()
    _, val = iz.autodiff(iz.ForwardWithPrimal, gmm_loop, iz.Const, iz.Const(alphas),
                         iz.Const(means), iz.Const(icf), iz.Const(x), gamma, m, lg)
    if peers.jax:
        jax, jnp = peers.jax, peers.jnp
        ja, jm, ji, jxx = (jnp.asarray(a) for a in (alphas, means, icf, x))
        gj = jax.jit(jax.grad(jf["gmm"], argnums=(0, 1, 2)), static_argnums=(5,))(
            ja, jm, ji, jxx, gamma, m, lg)
        res["checks"]["isozyme_grad_vs_jax"] = compare(
            "jax.grad", np.concatenate([da, dm.ravel(), di.ravel()]),
            np.concatenate([np.asarray(a).ravel() for a in gj]), 1e-9, 1e-9)
        vj = float(jax.jit(jf["gmm"], static_argnums=(5,))(ja, jm, ji, jxx, gamma, m, lg))
        res["checks"]["isozyme_primal_vs_jax"] = compare("jax", val, vj, 1e-10, 0.0)
    res["primal_ir"] = primal_ir_is_plain(iz, gmm_loop, sa, sm, si, sx, gamma, m, slg)
    if kern:
        na, nm, ni = np.empty(k), np.empty((k, d)), np.empty_like(icf)
        kern["gmm_adjoint"](alphas, means, icf, x, gamma, m, na, nm, ni)
        res["checks"]["isozyme_grad_vs_numba_adjoint"] = compare(
            "numba hand-written adjoint", np.concatenate([da, dm.ravel(), di.ravel()]),
            np.concatenate([na, nm.ravel(), ni.ravel()]), 1e-9, 1e-9)

    run_tool(res, "isozyme_primal", "isozyme primal (Const-only ForwardWithPrimal)",
             lambda: iz.autodiff(iz.ForwardWithPrimal, gmm_loop, iz.Const, iz.Const(alphas),
                                 iz.Const(means), iz.Const(icf), iz.Const(x), gamma, m, lg),
             args)
    za, zm, zi = np.zeros(k), np.zeros((k, d)), np.zeros_like(icf)
    run_tool(res, "isozyme_fwd_zero_tangent", "isozyme ForwardWithPrimal, zero tangent",
             lambda: iz.autodiff(iz.ForwardWithPrimal, gmm_loop, iz.Duplicated(alphas, za),
                                 iz.Duplicated(means, zm), iz.Duplicated(icf, zi),
                                 iz.Const(x), gamma, m, lg), args)
    run_tool(res, "isozyme_grad", "isozyme gradient (Reverse, dx zeroed)", iz_grad, args)
    run_tool(res, "isozyme_grad_with_primal", "isozyme ReverseWithPrimal (dx zeroed)",
             iz_grad_wp, args)
    if peers.jax:
        pf = jax.jit(jf["gmm"], static_argnums=(5,))
        gf = jax.jit(jax.grad(jf["gmm"], argnums=(0, 1, 2)), static_argnums=(5,))
        run_tool(res, "jax_primal", "JAX jit(f)",
                 lambda: jax.block_until_ready(pf(ja, jm, ji, jxx, gamma, m, lg)), args)
        run_tool(res, "jax_grad", "JAX jit(grad(f))",
                 lambda: jax.block_until_ready(gf(ja, jm, ji, jxx, gamma, m, lg)), args)
    if kern:
        run_tool(res, "numba_primal", "numba @njit primal (loop form)",
                 lambda: kern["gmm_primal"](alphas, means, icf, x, gamma, m, lg), args)
        run_tool(res, "numba_adjoint", "numba hand-written adjoint (zeroes dx inside)",
                 lambda: kern["gmm_adjoint"](alphas, means, icf, x, gamma, m, na, nm, ni),
                 args)
    if tf:
        torch = peers.torch
        ta, tm, ti, tx = (torch.from_numpy(a.copy()) for a in (alphas, means, icf, x))

        def torch_primal():
            with torch.no_grad():
                return tf["gmm"](ta, tm, ti, tx, gamma, m, lg)

        def torch_grad():
            ps = [a.detach().requires_grad_(True) for a in (ta, tm, ti)]
            tf["gmm"](*ps, tx, gamma, m, lg).backward()
            return [p.grad for p in ps]

        run_tool(res, "torch_primal", "PyTorch primal (no_grad)", torch_primal, args)
        run_tool(res, "torch_grad", "PyTorch backward()", torch_grad, args)
    return res


# =========================================================================== report
def _t(res: dict, key: str, stat: str = "best_ms") -> float | None:
    t = res["timings"].get(key)
    return None if t is None or "error" in t else t[stat]


def ratios_and_goals(name: str, res: dict) -> tuple[dict, dict]:
    def ratio(a: str, b: str) -> float | None:
        x, y = _t(res, a), _t(res, b)
        return None if x is None or y is None else x / y

    r = {
        "isozyme_grad_over_isozyme_primal": ratio("isozyme_grad", "isozyme_primal"),
        "isozyme_grad_with_primal_over_isozyme_primal":
            ratio("isozyme_grad_with_primal", "isozyme_primal"),
        "isozyme_grad_over_jax_grad": ratio("isozyme_grad", "jax_grad"),
        "isozyme_primal_over_jax_primal": ratio("isozyme_primal", "jax_primal"),
        "isozyme_grad_over_numba_adjoint": ratio("isozyme_grad", "numba_adjoint"),
        "isozyme_grad_with_primal_over_numba_adjoint_with_value":
            ratio("isozyme_grad_with_primal", "numba_adjoint_with_value"),
        "isozyme_primal_over_numba_primal": ratio("isozyme_primal", "numba_primal"),
        "isozyme_grad_over_torch_grad": ratio("isozyme_grad", "torch_grad"),
        "jax_grad_over_jax_primal": ratio("jax_grad", "jax_primal"),
        "numba_adjoint_over_numba_primal": ratio("numba_adjoint", "numba_primal"),
        "torch_grad_over_torch_primal": ratio("torch_grad", "torch_primal"),
    }

    def goal(value: float | None, limit: float, strict: bool = False) -> dict:
        if value is None:
            return {"value": None, "limit": limit, "met": None, "status": "not measured"}
        met = value < limit if strict else value <= limit
        return {"value": value, "limit": limit, "met": met,
                "status": "met" if met else "NOT met"}

    g = {
        "grad_over_primal": goal(r["isozyme_grad_over_isozyme_primal"],
                                 GOAL_GRAD_OVER_PRIMAL),
        "faster_than_jax_grad": goal(r["isozyme_grad_over_jax_grad"],
                                     GOAL_ISOZYME_OVER_JAX, strict=True),
    }
    if name in ("rosenbrock", "heat"):
        g["within_of_hand_adjoint"] = goal(r["isozyme_grad_over_numba_adjoint"],
                                           GOAL_ISOZYME_OVER_ADJOINT)
    return r, g


def versions(peers: Peers, iz) -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version(), "isozyme": iz.__version__,
           "isozyme_path": str(Path(iz.__file__).resolve().parent)}
    try:
        import subprocess

        repo = Path(__file__).resolve().parent.parent
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "isozyme"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_head"] = head or None
        out["isozyme_worktree_dirty"] = bool(dirty)
    except Exception:
        pass
    for mod in ("xdsl", "llvmlite", "numpy"):
        try:
            out[mod] = version(mod)
        except Exception:
            out[mod] = None
    try:
        import llvmlite.binding as llb

        out["llvm"] = ".".join(map(str, llb.llvm_version_info))
    except Exception:
        out["llvm"] = None
    out.update(peers.versions)
    return out


ROW_ORDER = [
    ("isozyme_primal", "isozyme primal"),
    ("isozyme_fwd_zero_tangent", "isozyme fwd, zero tangent"),
    ("isozyme_grad", "isozyme gradient"),
    ("isozyme_grad_accumulate", "isozyme gradient, shadow not zeroed"),
    ("isozyme_grad_with_primal", "isozyme ReverseWithPrimal"),
    ("isozyme_vec_primal", "isozyme vectorized primal"),
    ("isozyme_vec_grad", "isozyme vectorized gradient"),
    ("jax_primal", "JAX jit(f)"),
    ("jax_grad", "JAX jit(grad(f))"),
    ("numba_primal", "numba njit primal"),
    ("numba_adjoint", "numba hand-written adjoint"),
    ("numba_adjoint_with_value", "numba hand-written value and gradient"),
    ("torch_primal", "PyTorch primal"),
    ("torch_grad", "PyTorch backward"),
]


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def timing_rows(name: str, res: dict, skipped: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for key, label in ROW_ORDER:
        t = res["timings"].get(key)
        if t is None:
            if key.startswith("isozyme_vec"):
                if key == "isozyme_vec_grad" and not res.get("vectorized_isozyme", {}).get(
                        "supported", True):
                    rows.append(("isozyme vectorized (np.sum of slices)", "unsupported",
                                 "", res["vectorized_isozyme"]["error"][:90]))
                continue
            tool = key.split("_")[0]
            if tool in skipped:
                if key.endswith("primal"):
                    rows.append((label, "skipped", "", skipped[tool]))
            continue
        if "error" in t:
            rows.append((label, "FAILED", "", t["error"][:90]))
            continue
        rows.append((label, fmt_ms(t["best_ms"]), fmt_ms(t["median_ms"]), ""))
    return rows


RATIO_LABELS = [
    ("isozyme_grad_over_isozyme_primal", "isozyme gradient / isozyme primal"),
    ("isozyme_grad_with_primal_over_isozyme_primal", "isozyme ReverseWithPrimal / primal"),
    ("isozyme_grad_over_jax_grad", "isozyme gradient / JAX jit(grad)"),
    ("isozyme_primal_over_jax_primal", "isozyme primal / JAX jit(f)"),
    ("isozyme_grad_over_numba_adjoint", "isozyme gradient / numba hand-written adjoint"),
    ("isozyme_grad_with_primal_over_numba_adjoint_with_value",
     "isozyme ReverseWithPrimal / numba value and gradient"),
    ("isozyme_primal_over_numba_primal", "isozyme primal / numba primal"),
    ("isozyme_grad_over_torch_grad", "isozyme gradient / PyTorch backward"),
    ("jax_grad_over_jax_primal", "JAX grad / JAX primal"),
    ("numba_adjoint_over_numba_primal", "numba adjoint / numba primal"),
    ("torch_grad_over_torch_primal", "PyTorch grad / PyTorch primal"),
]

GOAL_LABELS = {
    "grad_over_primal": f"isozyme gradient / primal <= {GOAL_GRAD_OVER_PRIMAL}",
    "faster_than_jax_grad": "isozyme gradient faster than JAX jit(grad) (ratio < 1)",
    "within_of_hand_adjoint": f"isozyme gradient within {GOAL_ISOZYME_OVER_ADJOINT}x of the "
                              "numba hand-written adjoint",
}


def describe_size(s: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in s.items())


def render_markdown(report: dict) -> str:
    m, v = report["machine"], report["versions"]
    lines = [
        "# Array workloads (CPU)", "",
        f"Generated by `benchmarks/arrays.py` on {report['date']}.", "",
        f"Machine: {m['cpu_model'] or m['processor'] or m['machine']}, {m['cpu_count']} CPUs "
        f"({m['cpus_usable']} usable), {m['platform']}; load average at the end "
        f"{m['load_average_1_5_15min']}.", "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()
                                 if val and k != "isozyme_worktree_dirty") + ".", "",
        f"Settings: best and median of {report['settings']['repeat']} repeats of at least "
        f"{report['settings']['min_time_s']} s each, per call, in ms "
        f"({report['settings']['clock']}), the repeats "
        "interleaved round-robin over the tools of a workload; one process, one thread. The isozyme primal is `autodiff(ForwardWithPrimal, f, Const, Const(x), "
        "...)` whose compiled IR is the primal alone (checked: see `primal_ir` in the "
        "JSON); the isozyme gradient is `autodiff(Reverse, f, Active, Duplicated(x, dx))` "
        "with `dx[:] = 0` in every timed call.", "",
    ]
    for name, res in report["workloads"].items():
        lines += [f"## {name} ({describe_size(res['size'])})", ""]
        if res.get("note"):
            lines += [f"Note: {res['note']}.", ""]
        lines += ["| tool | best ms | median ms | |", "|---|---:|---:|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in
                  timing_rows(name, res, report["skipped"])]
        lines += ["", "| ratio (best times) | |", "|---|---:|"]
        lines += [f"| {lab} | {fmt_ratio(res['ratios'][k])} |" for k, lab in RATIO_LABELS
                  if res["ratios"].get(k) is not None]
        lines += ["", "| goal | measured | |", "|---|---:|---|"]
        for k, gg in res["goals"].items():
            lines.append(f"| {GOAL_LABELS[k]} | {fmt_ratio(gg['value'])} | {gg['status']} |")
        lines += ["", "Checks before timing:", ""]
        for k, c in res["checks"].items():
            lines.append(f"* {k}: {'ok' if c['ok'] else 'MISMATCH'} (max abs err "
                         f"{c['max_abs_err']:.2e}, rtol {c['rtol']:g})")
        pir = res.get("primal_ir", {})
        if pir.get("checked"):
            lines.append(f"* Const-only ForwardWithPrimal IR is the plain primal: "
                         f"{pir['plain_primal']}")
        lines.append("")
    if report["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"* {k}: {val}" for k, val in report["skipped"].items()]
        lines.append("")
    lines += ["Timings are noisy on a shared machine (tens of percent); ratios of best "
              "times are the most stable numbers here.", ""]
    return "\n".join(lines)


def print_report(report: dict) -> None:
    for name, res in report["workloads"].items():
        print(f"\n== {name} ({describe_size(res['size'])})")
        rows = timing_rows(name, res, report["skipped"])
        w = max(len(a) for a, *_ in rows)
        print(f"  {'tool':<{w}}  {'best ms':>10}  {'median ms':>10}")
        for a, b, c, d in rows:
            print(f"  {a:<{w}}  {b:>10}  {c:>10}  {d}")
        for k, lab in RATIO_LABELS:
            if res["ratios"].get(k) is not None:
                print(f"  {lab:<45} {fmt_ratio(res['ratios'][k]):>9}")
        for k, gg in res["goals"].items():
            print(f"  goal: {GOAL_LABELS[k]:<60} {fmt_ratio(gg['value']):>9}  {gg['status']}")
        for k, c in res["checks"].items():
            if not c["ok"]:
                print(f"  MISMATCH {k}: max abs err {c['max_abs_err']:.3e}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per repeat, at least")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the process's CPU time instead of wall-clock time "
                        "(steadier on a loaded machine; every tool runs on one thread)")
    p.add_argument("--quick", action="store_true", help="repeat=3, min-time=0.05")
    p.add_argument("--rosen-n", type=int, default=ROSEN_N)
    p.add_argument("--heat-n", type=int, default=HEAT_N)
    p.add_argument("--gmm-n", type=int, default=GMM_N)
    p.add_argument("--only", nargs="*", choices=["rosenbrock", "heat", "gmm"])
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--no-numba", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--isozyme-from", type=Path, default=None,
                   help="import isozyme from this folder (e.g. a `git archive HEAD isozyme` "
                        "export) instead of the installed one")
    args = p.parse_args(argv)
    if args.isozyme_from is not None:
        sys.path.insert(0, str(args.isozyme_from.resolve()))
        sys.meta_path[:] = [f for f in sys.meta_path
                            if "editable" not in type(f).__module__.lower()
                            and "editable" not in getattr(f, "__name__", "").lower()]
    if args.quick:
        args.repeat, args.min_time = 3, 0.05

    import isozyme as iz

    iz.config(threads=1)  # one thread, as every peer (parallel loops are issue 12 item 6)
    peers = Peers(not args.no_jax, not args.no_numba, not args.no_torch)
    kern = numba_kernels(peers.numba) if peers.numba else None
    jf = jax_functions(peers.jax, peers.jnp, GMM_D) if peers.jax else None
    tf = torch_functions(peers.torch, GMM_D) if peers.torch else None

    benches = {"rosenbrock": bench_rosenbrock, "heat": bench_heat, "gmm": bench_gmm}
    workloads = {}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for name, fn in benches.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", flush=True)
        gc.collect()
        res = fn(iz, peers, kern, jf, tf, args)
        time_interleaved(res, args)
        res["ratios"], res["goals"] = ratios_and_goals(name, res)
        workloads[name] = res

    # every thread of the process together: about 1.0 when each tool ran on one thread
    cpu_over_wall = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    report = {
        "benchmark": "arrays", "target": "cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(peers, iz),
        "settings": {"repeat": args.repeat, "min_time_s": args.min_time,
                     "clock": "process CPU time" if args.cpu_time else "wall clock",
                     "threads_env": {k: os.environ.get(k) for k in
                                     ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "XLA_FLAGS",
                                      "ISOZYME_THREADS")},
                     "isozyme_threads": iz.config()["threads"],
                     "cpu_affinity": sorted(os.sched_getaffinity(0))
                     if hasattr(os, "sched_getaffinity") else None,
                     "process_cpu_over_wall": cpu_over_wall,
                     "torch_threads": peers.torch.get_num_threads() if peers.torch else None},
        "skipped": peers.skipped, "workloads": workloads,
    }
    print_report(report)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "arrays-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "arrays-cpu.md").write_text(render_markdown(report))
        print(f"\nwrote {args.out / 'arrays-cpu.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
