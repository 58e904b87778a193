"""``isozyme run`` and :func:`isozyme.tools.ir_run.run_ir`: JIT-running functions of
textual IR (scalars, memrefs of rank 1 and 2, private entries, ``enzyme`` requests),
the CLI's output (``--json``) and its one-line errors."""

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from xdsl.parser import Parser

from isozyme.cli import main
from isozyme.compiler.context import make_context
from isozyme.errors import IsozymeError, UnsupportedError
from isozyme.tools.ir_run import IRRunResult, run_ir

DATA = Path(__file__).parent / "data"
AD_FILE = DATA / "ir_run_ad.mlir"

SCALARS = """
func.func @mix(%x: f64, %y: f32, %n: index, %k: i64) -> (f64, f32, index, i64) {
  %a = arith.mulf %x, %x : f64
  %b = arith.addf %y, %y : f32
  %c1 = arith.constant 1 : index
  %m = arith.addi %n, %c1 : index
  %k2 = arith.muli %k, %k : i64
  func.return %a, %b, %m, %k2 : f64, f32, index, i64
}
func.func @narrow(%a: i8, %b: i16, %c: i32, %p: i1) -> (i8, i16, i32, i1) {
  %a2 = arith.muli %a, %a : i8
  %b2 = arith.addi %b, %b : i16
  %c2 = arith.subi %c, %c : i32
  %t = arith.constant true
  %q = arith.xori %p, %t : i1
  func.return %a2, %b2, %c2, %q : i8, i16, i32, i1
}
func.func private @cube(%x: f64) -> f64 {
  %x2 = arith.mulf %x, %x : f64
  %x3 = arith.mulf %x2, %x : f64
  func.return %x3 : f64
}
"""

MEMREFS = """
// a[i] = a[i] * s for every i; returns the sum of the new values
func.func @scale(%a: memref<?xf64>, %s: f64) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %n = memref.dim %a, %c0 : memref<?xf64>
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {
    %v = memref.load %a[%i] : memref<?xf64>
    %w = arith.mulf %v, %s : f64
    memref.store %w, %a[%i] : memref<?xf64>
    %next = arith.addf %acc, %w : f64
    scf.yield %next : f64
  }
  func.return %r : f64
}
// b[i, j] += i * 10 + j; returns a fresh 3-element buffer holding b's row sums
func.func @rows(%b: memref<3x2xi64>) -> memref<3xi64> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c10 = arith.constant 10 : i64
  %out = memref.alloc() : memref<3xi64>
  scf.for %i = %c0 to %c3 step %c1 {
    %ii = arith.index_cast %i : index to i64
    %base = arith.muli %ii, %c10 : i64
    %z = arith.constant 0 : i64
    %s = scf.for %j = %c0 to %c2 step %c1 iter_args(%acc = %z) -> (i64) {
      %jj = arith.index_cast %j : index to i64
      %add = arith.addi %base, %jj : i64
      %v = memref.load %b[%i, %j] : memref<3x2xi64>
      %w = arith.addi %v, %add : i64
      memref.store %w, %b[%i, %j] : memref<3x2xi64>
      %next = arith.addi %acc, %w : i64
      scf.yield %next : i64
    }
    memref.store %s, %out[%i] : memref<3xi64>
  }
  func.return %out : memref<3xi64>
}
// m[i, j] = m[i, j] * m[i, j] over dynamic sizes
func.func @square2d(%m: memref<?x?xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n0 = memref.dim %m, %c0 : memref<?x?xf32>
  %n1 = memref.dim %m, %c1 : memref<?x?xf32>
  scf.for %i = %c0 to %n0 step %c1 {
    scf.for %j = %c0 to %n1 step %c1 {
      %v = memref.load %m[%i, %j] : memref<?x?xf32>
      %w = arith.mulf %v, %v : f32
      memref.store %w, %m[%i, %j] : memref<?x?xf32>
    }
  }
  func.return
}
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``isozyme run ARGV``: (status, stdout, stderr)."""
    status = main(["run", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---- the Python API ----------------------------------------------------------------


def test_scalars_of_every_width():
    r = run_ir(SCALARS, "mix", [1.5, 0.25, 41, -3_000_000_000])
    assert r.results == [2.25, 0.5, 42, 9_000_000_000_000_000_000]
    assert r.args == [1.5, 0.25, 41, -3_000_000_000]
    r = run_ir(SCALARS, "narrow", [12, -20000, 7, True])
    # i8: 144 wraps to -112; i16: -40000 wraps to 25536
    assert r.results == [-112, 25536, 0, False]
    assert isinstance(r.results[3], bool)


def test_private_entry_and_at_sign():
    assert run_ir(SCALARS, "@cube", [-2.0]).results == [-8.0]


def test_memref_1d_updated_in_place():
    a = np.array([1.0, -2.0, 3.5])
    r = run_ir(MEMREFS, "scale", [a, 2.0])
    assert r.results == [5.0]
    np.testing.assert_array_equal(a, [2.0, -4.0, 7.0])  # the caller's array
    assert r.args[0] is a
    # a nested list is copied into a new array; args holds it after the call
    r = run_ir(MEMREFS, "scale", [[1, 2], 3.0])
    assert r.results == [9.0]
    np.testing.assert_array_equal(r.args[0], [3.0, 6.0])


def test_memref_2d_static_and_dynamic_and_memref_result():
    r = run_ir(MEMREFS, "rows", [[[1, 2], [3, 4], [5, 6]]])
    np.testing.assert_array_equal(r.args[0], [[1, 3], [13, 15], [25, 27]])
    assert r.args[0].dtype == np.int64
    (rows,) = r.results
    assert isinstance(rows, np.ndarray) and rows.dtype == np.int64
    np.testing.assert_array_equal(rows, [4, 28, 52])
    r = run_ir(MEMREFS, "square2d", [[[1.5, -2.0, 3.0], [0.5, 4.0, -1.0]]])
    assert r.results == [] and r.args[0].dtype == np.float32
    np.testing.assert_array_equal(r.args[0], [[2.25, 4.0, 9.0], [0.25, 16.0, 1.0]])


def test_module_op_input_is_not_modified():
    module = Parser(make_context(), SCALARS).parse_module()
    before = str(module)
    assert run_ir(module, "cube", [3.0]).results == [27.0]
    assert str(module) == before  # still private, nothing lowered


def _f(x: float, y: float) -> float:
    return x * x * y + math.sin(x)


def test_enzyme_requests_forward_and_reverse():
    src = AD_FILE.read_text()
    x, y, h = 0.7, -1.3, 1e-6
    dfdx = (_f(x + h, y) - _f(x - h, y)) / (2 * h)
    dfdy = (_f(x, y + h) - _f(x, y - h)) / (2 * h)
    (t,) = run_ir(src, "tangent", [x, 0.5, y, -2.0]).results
    assert t == pytest.approx(0.5 * dfdx - 2.0 * dfdy, rel=1e-7)
    primal, gx, gy = run_ir(src, "gradient", [x, y]).results
    assert primal == pytest.approx(_f(x, y), rel=1e-15)
    assert gx == pytest.approx(2 * x * y + math.cos(x), rel=1e-14)
    assert gx == pytest.approx(dfdx, rel=1e-7) and gy == pytest.approx(dfdy, rel=1e-7)
    # reverse mode through a loop over a buffer: the gradient is added to the shadow
    a = np.array([1.0, -2.0, 0.5])
    da = np.array([10.0, 0.0, 0.0])
    r = run_ir(src, "grad_sumcubes", [a, da])
    np.testing.assert_allclose(da, [10.0 + 3.0, 12.0, 0.75], rtol=1e-15)
    np.testing.assert_array_equal(a, [1.0, -2.0, 0.5])  # the primal is untouched
    assert r.results == []


# ---- errors of the Python API ------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "args", "message"),
    [
        ("mix", [1.0], r"@mix takes 4 argument\(s\) \(f64, f32, index, i64\), got 1"),
        ("mix", [1.0, 2.0, 1.5, 1], r"argument 2 of @mix \(index\) must be an integer"),
        ("mix", ["a", 2.0, 1, 1], r"argument 0 of @mix \(f64\) must be a number"),
        ("narrow", [128, 0, 0, 0], r"argument 0 of @narrow \(i8\) must be in \[-128, 127\]"),
        ("narrow", [0, 0, 0, 2], r"argument 3 of @narrow \(i1\) must be true/false or 0/1"),
        ("rows", [[[1, 2], [3, 4]]],
         r"argument 0 of @rows \(memref<3x2xi64>\): size 2 of dimension 0 differs from "
         r"the static size 3"),
        ("rows", [[1, 2, 3]], r"must have 2 dimension\(s\), got shape \[3\]"),
        ("scale", [[[1.0], [2.0, 3.0]], 1.0], r"must be a rectangular nested list"),
        ("scale", [1.0, 1.0], r"argument 0 of @scale \(memref<\?xf64>\) must be a nested list"),
        ("rows", [[[1.5, 2], [3, 4], [5, 6]]], r"holds float64 values, which do not fit"),
        ("nope", [], r"no function @nope in <input>; functions: @scale, @rows, @square2d"),
    ],
)
def test_bad_calls_are_isozyme_errors(entry, args, message):
    src = MEMREFS if entry in ("rows", "scale", "nope") else SCALARS
    with pytest.raises(IsozymeError, match=message):
        run_ir(src, entry, args)


def test_parse_error_names_line_and_column():
    with pytest.raises(IsozymeError, match=r"^bad\.mlir:3:26: "):
        run_ir("\nfunc.func @f(%x: f64) -> f64 {\n  %y = arith.mulf %x, %x f64\n}\n",
               "f", [1.0], name="bad.mlir")


def test_unsupported_argument_type():
    src = "func.func @f(%x: complex<f64>) {\n  func.return\n}\n"
    with pytest.raises(UnsupportedError, match=r"argument 0 of @f has type complex<f64>"):
        run_ir(src, "f", [1.0])


# ---- the command line --------------------------------------------------------------


def test_cli_prints_results_and_memref_arguments(capsys, tmp_path):
    path = tmp_path / "m.mlir"
    path.write_text(MEMREFS)
    status, out, err = run_cli(capsys, str(path), "--entry", "scale",
                               "--args", "[1, -2.5]", "-2")
    assert (status, err) == (0, "")
    assert out.splitlines() == ["3.0", "arg 0: [-2.0, 5.0]"]


def test_cli_json_last_line(capsys, tmp_path):
    path = tmp_path / "m.mlir"
    path.write_text(MEMREFS)
    status, out, _ = run_cli(capsys, str(path), "--entry", "rows",
                             "--args", "[[0, 0], [0, 0], [1, 1]]", "--json")
    assert status == 0
    last = json.loads(out.splitlines()[-1])
    assert last == {"results": [[1, 21, 43]], "args": [[[0, 1], [10, 11], [21, 22]]]}
    status, out, _ = run_cli(capsys, str(AD_FILE), "--entry", "gradient",
                             "--args", "0.7", "2", "--json")
    last = json.loads(out.splitlines()[-1])
    assert last["args"] == [0.7, 2]  # scalars as given
    assert last["results"][1] == pytest.approx(2 * 0.7 * 2 + math.cos(0.7), rel=1e-14)
    assert out.splitlines()[0] == repr(last["results"][0])


def test_cli_reads_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SCALARS))
    status, out, _ = run_cli(capsys, "-", "--entry", "cube", "--args", "1.5")
    assert (status, out) == (0, "3.375\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["MISSING", "--entry", "f"], "no such file: MISSING"),
        (["BAD", "--entry", "f", "--args", "1"], "BAD:3:26: Expected ':'"),
        (["ILLTYPED", "--entry", "f", "--args", "1"],
         "ILLTYPED:2:3: does not verify: Unexpected attribute f64"),
        (["DIR", "--entry", "f"], "DIR is a directory, not an IR file"),
        (["AD", "--entry", "f", "--args", "1", "x"],
         "--args word 2 ('x') is not a number or a JSON list"),
        (["AD", "--entry", "f", "--args", "1"], "@f takes 2 argument(s) (f64, f64), got 1"),
        (["AD", "--entry", "sumcubes", "--args", "[1, [2]]"],
         "argument 0 of @sumcubes (memref<?xf64>) must be a rectangular nested list"),
        (["AD", "--entry", "g"], "no function @g in AD; functions: @f, @tangent, "
         "@gradient, @sumcubes, @grad_sumcubes"),
    ],
)
def test_cli_errors_are_one_line(capsys, tmp_path, argv, message):
    bad = tmp_path / "bad.mlir"
    bad.write_text("\nfunc.func @f(%x: f64) -> f64 {\n  %y = arith.mulf %x, %x f64\n}\n")
    illtyped = tmp_path / "illtyped.mlir"  # verified by xDSL while the op is parsed
    illtyped.write_text("func.func @f(%x: f64) -> f64 {\n  %y = arith.addi %x, %x : f64\n"
                        "  func.return %y : f64\n}\n")
    names = {"MISSING": str(tmp_path / "missing.mlir"), "BAD": str(bad), "AD": str(AD_FILE),
             "ILLTYPED": str(illtyped), "DIR": str(tmp_path)}
    argv = [names.get(a, a) for a in argv]
    for key, value in names.items():
        message = message.replace(key, value)
    status, out, err = run_cli(capsys, *argv)
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and err == f"isozyme: error: {message}\n"


def test_cli_needs_entry(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", str(AD_FILE)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--entry" in err


def test_result_type():
    assert IRRunResult([1.0, np.arange(2)], [3]).to_json() == {
        "results": [1.0, [0, 1]], "args": [3]}


def test_rank0_and_i1_memrefs():
    src = """
func.func @f(%a: memref<f64>, %m: memref<2xi1>) -> i1 {
  %v = memref.load %a[] : memref<f64>
  %w = arith.addf %v, %v : f64
  memref.store %w, %a[] : memref<f64>
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %b = memref.load %m[%c0] : memref<2xi1>
  memref.store %b, %m[%c1] : memref<2xi1>
  func.return %b : i1
}"""
    r = run_ir(src, "f", [2.5, [1, 0]])
    assert r.results == [True] and r.args[0].shape == () and float(r.args[0]) == 5.0
    np.testing.assert_array_equal(r.args[1], [True, True])


def test_add_c_entry_points_only_one_function():
    """``add-c-entry-points{only=F}`` gives the private @cube alone an entry point;
    without the option every public function gets one (and @cube none)."""
    from xdsl.dialects import llvm

    from isozyme.compiler.lowering import apply_lowering
    from isozyme.compiler.lowering.add_c_entry_points import AddCEntryPointsPass
    from isozyme.compiler.targets.cpu import CpuTarget

    def entries(only):
        module = Parser(make_context(), SCALARS).parse_module()
        passes = [AddCEntryPointsPass(only) if isinstance(p, AddCEntryPointsPass) else p
                  for p in CpuTarget().lowering_passes()]
        apply_lowering(module, passes)
        return sorted(f.sym_name.data for f in module.ops
                      if isinstance(f, llvm.FuncOp) and f.sym_name.data.startswith("_iz_"))

    assert entries("cube") == ["_iz_entry_cube"]
    assert entries(None) == ["_iz_entry_mix", "_iz_entry_narrow"]


# ---- autodiff's stages on hand-written IR ------------------------------------------

LOOPS = """
#id = affine_map<(d0) -> (d0)>
// the sum of a's elements, with an affine loop
func.func @affine_sum(%a: memref<4xf64>) -> f64 {
  %z = arith.constant 0.0 : f64
  %r = affine.for %i = 0 to 4 iter_args(%acc = %z) -> (f64) {
    // generic form: xDSL 0.74 parses `affine.load %a[%i]` with a symbol map
    %v = "affine.load"(%a, %i) <{map = #id}> : (memref<4xf64>, index) -> f64
    %s = arith.addf %acc, %v : f64
    affine.yield %s : f64
  }
  func.return %r : f64
}
// b[i] = a[i] * a[i] + b[i]
func.func @square_add(%a: memref<3xf64>, %b: memref<3xf64>) {
  linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel"]}
      ins(%a : memref<3xf64>) outs(%b : memref<3xf64>) {
  ^bb0(%x: f64, %y: f64):
    %m = arith.mulf %x, %x : f64
    %s = arith.addf %m, %y : f64
    linalg.yield %s : f64
  }
  func.return
}
"""


def test_affine_and_linalg_are_lowered_before_running():
    """``affine.for`` and ``linalg.generic`` run: the ``optimized`` stage lowers them
    (without it the lowering stops at 'no conversion to the llvm dialect')."""
    assert run_ir(LOOPS, "affine_sum", [[1.5, -2.0, 4.0, 0.25]]).results == [3.75]
    r = run_ir(LOOPS, "square_add", [[1.0, -2.0, 0.5], [10.0, 20.0, 30.0]])
    np.testing.assert_array_equal(r.args[1], [11.0, 24.0, 30.25])
    np.testing.assert_array_equal(r.args[0], [1.0, -2.0, 0.5])


BRANCHES = """
// |x| with branches: raised to scf.if, then inlined into @g
func.func private @absval(%x: f64) -> f64 {
  %z = arith.constant 0.0 : f64
  %neg = arith.cmpf olt, %x, %z : f64
  cf.cond_br %neg, ^flip, ^done(%x : f64)
^flip:
  %m = arith.negf %x : f64
  cf.br ^done(%m : f64)
^done(%r: f64):
  func.return %r : f64
}
func.func @g(%x: f64) -> f64 {
  %a = func.call @absval(%x) : (f64) -> f64
  %b = arith.mulf %a, %x : f64
  func.return %b : f64
}
// the index of a's first negative element (n if none): a loop with two exits,
// which lift-cf-to-scf cannot raise: it stays multi-block and is lowered as it is
func.func @first_negative(%a: memref<?xf64>) -> index {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %n = memref.dim %a, %c0 : memref<?xf64>
  cf.br ^head(%c0 : index)
^head(%i: index):
  %more = arith.cmpi slt, %i, %n : index
  cf.cond_br %more, ^body, ^done(%i : index)
^body:
  %v = memref.load %a[%i] : memref<?xf64>
  %neg = arith.cmpf olt, %v, %z : f64
  %next = arith.addi %i, %c1 : index
  cf.cond_br %neg, ^done(%i : index), ^head(%next : index)
^done(%r: index):
  func.return %r : index
}
"""


def test_optimized_stage_raises_branches_before_inlining():
    """``lift-cf-to-scf{strict=false}`` runs first in ``optimized``: a multi-block
    callee AD never sees is raised and then inlined; a function it cannot raise is
    left multi-block, and still lowers and runs."""
    from xdsl.dialects import cf, func

    from isozyme.compiler.pipeline import Pipeline

    module = Parser(make_context(), BRANCHES).parse_module()
    Pipeline.default("cpu", custom=False).run(module, upto="optimized")
    fns = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    assert sorted(fns) == ["first_negative", "g"]  # @absval inlined, then dropped
    assert not any(isinstance(op, cf.ConditionalBranchOp) for op in fns["g"].walk())
    assert len(fns["first_negative"].body.blocks) > 1
    assert run_ir(BRANCHES, "g", [-3.0]).results == [-9.0]  # |x| * x
    assert run_ir(BRANCHES, "g", [2.0]).results == [4.0]
    assert run_ir(BRANCHES, "absval", [-1.5]).results == [1.5]  # a private entry
    assert run_ir(BRANCHES, "first_negative", [[1.0, 2.0, -3.0, -4.0]]).results == [2]
    assert run_ir(BRANCHES, "first_negative", [[1.0]]).results == [1]
