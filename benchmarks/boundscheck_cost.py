"""The cost of bounds checks on the array workloads, measured in one process.

Each workload of ``arrays.py`` (Rosenbrock loop form, heat stencil, GMM) is compiled twice
in this process, once with ``isozyme.config(boundscheck=True)`` (the default) and once
with ``boundscheck=False``, for the primal (Const-only ``ForwardWithPrimal``) and the
gradient (``Reverse``).  The compiled runners are kept (``isozyme.calls.build``) so that
both versions live side by side, and their calls are timed interleaved round-robin
(best of ``--repeat`` repeats of at least ``--min-time`` seconds each), so load from
other processes hits both alike.  Goal (issue 6): checks cost at most 5%.

    python benchmarks/boundscheck_cost.py            # writes results/boundscheck-cpu.{json,md}
    python benchmarks/boundscheck_cost.py --quick --no-write
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import arrays as A  # noqa: E402  (the workloads and their inputs)
from machine_info import machine  # noqa: E402

import isozyme as iz  # noqa: E402
from isozyme.calls import build, prepare  # noqa: E402


def workloads() -> dict[str, tuple]:
    """name -> (function, primal args, gradient args, reset before each gradient call)."""
    x = np.random.default_rng(0).uniform(-1, 1, A.ROSEN_N)
    dx = np.zeros_like(x)
    u0 = np.sin(np.linspace(0, np.pi, A.HEAT_N))
    u, du = u0.copy(), np.zeros_like(u0)
    alphas, means, icf, xs = A.gmm_inputs(np.random.default_rng(2), A.GMM_D, A.GMM_K, A.GMM_N)
    lg = A.log_gamma_term(A.GMM_D, 0)
    da, dm, di = np.zeros_like(alphas), np.zeros_like(means), np.zeros_like(icf)

    def reset_heat() -> None:
        u[:] = u0
        du[:] = 0.0

    def reset_gmm() -> None:
        da[:] = 0.0
        dm[:] = 0.0
        di[:] = 0.0

    return {
        "rosenbrock": (A.rosenbrock_loop, [iz.Const, iz.Const(x)],
                       [iz.Active, iz.Duplicated(x, dx)], lambda: dx.fill(0.0)),
        "heat": (A.heat_loop, [iz.Const, iz.Const(u), iz.Const(A.HEAT_STEPS)],
                 [iz.Active, iz.Duplicated(u, du), iz.Const(A.HEAT_STEPS)], reset_heat),
        "gmm": (A.gmm_loop, [iz.Const, iz.Const(alphas), iz.Const(means), iz.Const(icf),
                             iz.Const(xs), 1.0, 0, lg],
                [iz.Active, iz.Duplicated(alphas, da), iz.Duplicated(means, dm),
                 iz.Duplicated(icf, di), iz.Const(xs), 1.0, 0, lg], reset_gmm),
    }


def compiled(mode: iz.Mode, f, args: list, boundscheck: bool):
    """A runner for ``autodiff(mode, f, *args)`` compiled with the given setting."""
    iz.config(boundscheck=boundscheck)
    spec = prepare(mode, f, args)
    return build(spec, keep_stages=False), [a if isinstance(a, iz.annotations.Annotation)
                                            else iz.Const(a) for a in args[1:]]


def _timed_call(comp, anns: list, reset) -> callable:
    """One call as timed: reset the inputs the function updates, then run."""
    def call():
        reset()
        return comp.run(anns)

    return call


def best_times(calls: dict[str, callable], repeat: int, min_time: float) -> dict[str, float]:
    """Best per-call time of each callable, repeats interleaved round-robin."""
    number: dict[str, int] = {}
    for name, call in calls.items():
        n, t = 1, 0.0
        while t < min_time / 4:
            start = time.perf_counter()
            for _ in range(n):
                call()
            t = time.perf_counter() - start
            n *= 2
        number[name] = max(1, int(n * min_time / max(t, 1e-9)))
    best = {name: float("inf") for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(number[name]):
                call()
            best[name] = min(best[name], (time.perf_counter() - start) / number[name])
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--rounds", type=int, default=3, help="rounds of repeats (median ratio)")
    p.add_argument("--min-time", type=float, default=0.2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args()
    if args.quick:
        args.repeat, args.min_time, args.rounds = 3, 0.05, 1
    rows = []
    for name, (f, primal_args, grad_args, reset) in workloads().items():
        calls = {}
        for kind, mode, fargs in (("primal", iz.ForwardWithPrimal, primal_args),
                                  ("gradient", iz.Reverse, grad_args)):
            for check in (True, False):
                comp, anns = compiled(mode, f, fargs, check)
                calls[(kind, check)] = _timed_call(comp, anns, reset)
        # the two versions compute the same primal
        on, off = calls[("primal", True)](), calls[("primal", False)]()
        assert np.isclose(on[1], off[1], rtol=1e-12), (name, on, off)
        # memory-bound loops over 8 MB arrays move by several percent from one round to
        # the next: the ratio reported is the median of the rounds' ratios
        rounds = [best_times(calls, args.repeat, args.min_time) for _ in range(args.rounds)]
        for kind in ("primal", "gradient"):
            ratios = sorted(b[(kind, True)] / b[(kind, False)] for b in rounds)
            ratio = ratios[len(ratios) // 2]
            on = min(b[(kind, True)] for b in rounds)
            off = min(b[(kind, False)] for b in rounds)
            rows.append({"workload": name, "what": kind, "checks_on_ms": on * 1e3,
                         "checks_off_ms": off * 1e3, "ratio": ratio,
                         "round_ratios": ratios})
            print(f"{name:11s} {kind:9s} on {on * 1e3:8.3f} ms  off {off * 1e3:8.3f} ms  "
                  f"on/off (median of {len(ratios)} rounds) {ratio:5.3f} "
                  f"[{', '.join(f'{r:.3f}' for r in ratios)}]  "
                  f"{'met' if ratio <= 1.05 else 'NOT met'}")
    iz.config(boundscheck=True)
    if args.no_write:
        return
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "boundscheck-cpu.json").write_text(json.dumps({"machine": info, "rows": rows},
                                                              indent=2, default=str))
    lines = ["# Cost of bounds checks (CPU)", "",
             f"Generated by `benchmarks/boundscheck_cost.py` on "
             f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}.", "",
             f"Machine: {info.get('cpu_model')}, {info.get('cpus_usable')} usable CPUs; one "
             f"process, both versions compiled side by side; {args.rounds} rounds, each the "
             f"best of {args.repeat} interleaved repeats of at least {args.min_time} s; the "
             "times are the best over all rounds, the ratio the median of the rounds' ratios.",
             "",
             "| workload | what | checks on (ms) | checks off (ms) | on / off | rounds | goal <= 1.05 |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['what']} | {r['checks_on_ms']:.3f} | "
                     f"{r['checks_off_ms']:.3f} | {r['ratio']:.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in r['round_ratios'])} | "
                     f"{'met' if r['ratio'] <= 1.05 else 'not met'} |")
    (args.out / "boundscheck-cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
