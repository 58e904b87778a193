"""Run GradBench's ba, ht, kmeans, particle, saddle, ode, lstm, gmm and det evals with
isozyme on the small inputs, validate each output against GradBench's reference, and
print timings.

```console
$ python benchmarks/gradbench/run.py                 # every eval, every function
$ python benchmarks/gradbench/run.py --only ba kmeans --runs 3
$ python benchmarks/gradbench/run.py --write         # also writes results-cpu.md here
$ python benchmarks/gradbench/run.py --only ode det --append  # adds a section to it
```

For each (eval, input, function) the table gives the first call (tracing and compiling
included; the compile cache is cleared before each eval) and the median of ``--runs``
warm calls, and whether GradBench's validator would accept the output
(``validate.mismatches``, tolerance 1e-4, against the golden tool's recorded output or
GradBench's constant); a case that raises an isozyme error (a construct isozyme refuses)
is an invalid row naming the error.  Exit status 1 when any output is invalid.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/ holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results-cpu.md"

import isozyme as iz  # noqa: E402

from gradbench import ba, ht, inputs, kmeans, particle, saddle, validate  # noqa: E402
from gradbench import det, gmm, lstm, ode  # noqa: E402

EVALS = ("ba", "ht", "kmeans", "particle", "saddle", "ode", "lstm", "gmm", "det")

#: One case: eval, input description, function name, the call, the expected output.
Case = tuple[str, str, str, Callable[[], Any], Any]


def cases(only: tuple[str, ...]) -> Iterator[Case]:
    """Every (eval, input, function) GradBench runs on the small inputs, in eval order."""
    if "ba" in only:
        for f in inputs.ba_files():
            inp, gold = inputs.load_ba(f), validate.golden("ba")[f.stem]
            yield "ba", f.stem, "objective", lambda i=inp: ba.run_objective(i), gold["objective"]
            yield "ba", f.stem, "jacobian", lambda i=inp: ba.run_jacobian(i), gold["jacobian"]
    if "ht" in only:
        for f in inputs.ht_files():
            inp, gold = inputs.load_ht(f), validate.golden("ht")[f.stem]
            yield "ht", f.stem, "objective", lambda i=inp: ht.run_objective(i), gold["objective"]
            yield "ht", f.stem, "jacobian", lambda i=inp: ht.run_jacobian(i), gold["jacobian"]
    if "kmeans" in only:
        inp = inputs.kmeans_input()
        gold = validate.golden("kmeans")["k=10,n=1000,d=8"]
        yield "kmeans", "k=10,n=1000,d=8", "cost", lambda: kmeans.run_cost(inp), gold["cost"]
        yield "kmeans", "k=10,n=1000,d=8", "dir", lambda: kmeans.run_dir(inp), gold["dir"]
    if "particle" in only:
        for v in particle.VARIANTS:
            yield ("particle", "w=0", v, lambda v=v: particle.run(v, inputs.PARTICLE_W0),
                   validate.PARTICLE_EXPECTED)
    if "saddle" in only:
        for v in saddle.VARIANTS:
            yield ("saddle", "start=(1,1)", v, lambda v=v: saddle.run(v, inputs.SADDLE_START),
                   validate.SADDLE_EXPECTED)
    if "ode" in only:
        for inp in inputs.ode_inputs():
            gold = validate.golden("ode")[inp.description]
            yield "ode", inp.description, "primal", lambda i=inp: ode.run_primal(i), gold["primal"]
            yield ("ode", inp.description, "gradient", lambda i=inp: ode.run_gradient(i),
                   gold["gradient"])
    if "lstm" in only:
        for f in inputs.lstm_files():
            inp, gold = inputs.load_lstm(f), validate.golden("lstm")[f.stem]
            yield ("lstm", f.stem, "objective", lambda i=inp: lstm.run_objective(i),
                   gold["objective"])
            yield ("lstm", f.stem, "jacobian", lambda i=inp: lstm.run_jacobian(i),
                   gold["jacobian"])
    if "gmm" in only:
        for inp in inputs.gmm_inputs():
            gold = validate.golden("gmm")[inp.description]
            yield ("gmm", inp.description, "objective", lambda i=inp: gmm.run_objective(i),
                   gold["objective"])
            yield ("gmm", inp.description, "jacobian", lambda i=inp: gmm.run_jacobian(i),
                   gold["jacobian"])
    if "det" in only:
        for inp in inputs.det_inputs():
            gold = validate.golden("det")[inp.description]
            yield "det", inp.description, "primal", lambda i=inp: det.run_primal(i), gold["primal"]
            yield ("det", inp.description, "gradient", lambda i=inp: det.run_gradient(i),
                   gold["gradient"])


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"


def main() -> int:
    """Run, validate and time the selected evals; print one table row per case."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=EVALS, default=list(EVALS))
    ap.add_argument("--runs", type=int, default=5, help="warm calls timed per case")
    ap.add_argument("--write", action="store_true", help=f"write {RESULTS.name} beside this file")
    ap.add_argument("--append", action="store_true",
                    help=f"append this run's table to {RESULTS.name} as a section of its own")
    args = ap.parse_args()
    lines = ["| eval | input | function | first call (ms) | warm call, median (ms) | valid |",
             "|---|---|---|---:|---:|---|"]
    print(*lines, sep="\n")
    failures = 0
    last_eval = None
    for name, desc, fn, call, expected in cases(tuple(args.only)):
        if name != last_eval:  # each eval's first call compiles from scratch
            iz.clear_cache()
            last_eval = name
        t0 = time.perf_counter()
        try:
            out = call()
        except iz.IsozymeError as e:  # a refused construct is a failed row, not the end
            failures += 1
            first_line = str(e).splitlines()[0].replace("|", "\\|")
            lines.append(f"| {name} | {desc} | {fn} | - | - | "
                         f"**no** ({type(e).__name__}: {first_line}) |")
            print(lines[-1], flush=True)
            continue
        first = time.perf_counter() - t0
        warm = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            call()
            warm.append(time.perf_counter() - t0)
        bad = validate.mismatches(expected, out)
        failures += bool(bad)
        verdict = "yes" if not bad else f"**no** ({len(bad)} mismatches: {bad[0]})"
        lines.append(f"| {name} | {desc} | {fn} | {_ms(first)} | "
                     f"{_ms(statistics.median(warm))} | {verdict} |")
        print(lines[-1], flush=True)
    summary = "all outputs valid" if not failures else f"{failures} invalid outputs"
    print(f"\n{summary}")
    if args.write or args.append:
        from machine_info import machine  # noqa: PLC0415  (benchmarks/machine_info.py)

        m = machine()
        flags = f"--only {' '.join(args.only)} " if args.append else ""
        how = (f"`python benchmarks/gradbench/run.py {flags}--runs {args.runs} "
               f"{'--append' if args.append else '--write'}` on "
               f"{m['cpu_model']} ({m['cpus_usable']} usable CPUs), {m['platform']}, "
               f"python {platform.python_version()}; load average at the end "
               f"{m['load_average_1_5_15min']}.\n\n" + "\n".join(lines) + f"\n\n{summary}.\n")
        if args.append:
            with RESULTS.open("a") as f:
                f.write(f"\n## {', '.join(args.only)}\n\n{how}")
        else:
            RESULTS.write_text(f"# GradBench evals with isozyme (small inputs)\n\n{how}")
        print(f"wrote {RESULTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
