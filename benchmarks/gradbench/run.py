"""Run GradBench's ba, ht, kmeans, particle and saddle evals with isozyme on the small
inputs, validate each output against GradBench's reference, and print timings.

```console
$ python benchmarks/gradbench/run.py                 # every eval, every function
$ python benchmarks/gradbench/run.py --only ba kmeans --runs 3
```

For each (eval, input, function) the table gives the first call (tracing and compiling
included; the compile cache is cleared before each eval) and the median of ``--runs``
warm calls, and whether GradBench's validator would accept the output
(``validate.mismatches``, tolerance 1e-4, against the golden tool's recorded output or
GradBench's constant).  Exit status 1 when any output is invalid.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/ holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import isozyme as iz  # noqa: E402

from gradbench import ba, ht, inputs, kmeans, particle, saddle, validate  # noqa: E402

EVALS = ("ba", "ht", "kmeans", "particle", "saddle")

#: One case: eval, input description, function name, the call, the expected output.
Case = tuple[str, str, str, Callable[[], Any], Any]


def cases(only: tuple[str, ...]) -> Iterator[Case]:
    """Every (eval, input, function) GradBench runs on the small inputs, in eval order."""
    if "ba" in only:
        for f in inputs.ba_files():
            inp, gold = inputs.load_ba(f), validate.golden("ba")[f.stem]
            yield "ba", f.stem, "objective", lambda inp=inp: ba.run_objective(inp), gold["objective"]
            yield "ba", f.stem, "jacobian", lambda inp=inp: ba.run_jacobian(inp), gold["jacobian"]
    if "ht" in only:
        for f in inputs.ht_files():
            inp, gold = inputs.load_ht(f), validate.golden("ht")[f.stem]
            yield "ht", f.stem, "objective", lambda inp=inp: ht.run_objective(inp), gold["objective"]
            yield "ht", f.stem, "jacobian", lambda inp=inp: ht.run_jacobian(inp), gold["jacobian"]
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


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"


def main() -> int:
    """Run, validate and time the selected evals; print one table row per case."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=EVALS, default=list(EVALS))
    ap.add_argument("--runs", type=int, default=5, help="warm calls timed per case")
    args = ap.parse_args()
    print("| eval | input | function | first call (ms) | warm call, median (ms) | valid |")
    print("|---|---|---|---:|---:|---|")
    failures = 0
    last_eval = None
    for name, desc, fn, call, expected in cases(tuple(args.only)):
        if name != last_eval:  # each eval's first call compiles from scratch
            iz.clear_cache()
            last_eval = name
        t0 = time.perf_counter()
        out = call()
        first = time.perf_counter() - t0
        warm = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            call()
            warm.append(time.perf_counter() - t0)
        bad = validate.mismatches(expected, out)
        failures += bool(bad)
        verdict = "yes" if not bad else f"**no** ({len(bad)} mismatches: {bad[0]})"
        print(f"| {name} | {desc} | {fn} | {_ms(first)} | {_ms(statistics.median(warm))} | {verdict} |",
              flush=True)
    print(f"\n{'all outputs valid' if not failures else f'{failures} invalid outputs'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
