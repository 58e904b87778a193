"""Regenerate ``data/golden/*.json``: GradBench's own expected outputs for the small inputs.

GradBench validates a tool's output against its golden implementation, the hand-written
derivatives of ``tools/manual`` (C++), run on the same input. This script compiles those
tools from a GradBench checkout and records their outputs, so that the checks of
``run.py`` and ``tests/test_gradbench_evals.py`` compare against exactly what GradBench
compares against, with nothing downloaded or compiled at run time:

```console
$ python benchmarks/gradbench/make_golden.py --gradbench /path/to/gradbench \
      --json-hpp /path/to/nlohmann/json.hpp
```

``particle`` and ``saddle`` have no golden tool: GradBench's evals compare with constants,
which ``validate.py`` holds. The outputs recorded in ``data/golden`` came from GradBench
commit f26651a7 compiled with g++ -O2 (no -march=native, no OpenMP); ``--only ode lstm gmm
det`` regenerates those four alone. ``ode``'s golden ``gradient`` is the derivative of the
ODE's exact solution (``tools/manual/ode.cpp``), not of the Runge-Kutta steps, as in
GradBench; ``det``'s is the cofactor matrix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: benchmarks/ holds the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gradbench import inputs  # noqa: E402

GOLDEN = inputs.DATA / "golden"


def _compile(gradbench: Path, json_hpp: Path, tool: str, out: Path) -> Path:
    """Build ``tools/manual/<tool>.cpp`` as GradBench's Makefile does (c++17, -O2 here)."""
    inc = out / "include"
    inc.mkdir(exist_ok=True)
    shutil.copy(json_hpp, inc / "json.hpp")
    exe = out / tool
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wno-unknown-pragmas", f"-I{gradbench / 'cpp'}", f"-I{inc}",
         "-o", str(exe), str(gradbench / "tools" / "manual" / f"{tool}.cpp"), "-lm"],
        check=True,
    )
    return exe


def _run(exe: Path, inp: dict, function: str, tmp: Path) -> object:
    """Run a GradBench C++ tool once (``min_runs`` 1) and return its JSON output."""
    path = tmp / "input.json"
    path.write_text(json.dumps(inp | {"min_runs": 1, "min_seconds": 0}))
    res = subprocess.run([str(exe), str(path), function], check=True, capture_output=True,
                         text=True)
    return json.loads(res.stdout.splitlines()[0])


def main() -> None:
    """Compile the golden tools, run them on every bundled input, write ``data/golden``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gradbench", type=Path, required=True, help="a GradBench checkout")
    ap.add_argument("--json-hpp", type=Path, required=True, help="nlohmann/json single header")
    ap.add_argument("--only", nargs="+", help="tools to run (default: all)")
    args = ap.parse_args()
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        both = ("objective", "jacobian")
        cases = {
            "ba": [(f.stem, inputs.load_ba(f).json, both) for f in inputs.ba_files()],
            "ht": [(f.stem, inputs.load_ht(f).json, both) for f in inputs.ht_files()],
            "kmeans": [("k=10,n=1000,d=8", inputs.kmeans_input().json, ("cost", "dir"))],
            "ode": [(i.description, i.json, ("primal", "gradient")) for i in inputs.ode_inputs()],
            "lstm": [(f.stem, inputs.load_lstm(f).json, both) for f in inputs.lstm_files()],
            "gmm": [(i.description, i.json, both) for i in inputs.gmm_inputs()],
            "det": [(i.description, i.json, ("primal", "gradient")) for i in inputs.det_inputs((5, 6, 7))],
        }
        for tool, runs in cases.items():
            if args.only and tool not in args.only:
                continue
            exe = _compile(args.gradbench, args.json_hpp, tool, tmp)
            golden = {desc: {fn: _run(exe, inp, fn, tmp) for fn in fns} for desc, inp, fns in runs}
            (GOLDEN / f"{tool}.json").write_text(json.dumps(golden, indent=0) + "\n")
            print(f"wrote {GOLDEN / (tool + '.json')}: {', '.join(golden)}")


if __name__ == "__main__":
    main()
