"""Issue 9's benchmark: arrays re-bound in traced loops, beside the in-place form and JAX (CPU).

    python benchmarks/rebound_arrays.py            # full run, writes results/issue9-cpu.{json,md}
    python benchmarks/rebound_arrays.py --quick    # fewer repetitions, for a smoke test
    python benchmarks/rebound_arrays.py --no-jax --no-write --only gd rnn

isozyme carries an array re-bound in a traced loop (``w = w - lr * g``) in one buffer;
when the new array is computed elementwise from the old one the op writes the buffer in
place, otherwise the body copies the new array into it once per iteration.  This script
measures what writing it naturally costs against the same program written in place
(``w -= ...``, ``y[:] = ...``, ``h[:] = ...``: isozyme's fastest form before re-binding
was traced), and against JAX ``jit(grad)`` of a ``lax.fori_loop`` (JAX's fastest form).

Workloads, float64, one process, one thread; the step count is an ``int`` argument, so
the loop is one ``scf.for`` (a literal ``range(100)`` would be unrolled while tracing):

* **gd**: gradient descent on least squares, ``X`` 200 x 50, 100 steps,
  ``w = w - lr * (X.T @ (X @ w - y))``, loss ``0.5 |X w - y|^2``; gradient with respect
  to ``w0`` and ``X`` (``y`` is ``Const``).
* **ewise**: a cheap elementwise update, 10^4 elements, 200 steps,
  ``w = w * 0.99 + 0.01 * x`` (the case written in place without a copy), loss
  ``sum(w * w)``; gradient with respect to ``w0`` and ``x``.
* **rk4**: RK4 of ``y' = -k y + sin(y)`` on 1000 states, 100 steps of ``h = 0.01``,
  ``y = y + h / 6 * (k1 + 2 k2 + 2 k3 + k4)``, loss ``sum(y)``; gradient with respect to
  ``y0`` and ``k``.
* **rnn**: ``h = tanh(W @ h + U @ xs[t] + b)``, hidden 64, input 32, 50 steps, loss
  ``sum(h)``; gradient with respect to ``W``, ``U`` and ``b``.

Rows per workload: isozyme ``gradient(Reverse, ...)`` of the re-bound form and of the
in-place form, JAX ``jit(grad)`` with ``lax.fori_loop`` (``block_until_ready``), and
isozyme's primal of both forms (``autodiff(ForwardWithPrimal, ...)`` with every
argument ``Const``: the compiled code is the primal alone).  Before timing, every
gradient is compared with the in-place form's and JAX's (relative error
``max|a - b| / max|b|`` at most 1e-8), the primals with numpy running the same
functions, and the re-bound gradient with a central difference of numpy's value along a
random direction.  Timing as in ``jacobians.py``: calls per round calibrated to
``--min-time``, ``--repeats`` rounds round-robin over the rows (each round starting at
the next row); medians and best.  The optimized IR of both forms' gradient requests is
sized (lines, allocations, loops), to see whether the re-bound form adds a copy.
Goal (marked met / not met, never asserted): re-bound gradient / in-place gradient
<= 1.1 (medians), no cost for writing it naturally.
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
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # machine_info
if "--isozyme-from" in sys.argv:  # measure another isozyme tree (git archive of a commit)
    sys.path.insert(0, sys.argv[sys.argv.index("--isozyme-from") + 1])
from machine_info import machine  # noqa: E402

import isozyme as iz  # noqa: E402
from isozyme import Const, ForwardWithPrimal, Reverse  # noqa: E402

GOAL_REBOUND_OVER_INPLACE = 1.1
CHECK_RTOL = 1e-8  # gradients of the three forms agree to this (relative)
FD_RTOL = 1e-6  # the re-bound gradient against a central difference (relative)
LR = 1e-3
RK4_H = 0.01


# --------------------------------------------------------------------------- workloads
# Each pair computes the same thing: first the re-bound form a user writes, then the
# in-place form.  The differentiated arguments come first, then Const arrays, then steps.
def gd_rebound(w0, X, y, steps):
    w = w0
    for _ in range(steps):
        w = w - LR * (X.T @ (X @ w - y))
    r = X @ w - y
    return 0.5 * np.sum(r * r)


def gd_inplace(w0, X, y, steps):
    w = w0.copy()
    for _ in range(steps):
        w -= LR * (X.T @ (X @ w - y))
    r = X @ w - y
    return 0.5 * np.sum(r * r)


def ewise_rebound(w0, x, steps):
    w = w0
    for _ in range(steps):
        w = w * 0.99 + 0.01 * x
    return np.sum(w * w)


def ewise_inplace(w0, x, steps):
    w = w0.copy()
    for _ in range(steps):
        w *= 0.99
        w += 0.01 * x
    return np.sum(w * w)


def rk4_rebound(y0, k, steps):
    h = RK4_H
    y = y0
    for _ in range(steps):
        k1 = -k * y + np.sin(y)
        k2 = -k * (y + 0.5 * h * k1) + np.sin(y + 0.5 * h * k1)
        k3 = -k * (y + 0.5 * h * k2) + np.sin(y + 0.5 * h * k2)
        k4 = -k * (y + h * k3) + np.sin(y + h * k3)
        y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return np.sum(y)


def rk4_inplace(y0, k, steps):
    h = RK4_H
    y = y0.copy()
    for _ in range(steps):
        k1 = -k * y + np.sin(y)
        k2 = -k * (y + 0.5 * h * k1) + np.sin(y + 0.5 * h * k1)
        k3 = -k * (y + 0.5 * h * k2) + np.sin(y + 0.5 * h * k2)
        k4 = -k * (y + h * k3) + np.sin(y + h * k3)
        y[:] = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return np.sum(y)


def rnn_rebound(W, U, b, xs, h0, steps):
    h = h0
    for t in range(steps):
        h = np.tanh(W @ h + U @ xs[t] + b)
    return np.sum(h)


def rnn_inplace(W, U, b, xs, h0, steps):
    h = h0.copy()
    for t in range(steps):
        h[:] = np.tanh(W @ h + U @ xs[t] + b)
    return np.sum(h)


def jax_functions(steps: dict[str, int]) -> dict[str, Callable]:
    """The workloads in JAX's fastest form: ``lax.fori_loop`` over the same body."""
    import jax.numpy as jnp
    from jax import lax

    def gd(w0, X, y):
        w = lax.fori_loop(0, steps["gd"], lambda i, w: w - LR * (X.T @ (X @ w - y)), w0)
        r = X @ w - y
        return 0.5 * jnp.sum(r * r)

    def ewise(w0, x):
        return jnp.sum(jnp.square(
            lax.fori_loop(0, steps["ewise"], lambda i, w: w * 0.99 + 0.01 * x, w0)))

    def rk4(y0, k):
        h = RK4_H

        def step(i, y):
            k1 = -k * y + jnp.sin(y)
            k2 = -k * (y + 0.5 * h * k1) + jnp.sin(y + 0.5 * h * k1)
            k3 = -k * (y + 0.5 * h * k2) + jnp.sin(y + 0.5 * h * k2)
            k4 = -k * (y + h * k3) + jnp.sin(y + h * k3)
            return y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

        return jnp.sum(lax.fori_loop(0, steps["rk4"], step, y0))

    def rnn(W, U, b, xs, h0):
        return jnp.sum(lax.fori_loop(
            0, steps["rnn"], lambda t, h: jnp.tanh(W @ h + U @ xs[t] + b), h0))

    return {"gd": gd, "ewise": ewise, "rk4": rk4, "rnn": rnn}


@dataclass
class Workload:
    """One workload: its two isozyme forms, the differentiated and Const arguments."""

    name: str
    title: str
    rebound: Callable
    inplace: Callable
    diff: tuple[np.ndarray, ...]  # differentiated (gradient(Reverse) gets them plain)
    const: tuple[np.ndarray, ...]  # passed as Const
    steps: int


def workloads() -> list[Workload]:
    rng = np.random.default_rng(0)
    X, y, w0 = rng.normal(size=(200, 50)), rng.normal(size=200), rng.normal(size=50)
    W = rng.normal(size=(64, 64)) * 0.15
    U, b = rng.normal(size=(64, 32)) * 0.15, rng.normal(size=64) * 0.1
    xs, h0 = rng.normal(size=(50, 32)), np.zeros(64)
    return [
        Workload("gd", "gradient descent, X 200 x 50, 100 steps", gd_rebound, gd_inplace,
                 (w0, X), (y,), 100),
        Workload("ewise", "elementwise update, 10^4 elements, 200 steps",
                 ewise_rebound, ewise_inplace,
                 (rng.normal(size=10**4), rng.normal(size=10**4)), (), 200),
        Workload("rk4", "RK4, 1000 states, 100 steps", rk4_rebound, rk4_inplace,
                 (rng.normal(size=1000), rng.uniform(0.5, 1.5, size=1000)), (), 100),
        Workload("rnn", "RNN, hidden 64, input 32, 50 steps", rnn_rebound, rnn_inplace,
                 (W, U, b), (xs, h0), 50),
    ]


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
    """Per row: median and best microseconds per call over interleaved rounds, each
    round in the rows' order rotated by one more."""
    numbers = {name: calibrate(fn, min_time) for name, fn in rows.items()}
    samples: dict[str, list[float]] = {name: [] for name in rows}
    names = list(rows)
    for r in range(repeats):
        # each round starts at another row: a row's time can depend on what ran before
        # it (the gradients free megabytes of cache the next call allocates again)
        for name in names[r % len(names):] + names[: r % len(names)]:
            fn, n = rows[name], numbers[name]
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
GRAD_REBOUND = "isozyme gradient, re-bound"
GRAD_INPLACE = "isozyme gradient, in place"
JAX_GRAD = "JAX jit(grad), fori_loop"
PRIMAL_REBOUND = "isozyme primal, re-bound"
PRIMAL_INPLACE = "isozyme primal, in place"


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b| (b the reference)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def grads_err(got: tuple, want: tuple) -> float:
    return max(rel_err(g, w) for g, w in zip(got, want))


def ir_shape(f: Callable, wl: Workload) -> dict:
    """Size of the optimized IR of the gradient request: lines, allocations, loops.

    The two forms having the same counts means the re-bound form adds no temporary and
    no copy loop per iteration."""
    anns = [iz.Duplicated(a, np.zeros_like(a)) for a in wl.diff]
    text = iz.ir(Reverse, f, iz.Active, *anns, *map(Const, wl.const), wl.steps,
                 stage="optimized")
    return {"lines": len(text.splitlines()), "memref.alloc": text.count("memref.alloc"),
            "scf.parallel": text.count('"scf.parallel"'), "scf.for": text.count("scf.for ")}


def workload_rows(wl: Workload, jf: Callable | None, checks: dict, first: dict,
                  shapes: dict) -> dict[str, Callable[[], object]]:
    """The timed calls of one workload, each checked once before timing."""
    nd = len(wl.diff)
    consts = tuple(map(Const, wl.const))
    all_const = tuple(map(Const, wl.diff)) + consts

    def grad_of(f: Callable) -> Callable[[], tuple]:
        return lambda: iz.gradient(Reverse, f, *wl.diff, *consts, wl.steps)[:nd]

    def primal_of(f: Callable) -> Callable[[], float]:
        return lambda: iz.autodiff(ForwardWithPrimal, f, *all_const, wl.steps)[1]

    rows: dict[str, Callable[[], object]] = {
        GRAD_REBOUND: grad_of(wl.rebound), GRAD_INPLACE: grad_of(wl.inplace),
        PRIMAL_REBOUND: primal_of(wl.rebound), PRIMAL_INPLACE: primal_of(wl.inplace),
    }
    out = {}
    for name, fn in rows.items():
        first[name], out[name] = first_ms(fn)
    want_value = wl.rebound(*wl.diff, *wl.const, wl.steps)  # numpy runs the same code
    checks["primal, re-bound vs numpy"] = rel_err(out[PRIMAL_REBOUND], want_value)
    checks["primal, in place vs numpy"] = rel_err(out[PRIMAL_INPLACE], want_value)
    checks["gradient, re-bound vs in place"] = grads_err(out[GRAD_REBOUND], out[GRAD_INPLACE])
    rng = np.random.default_rng(1)  # central difference of numpy's value along v
    vs = [rng.normal(size=a.shape) for a in wl.diff]
    eps = 1e-6
    fp = wl.rebound(*[a + eps * v for a, v in zip(wl.diff, vs)], *wl.const, wl.steps)
    fm = wl.rebound(*[a - eps * v for a, v in zip(wl.diff, vs)], *wl.const, wl.steps)
    fd = (fp - fm) / (2 * eps)
    ad = sum(float(np.vdot(g, v)) for g, v in zip(out[GRAD_REBOUND], vs))
    checks["gradient, re-bound . v vs central difference"] = rel_err(ad, fd)
    if jf is not None:
        import jax
        import jax.numpy as jnp

        jargs = [jnp.asarray(a) for a in (*wl.diff, *wl.const)]
        jgrad = jax.jit(jax.grad(jf, argnums=tuple(range(nd))))

        def jcall() -> tuple:
            return jax.block_until_ready(jgrad(*jargs))

        rows[JAX_GRAD] = jcall
        first[JAX_GRAD], jg = first_ms(jcall)
        checks["gradient, re-bound vs JAX"] = grads_err(out[GRAD_REBOUND],
                                                        tuple(map(np.asarray, jg)))
        checks["gradient, in place vs JAX"] = grads_err(out[GRAD_INPLACE],
                                                        tuple(map(np.asarray, jg)))
    shapes["re-bound"] = ir_shape(wl.rebound, wl)
    shapes["in place"] = ir_shape(wl.inplace, wl)
    order = [GRAD_REBOUND, GRAD_INPLACE, JAX_GRAD, PRIMAL_REBOUND, PRIMAL_INPLACE]
    return {k: rows[k] for k in order if k in rows}


# --------------------------------------------------------------------------- report
def ratio(t: dict, a: str, b: str) -> float | None:
    return t[a]["median_us"] / t[b]["median_us"] if a in t and b in t else None


RATIOS = (
    ("gradient re-bound / in place", GRAD_REBOUND, GRAD_INPLACE),
    ("primal re-bound / in place", PRIMAL_REBOUND, PRIMAL_INPLACE),
    ("gradient / primal (re-bound)", GRAD_REBOUND, PRIMAL_REBOUND),
    ("gradient / primal (in place)", GRAD_INPLACE, PRIMAL_INPLACE),
    ("isozyme gradient re-bound / JAX", GRAD_REBOUND, JAX_GRAD),
    ("isozyme gradient in place / JAX", GRAD_INPLACE, JAX_GRAD),
)


def table(t: dict, first: dict) -> list[str]:
    lines = ["| row | median µs | best µs | first call ms |", "|---|---:|---:|---:|"]
    for name, m in t.items():
        lines.append(f"| {name} | {m['median_us']:.1f} | {m['best_us']:.1f} | "
                     f"{first.get(name, float('nan')):.1f} |")
    return lines


def fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    ap.add_argument("--no-jax", action="store_true", help="skip the JAX rows")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--min-time", type=float, default=None, help="seconds per repeat")
    ap.add_argument("--only", nargs="*", default=None, help="workload names to run")
    ap.add_argument("--tag", default="cpu", help="results/issue9-<tag>.{json,md}")
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

    wls = [w for w in workloads() if opts.only is None or w.name in opts.only]
    jfs = jax_functions({w.name: w.steps for w in wls}) if use_jax else {}
    results: dict[str, dict] = {}
    for wl in wls:
        checks: dict[str, float] = {}
        first: dict[str, float] = {}
        shapes: dict[str, dict] = {}
        rows = workload_rows(wl, jfs.get(wl.name), checks, first, shapes)
        t = measure(rows, repeats, min_time)
        rs = {label: ratio(t, a, b) for label, a, b in RATIOS}
        # best times too: gd's gradient times are bimodal (page faults, see the README)
        rs["gradient re-bound / in place (best)"] = (t[GRAD_REBOUND]["best_us"]
                                                     / t[GRAD_INPLACE]["best_us"])
        results[wl.name] = {"title": wl.title, "times_us": t, "first_call_ms": first,
                            "checks": checks, "ir_optimized": shapes,
                            "ratios": {k: v for k, v in rs.items() if v is not None}}
        print(f"{wl.name}: done", flush=True)

    names = list(results)
    goals = [{"workload": n,
              "goal": f"gradient re-bound / in place <= {GOAL_REBOUND_OVER_INPLACE}",
              "value": results[n]["ratios"]["gradient re-bound / in place"]} for n in names]
    for g in goals:
        g["met"] = g["value"] <= GOAL_REBOUND_OVER_INPLACE
    bad = [(n, k, v) for n in names for k, v in results[n]["checks"].items()
           if not v <= (FD_RTOL if "central difference" in k else CHECK_RTOL)]

    md = [f"# Issue 9 benchmark: arrays re-bound in traced loops ({opts.tag})", "",
          f"{datetime.datetime.now().isoformat(timespec='seconds')}, Python "
          f"{platform.python_version()}, numpy {np.__version__}, isozyme from "
          f"{Path(iz.__file__).parent}"
          + (f", JAX {__import__('jax').__version__}" if use_jax else "")
          + f"; {repeats} rounds of >= {min_time} s per row", ""]
    md += ["## Ratios (medians, unless marked best)", "",
           "| ratio | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    labels = [label for label, _, _ in RATIOS]
    labels.insert(1, "gradient re-bound / in place (best)")
    for label in labels:
        vals = [results[n]["ratios"].get(label) for n in names]
        if any(v is not None for v in vals):
            md.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + " |")
    md += ["", "## Goal", "", "| workload | goal | measured | |", "|---|---|---|---|",
           *[f"| {g['workload']} | {g['goal']} | {g['value']:.2f}x | "
             f"{'met' if g['met'] else 'not met'} |" for g in goals], ""]
    for n in names:
        r = results[n]
        md += [f"## {n}: {r['title']}", "", *table(r["times_us"], r["first_call_ms"]), "",
               "Optimized IR of the gradient request (lines, allocs, parallel loops, "
               "for loops): " + "; ".join(
                   f"{form} {s['lines']}, {s['memref.alloc']}, {s['scf.parallel']}, "
                   f"{s['scf.for']}" for form, s in r["ir_optimized"].items()), "",
               "Checks (relative error): " + "; ".join(
                   f"{k} {v:.1e}" for k, v in r["checks"].items()), ""]
    md.append("All checks passed." if not bad else
              "**Checks failed: " + ", ".join(f"{n} {k} ({v:.1e})" for n, k, v in bad)
              + "**")
    text = "\n".join(md) + "\n"
    print(text)
    if not opts.no_write:
        out = HERE / "results"
        out.mkdir(exist_ok=True)
        data = {"workloads": results, "goals": goals, "checks_failed": bad,
                "machine": machine(), "quick": opts.quick, "repeats": repeats,
                "min_time_s": min_time,
                "versions": {"python": platform.python_version(), "numpy": np.__version__,
                             "jax": __import__("jax").__version__ if use_jax else None}}
        (out / f"issue9-{opts.tag}.json").write_text(json.dumps(data, indent=1) + "\n")
        (out / f"issue9-{opts.tag}.md").write_text(text)
        print(f"wrote {out}/issue9-{opts.tag}.{{json,md}}")


if __name__ == "__main__":
    main()
