"""GradBench's ``gmm`` (array form) and ``ode`` gradients: isozyme against JAX ``jit(grad)``,
side by side in one process, one thread each.

```console
$ python benchmarks/gradbench/vs_jax.py              # prints the table
$ python benchmarks/gradbench/vs_jax.py --write      # also writes benchmarks/results/gradbench-vs-jax-cpu.md
$ python benchmarks/gradbench/vs_jax.py --without resolve-shaped-type-result-dims --append
$ python benchmarks/gradbench/vs_jax.py --reps 31 --gmm 10,25 20,25 --ode-n 10000 --ode-s 10
```

Workloads (issue 12 item 2):

- ``gmm``: the gradient of :func:`gradbench.gmm.objective` (the array form: einsum, fancy
  stores, max-shifted logsumexp) with respect to alpha, mu, q, l, on GradBench's input of
  the given (d, k) at n = 1000, drawn as its eval draws it (:func:`gradbench.inputs.gmm_input`).
  GradBench names no "medium" gmm input: its eval runs every (d, k) of d in (2, 10, 20,
  32, 64), k in (5, 10, 25, 50, 100) at n = 1000, in order of d * k.  "Medium" here is
  (d, k) = (10, 25), GradBench's middle k at its second d: the size of
  ``benchmarks/arrays.py``'s GMM, and the one where JAX takes the issue's 2.3 ms.  The
  default run adds (20, 25) (the middle d and k) and (64, 5) (the middle of the eval's
  order), where the contraction's share of the time grows with d.
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


def run(reps: int, gmm_dks: list[tuple[int, int]], ode_n: int, ode_s: int) -> list[dict]:
    """Check and time both workloads; one row per workload."""
    iz.config(threads=1)
    jax, jgmm, jode = jax_peers()
    rows = []

    for d, k in gmm_dks:
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

    # y(2)[-1] does not depend on x at n = 10^4 after 10 steps (GradBench's gradient is
    # exactly 0 there): check the two gradients on a short system first, where it does
    xs = np.random.RandomState(7).rand(8)
    a = iz.gradient(Reverse, ode.last, xs, Const(ode_s))[0]
    b = np.asarray(jode(xs, ode_s))
    assert np.max(np.abs(b)) > 0 and np.allclose(a, b, rtol=1e-12, atol=1e-14), (a, b)
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
    p.add_argument("--gmm", nargs="+", default=["10,25", "20,25", "64,5"],
                   help="d,k of each gmm input (n = 1000); 10,25 is 'medium'")
    p.add_argument("--ode-n", type=int, default=10000)
    p.add_argument("--ode-s", type=int, default=10)
    p.add_argument("--without", nargs="*", default=[], metavar="PASS",
                   help="drop these passes from the optimized/simplified stages (to measure "
                        "what a pass brings; the disk cache is then off)")
    p.add_argument("--write", action="store_true", help="write the results file")
    p.add_argument("--append", action="store_true", help="add a section to the results file")
    a = p.parse_args()
    if a.without:
        from isozyme.compiler import pipeline  # noqa: PLC0415

        for stage, names in pipeline.STAGE_PIPELINES.items():
            pipeline.STAGE_PIPELINES[stage] = tuple(n for n in names if n not in a.without)
        iz.config(disk_cache=False)  # entries are keyed before the pipeline runs
    dks = [tuple(int(v) for v in dk.split(",")) for dk in a.gmm]
    rows = run(a.reps, dks, a.ode_n, a.ode_s)
    text = table(rows)
    print(text)
    if a.write or a.append:
        m = machine()
        command = (f"python benchmarks/gradbench/vs_jax.py --reps {a.reps} --gmm {' '.join(a.gmm)} "
                   f"--ode-n {a.ode_n} --ode-s {a.ode_s}"
                   + (f" --without {' '.join(a.without)}" if a.without else ""))
        section = (f"`{command}` on {m['cpu_model']} ({m['cpus_usable']} usable CPUs), "
                   f"{m['platform']}; one thread each (XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}, "
                   f"isozyme threads=1); best of {a.reps} interleaved calls; load average at "
                   f"the end {m['load_average_1_5_15min']}.\n\n" + text + "\n")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        if a.append and RESULTS.exists():
            title = "without " + ", ".join(a.without) if a.without else "another run"
            RESULTS.write_text(RESULTS.read_text() + f"\n## {title}\n\n" + section)
        else:
            RESULTS.write_text("# GradBench gmm and ode: isozyme vs JAX jit(grad) on the CPU\n\n"
                               + section)


if __name__ == "__main__":
    main()
