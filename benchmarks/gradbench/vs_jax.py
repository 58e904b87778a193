"""GradBench's ``gmm`` (array form) and ``ode`` gradients: isozyme against JAX ``jit(grad)``,
side by side in one process, one thread each.

```console
$ python benchmarks/gradbench/vs_jax.py              # prints the table
$ python benchmarks/gradbench/vs_jax.py --write      # also writes benchmarks/results/gradbench-vs-jax-cpu.md
$ python benchmarks/gradbench/vs_jax.py --reps 31 --gmm 10,25 --ode-n 10000 --ode-s 10
```

Workloads (issue 12 item 2):

- ``gmm``: the gradient of :func:`gradbench.gmm.objective` (the array form: einsum, fancy
  stores, max-shifted logsumexp) with respect to alpha, mu, q, l, on GradBench's input of
  the given (d, k) at n = 1000, drawn as its eval draws it (:func:`gradbench.inputs.gmm_input`).
  "medium" is (d, k) = (10, 25): GradBench's middle k (5, 10, 25, 50, 100) at the
  smallest d above 2 (its d are 2, 10, 20, 32, 64); ``--gmm 20,25`` runs the next one.
- ``ode``: the gradient of :func:`gradbench.ode.last` (y(2)[-1] after s RK4 steps) with
  respect to x at n = 10^4, reported per step (time / s).

The JAX peers are written as a JAX user writes them: whole-array ``jnp`` (the same
formulas as the numpy objectives), ``jax.jit(jax.grad(f))``, float64, and for ``ode`` a
``lax.fori_loop`` over the steps (s static, so reverse mode can go through it).  One
thread: ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``
(set before JAX is imported) and ``isozyme.config(threads=1)``.  Timings are the best of
``--reps`` calls, isozyme and JAX alternating call by call (round robin), after warm-up;
both gradients are checked to agree before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

if __package__ in (None, ""):  # run as a script: benchmarks/ holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import isozyme as iz  # noqa: E402
from isozyme import Const, Reverse  # noqa: E402

from gradbench import gmm, inputs, ode  # noqa: E402
from machine_info import machine  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results" / "gradbench-vs-jax-cpu.md"


def jax_peers():
    """The JAX objectives (x64), jit(grad) of each; imported here so XLA_FLAGS is set first."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import logsumexp as _unused  # noqa: F401  (a user might; we don't)

    jax.config.update("jax_enable_x64", True)

    def logsumexp(v):
        mx = jnp.max(v, axis=-1)
        return jnp.log(jnp.sum(jnp.exp(v - mx[..., None]), axis=-1)) + mx

    def gmm_objective(alpha, mu, q, l, x, m, gamma):
        n, d = x.shape
        k = alpha.shape[0]
        sum_qs = jnp.sum(q, axis=1)
        cols, rows = np.triu_indices(d, 1)
        diag = np.arange(d)
        Qs = jnp.zeros((k, d, d)).at[:, diag, diag].set(jnp.exp(q)).at[:, rows, cols].set(l)
        xcentered = x[:, None, :] - mu[None, :, :]
        Qx = jnp.einsum("kij,nkj->nki", Qs, xcentered)
        main_term = alpha + sum_qs - 0.5 * jnp.sum(Qx ** 2, axis=2)
        slse = jnp.sum(logsumexp(main_term))
        const = -n * d * 0.5 * np.log(2.0 * np.pi)
        nn = d + m + 1
        frob = jnp.sum(Qs ** 2, axis=(1, 2))
        out = jnp.sum(0.5 * gamma * gamma * frob - m * sum_qs)
        c = nn * d * (np.log(gamma) - 0.5 * np.log(2.0)) - gmm.log_gamma_distrib(0.5 * nn, d)
        return const + slse - n * logsumexp(alpha) + (k * c - out)

    def ode_fun(x, y):
        return jnp.concatenate([x[:1], x[1:] * y[:-1]])

    def ode_last(x, s):
        h = ode.TF / s

        def step(_, y):
            k1 = ode_fun(x, y)
            k2 = ode_fun(x, y + h / 2 * k1)
            k3 = ode_fun(x, y + h / 2 * k2)
            k4 = ode_fun(x, y + h * k3)
            return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

        return jax.lax.fori_loop(0, s, step, jnp.zeros_like(x))[-1]

    gmm_grad = jax.jit(jax.grad(gmm_objective, argnums=(0, 1, 2, 3)), static_argnums=(5, 6))
    ode_grad = jax.jit(jax.grad(ode_last), static_argnums=(1,))
    return jax, gmm_grad, ode_grad


def best_of(fns: dict, reps: int) -> dict[str, float]:
    """Best wall time (s) of each callable, called round robin ``reps`` times."""
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def run(reps: int, gmm_dk: tuple[int, int], ode_n: int, ode_s: int) -> list[dict]:
    """Check and time both workloads; one row per workload."""
    iz.config(threads=1)
    jax, jgmm, jode = jax_peers()
    rows = []

    d, k = gmm_dk
    gi = inputs.gmm_input(d, k)

    def iz_gmm():
        return iz.gradient(Reverse, gmm.objective, gi.alpha, gi.mu, gi.q, gi.l, Const(gi.x),
                           Const(gi.m), Const(gi.gamma))[:4]

    def jax_gmm():
        out = jgmm(gi.alpha, gi.mu, gi.q, gi.l, gi.x, gi.m, gi.gamma)
        jax.block_until_ready(out)
        return out

    t = time.perf_counter(); a = iz_gmm(); first_iz = time.perf_counter() - t
    t = time.perf_counter(); b = jax_gmm(); first_jax = time.perf_counter() - t
    err = max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))
    scale = max(float(np.max(np.abs(np.asarray(v)))) for v in b)
    assert err <= 1e-9 * max(scale, 1.0), f"gmm gradients differ by {err}"
    best = best_of({"isozyme": iz_gmm, "jax": jax_gmm}, reps)
    rows.append({"workload": f"gmm gradient, array form, d={d} k={k} n={gi.x.shape[0]}",
                 "isozyme_ms": best["isozyme"] * 1e3, "jax_ms": best["jax"] * 1e3,
                 "first_iz_ms": first_iz * 1e3, "first_jax_ms": first_jax * 1e3,
                 "max_abs_diff": err})

    x = np.random.RandomState(31337).rand(ode_n)

    def iz_ode():
        return iz.gradient(Reverse, ode.last, x, Const(ode_s))[0]

    def jax_ode():
        out = jode(x, ode_s)
        jax.block_until_ready(out)
        return out

    t = time.perf_counter(); a = iz_ode(); first_iz = time.perf_counter() - t
    t = time.perf_counter(); b = jax_ode(); first_jax = time.perf_counter() - t
    err = float(np.max(np.abs(a - np.asarray(b))))
    assert err <= 1e-9 * max(float(np.max(np.abs(np.asarray(b)))), 1.0), f"ode differs by {err}"
    best = best_of({"isozyme": iz_ode, "jax": jax_ode}, reps)
    rows.append({"workload": f"ode gradient per RK4 step, n={ode_n} (s={ode_s}, time / s)",
                 "isozyme_ms": best["isozyme"] * 1e3 / ode_s,
                 "jax_ms": best["jax"] * 1e3 / ode_s,
                 "first_iz_ms": first_iz * 1e3, "first_jax_ms": first_jax * 1e3,
                 "max_abs_diff": err})
    return rows


def table(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    out = ["| workload | isozyme (ms) | JAX jit(grad) (ms) | isozyme / JAX | first call isozyme / JAX (ms) | max abs diff |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['workload']} | {r['isozyme_ms']:.4g} | {r['jax_ms']:.4g} | "
                   f"{r['isozyme_ms'] / r['jax_ms']:.2f}x | {r['first_iz_ms']:.0f} / "
                   f"{r['first_jax_ms']:.0f} | {r['max_abs_diff']:.1e} |")
    return "\n".join(out)


def main() -> None:
    """Parse the options, run, print, and optionally write the results file."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=21)
    p.add_argument("--gmm", default="10,25", help="d,k of the gmm input (n = 1000)")
    p.add_argument("--ode-n", type=int, default=10000)
    p.add_argument("--ode-s", type=int, default=10)
    p.add_argument("--write", action="store_true")
    a = p.parse_args()
    d, k = (int(v) for v in a.gmm.split(","))
    rows = run(a.reps, (d, k), a.ode_n, a.ode_s)
    text = table(rows)
    print(text)
    if a.write:
        m = machine()
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# GradBench gmm and ode: isozyme vs JAX jit(grad) on the CPU\n\n"
            f"`python benchmarks/gradbench/vs_jax.py --reps {a.reps} --gmm {a.gmm} "
            f"--ode-n {a.ode_n} --ode-s {a.ode_s} --write` on {m['cpu_model']} "
            f"({m['cpus_usable']} usable CPUs), {m['platform']}; one thread each "
            f"(XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}, isozyme threads=1); best of "
            f"{a.reps} interleaved calls; load average at the end "
            f"{m['load_average_1_5_15min']}.\n\n" + text + "\n")


if __name__ == "__main__":
    main()
