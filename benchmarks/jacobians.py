"""Issue 8's benchmarks: full Jacobians and a Hessian-vector product, beside JAX (CPU).

    python benchmarks/jacobians.py            # full run, writes results/issue8-cpu.{json,md}
    python benchmarks/jacobians.py --quick    # fewer repetitions, for a smoke test
    python benchmarks/jacobians.py --no-jax --no-write

Workloads, float64, one process, one thread:

* **jacobian**: ``y = sin(A @ x)``, ``A`` 100 x 100 (``Const``), ``x`` of 100: the full
  100 x 100 Jacobian by ``isozyme.jacobian(Forward, ...)`` with ``chunk`` 1, 8 and 100
  (columns, ``chunk`` lanes per batch forward sweep) and ``jacobian(Reverse, ...)``
  with the same chunks (rows), beside JAX ``jit(jacfwd(f, argnums=1))`` and
  ``jit(jacrev(...))`` (whole-array form, ``block_until_ready``).
* **gmm**: ADBench's GMM objective (``tests/array_programs.py``'s ``gmm_objective``),
  d = 10, k = 5, n = 1000, differentiated with respect to all parameters packed in one
  vector ``theta`` (alphas, means, inverse-covariance factors: 105 values), the data
  ``X`` a ``Const`` argument.  isozyme's gradient (``gradient(Reverse, ...)``) and its
  Hessian-vector product by forward over reverse, beside JAX ``jit(grad)`` and
  ``jit(jvp(grad))``.  The hvp is ``isozyme.hvp(f, theta, v)`` of ``f(theta)`` that
  reads ``X`` (10^4 values) as a module global: a hidden argument fetched on every
  call, passed on to the nested gradient; ``isozyme.hvp`` on the means alone, with
  small data (baked into the IR), is timed too.

Every result is checked (the exact Jacobian ``cos(A x)[:, None] * A``, JAX's gradient
and hvp) before timing.  Timing: per row, the number of calls lasting ``--min-time`` is
found, then ``--repeats`` rounds run every row once each, round-robin, so load from
other processes hits all rows alike; tables give the median and best per call.  Goals
(marked met / not met, never asserted): isozyme's fastest Jacobian faster than JAX
``jit(jacfwd)``; chunked (8, 100) faster than unchunked (1) in each mode; hvp at most 4x
the gradient.
"""

from __future__ import annotations

import os

# One thread for every runtime that would start a pool (set before any import of them).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.array_programs
sys.path.insert(0, str(HERE))  # machine_info
if "--isozyme-from" in sys.argv:  # measure another isozyme tree (git archive of a commit)
    sys.path.insert(0, sys.argv[sys.argv.index("--isozyme-from") + 1])
from machine_info import machine  # noqa: E402

import isozyme as iz  # noqa: E402
from isozyme import Const, Forward, Reverse  # noqa: E402
from tests.array_programs import gmm_objective  # noqa: E402

GOAL_JACFWD_US_REFERENCE = 63.0  # JAX jit(jacfwd) where the issue was written
GOAL_HVP_OVER_GRAD = 4.0
N = 100
CHUNKS = (1, 8, 100)
D, K, NPTS = 10, 5, 1000


# --------------------------------------------------------------------------- workloads
def sin_matvec(A, x):
    return np.sin(A @ x)


def gmm_packed(theta, X):
    """The GMM objective of all parameters packed in one vector (alphas, means, icf)."""
    alphas = theta[:K]
    means = theta[K : K + K * D].reshape(K, D)
    icf = theta[K + K * D :].reshape(K, D)
    return gmm_objective(alphas, means, icf, X)


GMM_X = np.zeros((NPTS, D))  # the data of gmm_of_theta, set by gmm_rows


def gmm_of_theta(theta):
    """gmm_packed of the global data GMM_X (one argument, as isozyme.hvp takes)."""
    return gmm_packed(theta, GMM_X)


SMALL_ALPHAS = np.array([0.1, -0.3, 0.2])
SMALL_ICF = np.array([[0.1, -0.2], [0.0, 0.3], [-0.1, 0.1]])
SMALL_X = np.random.default_rng(1).normal(size=(6, 2))


def gmm_of_means(means):
    """The GMM objective of the means, the rest small globals (baked into the IR)."""
    return gmm_objective(SMALL_ALPHAS, means, SMALL_ICF, SMALL_X)


# --------------------------------------------------------------------------- timing
def calibrate(fn: Callable[[], object], min_time: float) -> int:
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - t0 >= min_time:
            return number
        number *= 2


def measure(rows: dict[str, Callable[[], object]], repeats: int, min_time: float) -> dict:
    """Per row: median and best microseconds per call over interleaved rounds."""
    numbers = {name: calibrate(fn, min_time) for name, fn in rows.items()}
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, fn in rows.items():
            n = numbers[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n * 1e6)
    return {name: {"median_us": statistics.median(s), "best_us": min(s),
                   "calls_per_round": numbers[name], "rounds": repeats}
            for name, s in samples.items()}


def first_ms(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


# --------------------------------------------------------------------------- rows
def jacobian_rows(A: np.ndarray, x: np.ndarray, use_jax: bool, checks: dict,
                  first: dict) -> dict[str, Callable[[], object]]:
    want = np.cos(A @ x)[:, None] * A
    rows: dict[str, Callable[[], object]] = {}
    cA = Const(A)
    for mode, mname in ((Forward, "Forward"), (Reverse, "Reverse")):
        for c in CHUNKS:
            def call(mode=mode, c=c):
                return iz.jacobian(mode, sin_matvec, cA, x, chunk=c)[1]
            name = f"isozyme jacobian {mname} chunk {c}"
            first[name], J = first_ms(call)
            checks[name] = float(np.abs(J - want).max())
            rows[name] = call
    if use_jax:
        import jax
        import jax.numpy as jnp

        jA, jx = jnp.asarray(A), jnp.asarray(x)
        f = lambda A, x: jnp.sin(A @ x)  # noqa: E731
        for name, jf in (("JAX jit(jacfwd)", jax.jit(jax.jacfwd(f, argnums=1))),
                         ("JAX jit(jacrev)", jax.jit(jax.jacrev(f, argnums=1)))):
            def call(jf=jf):
                return jf(jA, jx).block_until_ready()
            first[name], J = first_ms(call)
            checks[name] = float(np.abs(np.asarray(J) - want).max())
            rows[name] = call
    return rows


def gmm_rows(use_jax: bool, checks: dict, first: dict) -> dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    X = GMM_X
    X[:] = rng.normal(size=(NPTS, D))  # in place: gmm_of_theta reads it
    theta = rng.normal(size=K + 2 * K * D) * 0.1
    v = rng.normal(size=theta.size)
    cX = Const(X)
    rows: dict[str, Callable[[], object]] = {
        "isozyme primal (all Const)":
            lambda: iz.autodiff(iz.ForwardWithPrimal, gmm_packed, Const(theta), cX),
        "isozyme gradient(Reverse)": lambda: iz.gradient(Reverse, gmm_packed, theta, cX),
        "isozyme hvp (forward over reverse)": lambda: iz.hvp(gmm_of_theta, theta, v),
    }
    for name, fn in rows.items():
        first[name], _ = first_ms(fn)
    g = rows["isozyme gradient(Reverse)"]()[0]
    h = rows["isozyme hvp (forward over reverse)"]()
    means = rng.normal(size=(3, 2))
    vm = rng.normal(size=means.shape)
    small = "isozyme.hvp(f, means, v), small data"
    rows[small] = lambda: iz.hvp(gmm_of_means, means, vm)
    first[small], hm = first_ms(rows[small])
    eps = 1e-6  # the small hvp against central differences of the gradient
    fd = (iz.gradient(Reverse, gmm_of_means, means + eps * vm)[0]
          - iz.gradient(Reverse, gmm_of_means, means - eps * vm)[0]) / (2 * eps)
    checks[small + " vs central differences"] = float(np.abs(hm - fd).max())
    if use_jax:
        import jax
        import jax.numpy as jnp

        def jgmm(theta, X):
            alphas = theta[:K]
            means = theta[K : K + K * D].reshape(K, D)
            icf = theta[K + K * D :].reshape(K, D)
            qdiags = jnp.exp(icf)
            sum_qs = jnp.sum(icf, axis=1)
            xc = X[:, None, :] - means[None, :, :]
            lx = qdiags[None, :, :] * xc
            inner = alphas[None, :] + sum_qs[None, :] - 0.5 * jnp.sum(lx * lx, axis=2)
            lse = jax.scipy.special.logsumexp(inner, axis=1)
            return jnp.sum(lse) - X.shape[0] * jax.scipy.special.logsumexp(alphas)

        jt, jv, jX = jnp.asarray(theta), jnp.asarray(v), jnp.asarray(X)
        jgrad = jax.jit(jax.grad(jgmm))
        jhvp = jax.jit(lambda t, v, X: jax.jvp(lambda t: jax.grad(jgmm)(t, X), (t,), (v,))[1])
        jrows = {"JAX jit(grad)": lambda: jgrad(jt, jX).block_until_ready(),
                 "JAX jit(jvp(grad))": lambda: jhvp(jt, jv, jX).block_until_ready()}
        for name, fn in jrows.items():
            first[name], _ = first_ms(fn)
        checks["isozyme gradient vs JAX"] = float(np.abs(g - np.asarray(jgrad(jt, jX))).max())
        checks["isozyme hvp vs JAX"] = float(np.abs(h - np.asarray(jhvp(jt, jv, jX))).max())
        rows.update(jrows)
    return rows


# --------------------------------------------------------------------------- report
def ratio(t: dict, a: str, b: str) -> float | None:
    return t[a]["median_us"] / t[b]["median_us"] if a in t and b in t else None


def goals(tj: dict, tg: dict) -> list[dict]:
    out = []
    iz_rows = {k: v for k, v in tj.items() if k.startswith("isozyme")}
    fastest = min(iz_rows, key=lambda k: iz_rows[k]["median_us"])
    if "JAX jit(jacfwd)" in tj:
        r = ratio(tj, fastest, "JAX jit(jacfwd)")
        out.append({"goal": "fastest isozyme Jacobian faster than JAX jit(jacfwd)",
                    "value": f"{fastest}: {r:.2f}x JAX", "met": r < 1.0})
    for mname in ("Forward", "Reverse"):
        one = f"isozyme jacobian {mname} chunk 1"
        for c in CHUNKS[1:]:
            r = ratio(tj, f"isozyme jacobian {mname} chunk {c}", one)
            # faster beyond the noise of a shared machine: by 5% or more
            out.append({"goal": f"{mname} chunk {c} faster than chunk 1 (by >= 5%)",
                        "value": f"{r:.2f}x", "met": r < 0.95})
    r = ratio(tg, "isozyme hvp (forward over reverse)", "isozyme gradient(Reverse)")
    out.append({"goal": "GMM hvp <= 4x the gradient", "value": f"{r:.2f}x",
                "met": r <= GOAL_HVP_OVER_GRAD})
    return out


def table(t: dict, first: dict) -> list[str]:
    lines = ["| row | median µs | best µs | first call ms |", "|---|---:|---:|---:|"]
    for name, m in t.items():
        lines.append(f"| {name} | {m['median_us']:.1f} | {m['best_us']:.1f} | "
                     f"{first.get(name, float('nan')):.1f} |")
    return lines


def ratios(tj: dict, tg: dict) -> list[tuple[str, float | None]]:
    rs: list[tuple[str, float | None]] = []
    for mname, peer in (("Forward", "JAX jit(jacfwd)"), ("Reverse", "JAX jit(jacrev)")):
        for c in CHUNKS:
            rs.append((f"{mname} chunk {c} / {peer}",
                       ratio(tj, f"isozyme jacobian {mname} chunk {c}", peer)))
        for c in CHUNKS[1:]:
            rs.append((f"{mname} chunk {c} / chunk 1",
                       ratio(tj, f"isozyme jacobian {mname} chunk {c}",
                             f"isozyme jacobian {mname} chunk 1")))
    rs += [
        ("isozyme hvp / isozyme gradient",
         ratio(tg, "isozyme hvp (forward over reverse)", "isozyme gradient(Reverse)")),
        ("isozyme gradient / JAX jit(grad)",
         ratio(tg, "isozyme gradient(Reverse)", "JAX jit(grad)")),
        ("isozyme hvp / JAX jit(jvp(grad))",
         ratio(tg, "isozyme hvp (forward over reverse)", "JAX jit(jvp(grad))")),
        ("JAX jvp(grad) / JAX grad", ratio(tg, "JAX jit(jvp(grad))", "JAX jit(grad)")),
    ]
    return [(k, v) for k, v in rs if v is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    ap.add_argument("--no-jax", action="store_true", help="skip the JAX rows")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--min-time", type=float, default=None, help="seconds per repeat")
    ap.add_argument("--tag", default="cpu", help="results/issue8-<tag>.{json,md}")
    ap.add_argument("--isozyme-from", default=None,
                    help="a folder holding another isozyme package to measure")
    opts = ap.parse_args()
    repeats = opts.repeats or (3 if opts.quick else 9)
    min_time = opts.min_time or (0.02 if opts.quick else 0.1)
    use_jax = not opts.no_jax
    if use_jax:
        try:
            import jax

            jax.config.update("jax_enable_x64", True)
        except ImportError:
            print("JAX is not installed: the comparison is skipped (pip install jax)")
            use_jax = False

    rng = np.random.default_rng(0)
    A, x = rng.normal(size=(N, N)), rng.normal(size=N)
    checks: dict[str, float] = {}
    first: dict[str, float] = {}
    tj = measure(jacobian_rows(A, x, use_jax, checks, first), repeats, min_time)
    tg = measure(gmm_rows(use_jax, checks, first), repeats, min_time)
    gl = goals(tj, tg)
    rs = ratios(tj, tg)
    bad = {k: v for k, v in checks.items() if not v <= 1e-6}

    md = [f"# Issue 8 benchmarks ({opts.tag})", "",
          f"{datetime.datetime.now().isoformat(timespec='seconds')}, Python "
          f"{platform.python_version()}, numpy {np.__version__}, isozyme from "
          f"{Path(iz.__file__).parent}"
          + (f", JAX {__import__('jax').__version__}" if use_jax else ""), "",
          f"## Jacobian of sin(A @ x), {N} -> {N}", "", *table(tj, first), "",
          f"## GMM d={D}, k={K}, n={NPTS} (105 parameters)", "", *table(tg, first), "",
          "## Ratios (medians)", "", "| ratio | value |", "|---|---:|",
          *[f"| {k} | {v:.2f}x |" for k, v in rs], "",
          "## Goals", "", "| goal | measured | |", "|---|---|---|",
          *[f"| {g['goal']} | {g['value']} | {'met' if g['met'] else 'not met'} |"
            for g in gl], "",
          "## Checks (max abs error)", "",
          *[f"- {k}: {v:.2e}" for k, v in checks.items()],
          "" if not bad else f"\n**checks failed: {', '.join(bad)}**"]
    text = "\n".join(md) + "\n"
    print(text)
    if not opts.no_write:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        data = {"jacobian_us": tj, "gmm_us": tg, "first_call_ms": first, "checks": checks,
                "ratios": dict(rs), "goals": gl, "machine": machine(),
                "quick": opts.quick, "repeats": repeats, "min_time_s": min_time}
        (out / f"issue8-{opts.tag}.json").write_text(json.dumps(data, indent=1) + "\n")
        (out / f"issue8-{opts.tag}.md").write_text(text)
        print(f"wrote {out}/issue8-{opts.tag}.{{json,md}}")


if __name__ == "__main__":
    main()
