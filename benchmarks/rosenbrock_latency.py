"""Latency of isozyme on Enzyme.jl's scalar example, beside JAX (CPU, one process).

    python benchmarks/rosenbrock_latency.py            # full run, writes benchmarks/results/
    python benchmarks/rosenbrock_latency.py --quick    # fewer repetitions, for a smoke test
    python benchmarks/rosenbrock_latency.py --no-jax   # skip the JAX comparison

Measured, for ``rosenbrock(x, y) = (1 - x)**2 + 100 (y - x**2)**2`` at (1.0, 2.0):

* **first call**: ``autodiff(Reverse, f, Active, Active(1.0), Active(2.0))`` on a *fresh
  function object* (made by a factory, so isozyme's compile cache misses): trace,
  optimize, differentiate, lower, LLVM O3 and MCJIT.  The median of ``--reps``
  repetitions.  The very first call of the process, which also pays for lazy imports
  and the LLVM target set-up, is reported on its own line, and so is the phase
  breakdown of one more first call (measured by wrapping isozyme's internal steps).
* **warm call**: the same call once compiled (and the ``Forward`` and ``gradient``
  equivalents): ``timeit``, median over repeats, in microseconds per call, annotations
  constructed in the timed expression as a user writes them.
* **primal**: the plain Python ``rosenbrock(1.0, 2.0)``, and the ratio warm / primal.
* **JAX** (optional peer, when ``import jax`` works): ``jax.jit(jax.grad(f,
  argnums=(0, 1)))`` with x64 enabled on the CPU, its first call for a fresh function
  and its warm call (``jax.block_until_ready`` on the result).

Everything runs in this one process; thread pools of numpy/XLA are limited to one
thread through environment variables set before they are imported.  Results go to
``benchmarks/results/rosenbrock_latency-cpu.json`` and ``.md``.  Timings are reported,
never asserted: the goals (warm call <= 10 us, first call <= 300 ms) are marked met or
not met.
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
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from machine_info import machine  # noqa: E402

GOAL_WARM_US = 10.0
GOAL_FIRST_MS = 300.0
X, Y = 1.0, 2.0
EXPECTED_GRAD = (-400.0, 200.0)


ROSENBROCK_SOURCE = """
def rosenbrock(x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2
"""


def load_rosenbrock_from_new_file(folder: Path, k: int) -> Callable[[float, float], float]:
    """rosenbrock from a new module file: a fresh code object, so the frontend parses
    and converts its source again (as for a script run for the first time)."""
    import importlib.util

    path = folder / f"rosenbrock_{k}.py"
    path.write_text(f"# copy {k}\n" + ROSENBROCK_SOURCE)
    spec = importlib.util.spec_from_file_location(f"_iz_bench_rosenbrock_{k}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rosenbrock


def make_rosenbrock() -> Callable[[float, float], float]:
    """A new function object each call (same source), so compile caches keyed on the
    function miss."""

    def rosenbrock(x, y):
        return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2

    return rosenbrock


# --------------------------------------------------------------------------- timing
def per_call_us(stmt: Callable[[], object], repeat: int, min_time: float) -> dict:
    """``timeit`` a zero-argument callable: median/min microseconds per call."""
    timer = timeit.Timer(stmt)
    number = 1
    while True:  # like Timer.autorange, but to min_time seconds per repeat
        if timer.timeit(number) >= min_time:
            break
        number *= 2
    times = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return {
        "median_us": statistics.median(times),
        "min_us": min(times),
        "max_us": max(times),
        "repeats": repeat,
        "calls_per_repeat": number,
    }


def first_call_ms(call: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = call()
    return (time.perf_counter() - t0) * 1e3, out


def summarize_ms(samples: list[float]) -> dict:
    return {
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "samples_ms": samples,
    }


# --------------------------------------------------------------------------- isozyme
def phase_breakdown(iz) -> dict[str, float] | None:
    """Time the steps of one first call by wrapping isozyme's internal functions.

    These are internals (``frontends.python.trace``, ``calls.run_pipeline`` with its
    per-stage callback, ``runtime.jit`` translate/optimize/MCJIT); if they moved, the
    breakdown is skipped rather than guessed.
    """
    try:
        import isozyme.calls as api
        import isozyme.frontends.python as fe
        import isozyme.runtime.jit as jit
    except ImportError:
        return None
    needed = [(fe, "trace"), (api, "run_pipeline"), (jit, "compile_llvm_module"),
              (jit, "translate_to_llvm_ir"), (jit._JIT, "optimize")]
    if not all(hasattr(o, n) for o, n in needed):
        return None
    phases: dict[str, float] = {}
    originals = {(o, n): getattr(o, n) for o, n in needed}

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + (time.perf_counter() - t0) * 1e3

        return wrapper

    def pipeline(module, *, on_stage=None, **kw):
        last = [time.perf_counter()]

        def stamp(stage, mod):
            now = time.perf_counter()
            if stage != "traced":
                phases[f"stage {stage}"] = (now - last[0]) * 1e3
            last[0] = now
            if on_stage is not None:
                on_stage(stage, mod)

        return originals[(api, "run_pipeline")](module, on_stage=stamp, **kw)

    try:
        fe.trace = timed("trace (Python -> traced IR)", originals[(fe, "trace")])
        api.run_pipeline = pipeline
        jit.compile_llvm_module = timed("LLVM total", originals[(jit, "compile_llvm_module")])
        jit.translate_to_llvm_ir = timed("llvm dialect -> LLVM IR text",
                                         originals[(jit, "translate_to_llvm_ir")])
        jit._JIT.optimize = timed("LLVM O3", originals[(jit._JIT, "optimize")])
        f = make_rosenbrock()
        total, _ = first_call_ms(lambda: iz.autodiff(iz.Reverse, f, iz.Active,
                                                     iz.Active(X), iz.Active(Y)))
    finally:
        for (o, n), v in originals.items():
            setattr(o, n, v)
    llvm_total = phases.pop("LLVM total", 0.0)
    known = ("llvm dialect -> LLVM IR text", "LLVM O3")
    phases["LLVM parse + verify + MCJIT codegen"] = llvm_total - sum(phases.get(k, 0.0) for k in known)
    phases["other (annotations, request, entry wrapper)"] = total - sum(phases.values())
    phases["total"] = total
    return phases


def bench_isozyme(reps: int, repeat: int, min_time: float) -> dict:
    t0 = time.perf_counter()
    import isozyme as iz
    import isozyme.calls as api

    import_ms = (time.perf_counter() - t0) * 1e3
    res: dict = {"import_ms": import_ms}

    def reverse_call(f):
        return lambda: iz.autodiff(iz.Reverse, f, iz.Active, iz.Active(X), iz.Active(Y))

    # the process' first call: lazy imports, LLVM target machine and MCJIT engine
    ms, out = first_call_ms(reverse_call(make_rosenbrock()))
    res["process_first_call_ms"] = ms
    res["result"] = [list(out[0])]
    res["correct"] = tuple(out[0]) == EXPECTED_GRAD

    samples, compiles = [], []
    for _ in range(reps):
        f = make_rosenbrock()
        gc.collect()
        before = api.stats.get("compiles", 0)
        ms, _ = first_call_ms(reverse_call(f))
        samples.append(ms)
        compiles.append(api.stats.get("compiles", 0) - before)
    res["first_call"] = summarize_ms(samples)
    res["first_call"]["compiles_per_call"] = compiles  # 1 each: the cache missed

    import tempfile

    src_samples = []
    with tempfile.TemporaryDirectory(prefix="isozyme-bench-") as tmp:
        for k in range(reps):
            f = load_rosenbrock_from_new_file(Path(tmp), k)
            gc.collect()
            ms, _ = first_call_ms(reverse_call(f))
            src_samples.append(ms)
    res["first_call_new_source"] = summarize_ms(src_samples)

    fwd_samples = []
    for _ in range(reps):
        f = make_rosenbrock()
        gc.collect()
        ms, _ = first_call_ms(lambda: iz.autodiff(iz.Forward, f, iz.Duplicated(X, 1.0),
                                                  iz.Const(Y)))
        fwd_samples.append(ms)
    res["first_call_forward"] = summarize_ms(fwd_samples)

    res["breakdown_ms"] = phase_breakdown(iz)

    f = make_rosenbrock()
    iz.autodiff(iz.Reverse, f, iz.Active, iz.Active(X), iz.Active(Y))
    iz.autodiff(iz.Forward, f, iz.Duplicated(X, 1.0), iz.Const(Y))
    iz.gradient(iz.Reverse, f, X, Y)
    before = api.stats.get("compiles", 0)
    res["warm_reverse"] = per_call_us(
        lambda: iz.autodiff(iz.Reverse, f, iz.Active, iz.Active(X), iz.Active(Y)),
        repeat, min_time)
    res["warm_forward"] = per_call_us(
        lambda: iz.autodiff(iz.Forward, f, iz.Duplicated(X, 1.0), iz.Const(Y)),
        repeat, min_time)
    res["warm_gradient"] = per_call_us(lambda: iz.gradient(iz.Reverse, f, X, Y),
                                       repeat, min_time)
    res["warm_recompiles"] = api.stats.get("compiles", 0) - before  # 0: cache hits
    res["version"] = iz.__version__
    return res


# --------------------------------------------------------------------------- JAX
def bench_jax(reps: int, repeat: int, min_time: float) -> dict:
    try:
        t0 = time.perf_counter()
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        import_ms = (time.perf_counter() - t0) * 1e3
    except Exception as e:  # ImportError, or a broken installation
        return {"skipped": f"import jax failed: {type(e).__name__}: {e}"}
    res: dict = {"import_ms": import_ms, "version": jax.__version__,
                 "devices": [str(d) for d in jax.devices()]}

    def jitted():
        return jax.jit(jax.grad(make_rosenbrock(), argnums=(0, 1)))

    g = jitted()
    ms, out = first_call_ms(lambda: jax.block_until_ready(g(X, Y)))
    res["process_first_call_ms"] = ms
    res["result"] = [float(v) for v in out]
    res["correct"] = tuple(float(v) for v in out) == EXPECTED_GRAD
    res["dtype"] = str(out[0].dtype)
    samples = []
    for _ in range(reps):
        g = jitted()
        gc.collect()
        ms, _ = first_call_ms(lambda: jax.block_until_ready(g(X, Y)))
        samples.append(ms)
    res["first_call"] = summarize_ms(samples)
    g = jitted()
    jax.block_until_ready(g(X, Y))
    res["warm"] = per_call_us(lambda: jax.block_until_ready(g(X, Y)), repeat, min_time)
    return res


# --------------------------------------------------------------------------- report
def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("xdsl", "llvmlite", "numpy"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            out[mod] = None
    try:
        import llvmlite.binding as llb

        out["llvm"] = ".".join(map(str, llb.llvm_version_info))
    except Exception:
        out["llvm"] = None
    return out


def goal(value: float, limit: float) -> dict:
    return {"value": value, "limit": limit, "met": value <= limit}


def build_report(izr: dict, jxr: dict, primal: dict, args) -> dict:
    warm = izr["warm_reverse"]["median_us"]
    first = izr["first_call"]["median_ms"]
    ratios = {
        "warm_reverse_over_primal": warm / primal["median_us"],
        "warm_forward_over_primal": izr["warm_forward"]["median_us"] / primal["median_us"],
    }
    if "skipped" not in jxr:
        ratios["isozyme_warm_over_jax_warm"] = warm / jxr["warm"]["median_us"]
        ratios["isozyme_first_over_jax_first"] = first / jxr["first_call"]["median_ms"]
    return {
        "benchmark": "rosenbrock_latency",
        "target": "cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {**versions(), "isozyme": izr.get("version"),
                     "jax": jxr.get("version")},
        "settings": {"first_call_reps": args.reps, "timeit_repeats": args.repeat,
                     "min_time_per_repeat_s": args.min_time,
                     "threads_env": {k: os.environ.get(k) for k in
                                     ("OMP_NUM_THREADS", "XLA_FLAGS")}},
        "isozyme": izr,
        "jax": jxr,
        "primal_python": primal,
        "ratios": ratios,
        "goals": {
            "warm_call_us": goal(warm, GOAL_WARM_US),
            "first_call_ms": goal(first, GOAL_FIRST_MS),
        },
    }


def _met(g: dict) -> str:
    return "met" if g["met"] else "NOT met"


def table_rows(r: dict) -> list[tuple[str, str, str]]:
    iz, jx, pr = r["isozyme"], r["jax"], r["primal_python"]
    rows = [
        ("import", f"{iz['import_ms']:.0f} ms",
         "skipped" if "skipped" in jx else f"{jx['import_ms']:.0f} ms"),
        ("first call of the process (Reverse)", f"{iz['process_first_call_ms']:.1f} ms",
         "skipped" if "skipped" in jx else f"{jx['process_first_call_ms']:.1f} ms"),
        (f"first call, fresh function (Reverse), median of {len(iz['first_call']['samples_ms'])}",
         f"{iz['first_call']['median_ms']:.1f} ms",
         "skipped" if "skipped" in jx else f"{jx['first_call']['median_ms']:.1f} ms"),
        ("first call, function from a new source file (Reverse)",
         f"{iz['first_call_new_source']['median_ms']:.1f} ms", "-"),
        ("first call, fresh function (Forward)", f"{iz['first_call_forward']['median_ms']:.1f} ms",
         "-"),
        ("warm call, Reverse (autodiff)", f"{iz['warm_reverse']['median_us']:.2f} us",
         "skipped" if "skipped" in jx else f"{jx['warm']['median_us']:.2f} us"),
        ("warm call, Forward (autodiff)", f"{iz['warm_forward']['median_us']:.2f} us", "-"),
        ("warm call, gradient(Reverse, f, x, y)", f"{iz['warm_gradient']['median_us']:.2f} us",
         "-"),
        ("plain Python rosenbrock(1.0, 2.0)", f"{pr['median_us']:.3f} us", ""),
        ("warm Reverse / plain Python", f"{r['ratios']['warm_reverse_over_primal']:.0f}x",
         "" if "skipped" in jx else f"{jx['warm']['median_us'] / pr['median_us']:.0f}x"),
    ]
    return rows


def render_markdown(r: dict) -> str:
    m, v, g = r["machine"], r["versions"], r["goals"]
    lines = [
        "# rosenbrock latency (CPU)",
        "",
        f"Generated by `benchmarks/rosenbrock_latency.py` on {r['date']}.",
        "",
        f"Machine: {m['cpu_model'] or m['processor'] or m['machine']} "
        f"(platform.processor() = {m['processor']!r}), {m['cpu_count']} CPUs "
        f"({m['cpus_usable']} usable), {m['platform']}; load average at the end "
        f"{m['load_average_1_5_15min']}.",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        "",
        "| measurement | isozyme | JAX jit(grad) |",
        "|---|---:|---:|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(r)]
    lines += [
        "",
        "## Goals",
        "",
        "| goal | measured | limit | |",
        "|---|---:|---:|---|",
        f"| warm call (Reverse) | {g['warm_call_us']['value']:.2f} us | "
        f"{GOAL_WARM_US:.0f} us | {_met(g['warm_call_us'])} |",
        f"| first call (Reverse, fresh function, median) | "
        f"{g['first_call_ms']['value']:.1f} ms | {GOAL_FIRST_MS:.0f} ms | "
        f"{_met(g['first_call_ms'])} |",
        "",
    ]
    bd = r["isozyme"].get("breakdown_ms")
    if bd:
        lines += ["## Where a first call goes (one sample, internal steps)", "",
                  "| phase | ms |", "|---|---:|"]
        lines += [f"| {k} | {val:.1f} |" for k, val in bd.items()]
        lines.append("")
    jx = r["jax"]
    if "skipped" in jx:
        lines += [f"JAX: {jx['skipped']}", ""]
    lines += [
        "Notes: one process, one thread (OMP/XLA pools limited to 1 thread); warm calls",
        "are `timeit` medians with the annotations built inside the timed expression;",
        "JAX's warm call includes `jax.block_until_ready`. Other processes shared the",
        "machine while it ran, so expect noise of tens of percent.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5, help="first-call repetitions (median)")
    p.add_argument("--repeat", type=int, default=7, help="timeit repeats (median)")
    p.add_argument("--min-time", type=float, default=0.2,
                   help="seconds per timeit repeat (at least)")
    p.add_argument("--quick", action="store_true", help="reps=2, repeat=3, min-time=0.05")
    p.add_argument("--no-jax", action="store_true", help="skip the JAX comparison")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parent / "results",
                   help="folder for rosenbrock_latency-cpu.json/.md")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.repeat, args.min_time = 2, 3, 0.05

    izr = bench_isozyme(args.reps, args.repeat, args.min_time)
    rosen = make_rosenbrock()
    primal = per_call_us(lambda: rosen(X, Y), args.repeat, args.min_time)
    jxr = ({"skipped": "--no-jax"} if args.no_jax
           else bench_jax(args.reps, args.repeat, args.min_time))
    report = build_report(izr, jxr, primal, args)

    rows = table_rows(report)
    w = max(len(a) for a, _, _ in rows)
    print(f"{'measurement':<{w}}  {'isozyme':>12}  {'JAX jit(grad)':>14}")
    for a, b, c in rows:
        print(f"{a:<{w}}  {b:>12}  {c:>14}")
    if "skipped" in jxr:
        print(f"JAX skipped: {jxr['skipped']}")
    if izr.get("breakdown_ms"):
        print("\nfirst-call breakdown (ms):")
        for k, val in izr["breakdown_ms"].items():
            print(f"  {k:<45} {val:8.1f}")
    g = report["goals"]
    print(f"\ngoal warm call <= {GOAL_WARM_US:.0f} us: {g['warm_call_us']['value']:.2f} us "
          f"-> {_met(g['warm_call_us'])}")
    print(f"goal first call <= {GOAL_FIRST_MS:.0f} ms: {g['first_call_ms']['value']:.1f} ms "
          f"-> {_met(g['first_call_ms'])}")
    if not izr["correct"]:
        print(f"WARNING: isozyme returned {izr['result']}, expected {EXPECTED_GRAD}")
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rosenbrock_latency-cpu.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "rosenbrock_latency-cpu.md").write_text(render_markdown(report))
        print(f"\nwrote {args.out / 'rosenbrock_latency-cpu.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
