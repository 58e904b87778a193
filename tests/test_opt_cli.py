"""isozyme-opt (isozyme/tools/opt.py), the `enzyme` pass and the xdsl.universe plug-in."""

import math
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from isozyme.tools.ir_run import parse_ir, run_ir
from isozyme.tools.opt import AFTER_HEADER, main

DATA = Path(__file__).parent / "data"
SQUARE = DATA / "square.mlir"

# f(x, y) = sin(x*y), requested four ways; @fwddiffef already exists, so Enzyme's
# uniquing gives the two forward signatures fwddiffef_0 and fwddiffef_1.
_DUP = "#enzyme<activity enzyme_dup>"
_CONST = "#enzyme<activity enzyme_const>"
_ACTIVE = "#enzyme<activity enzyme_active>"
_NONEED = "#enzyme<activity enzyme_dupnoneed>"
REQUESTS = f"""
func.func private @f(%x: f64, %y: f64) -> f64 {{
  %p = arith.mulf %x, %y : f64
  %s = math.sin %p : f64
  func.return %s : f64
}}
func.func private @fwddiffef(%x: f64) -> f64 {{
  func.return %x : f64
}}
func.func @both(%x: f64, %y: f64, %dx: f64, %dy: f64) -> (f64, f64, f64, f64, f64) {{
  %a = enzyme.fwddiff @f(%x, %dx, %y) {{activity=[{_DUP}, {_CONST}], ret_activity=[{_NONEED}]}} : (f64, f64, f64) -> f64
  %b = enzyme.fwddiff @f(%x, %y, %dy) {{activity=[{_CONST}, {_DUP}], ret_activity=[{_NONEED}]}} : (f64, f64, f64) -> f64
  %a2 = enzyme.fwddiff @f(%x, %dy, %y) {{activity=[{_DUP}, {_CONST}], ret_activity=[{_NONEED}]}} : (f64, f64, f64) -> f64
  %c:2 = enzyme.autodiff @f(%x, %y, %dx) {{activity=[{_ACTIVE}, {_ACTIVE}], ret_activity=[#enzyme<activity enzyme_activenoneed>]}} : (f64, f64, f64) -> (f64, f64)
  func.return %a, %b, %a2, %c#0, %c#1 : f64, f64, f64, f64, f64
}}
func.func @batched(%x: f64, %y: f64, %d1: f64, %d2: f64) -> (f64, f64) {{
  %r:2 = enzyme.fwddiff @f(%x, %d1, %d2, %y) {{activity=[{_DUP}, {_CONST}], ret_activity=[{_NONEED}], width=2}} : (f64, f64, f64, f64) -> (f64, f64)
  func.return %r#0, %r#1 : f64, f64
}}
"""


def _opt(capsys, *argv):
    """(status, stdout, stderr) of isozyme-opt ARGV, run in this process."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as e:  # argparse: usage errors and --help
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(capsys, *argv, status=1):
    code, out, err = _opt(capsys, *argv)
    assert code == status, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("isozyme-opt: error: "), err
    assert "Traceback" not in err and out == ""
    return lines[0]


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("opt") / "requests.mlir"
    path.write_text(REQUESTS)
    return path


# -- options ----------------------------------------------------------------------------


def test_passes_option_kept(capsys):
    status, out, err = _opt(capsys, SQUARE, "--passes", "enzyme-differentiate,inline,canonicalize")
    assert (status, err) == (0, "")
    assert "enzyme.fwddiff" not in out and "@fwddiffesquare" not in out  # inlined
    assert out.count("arith.mulf") == 2 and "arith.addf" in out


def test_pass_pipeline_with_options_and_mlir_anchor(capsys):
    # keep-ruled is a bool option of inline; mlir-opt's builtin.module(...) is accepted
    status, out, _ = _opt(capsys, SQUARE, "--pass-pipeline",
                          "builtin.module(enzyme-differentiate,inline{keep-ruled=true})")
    assert status == 0 and "func.call" not in out and "@fwddiffesquare" not in out
    status, out2, _ = _opt(capsys, SQUARE, "-p", "enzyme-differentiate", "-p",
                           "inline{keep-ruled=true}")  # repeated: one after the other
    assert status == 0 and out2 == out


def test_print_ir_after_all(capsys):
    status, out, _ = _opt(capsys, SQUARE, "-p", "enzyme-differentiate,inline{keep-ruled=true}",
                          "--print-ir-after-all")
    assert status == 0
    h1 = AFTER_HEADER.format(pass_="enzyme-differentiate")
    h2 = AFTER_HEADER.format(pass_="inline{keep-ruled=true}")
    assert out.count("// -----// IR Dump After") == 2
    first, rest = out.split(h1)[1].split(h2)
    assert "func.call @fwddiffesquare" in first  # after AD, before inlining
    assert "func.call" not in rest and rest.count("builtin.module") == 2  # dump + result


def test_print_op_generic_round_trips(capsys):
    status, out, _ = _opt(capsys, SQUARE, "-p", "enzyme-differentiate", "--print-op-generic")
    assert status == 0
    assert '"func.func"() <{' in out and '"arith.mulf"' in out
    assert "func.func @" not in out  # no custom form left
    module = parse_ir(out)  # the generic form parses back, to the same functions
    names = [op.sym_name.data for op in module.ops]
    assert names == ["square", "dsquare", "fwddiffesquare"]


def test_output_file_and_stdin(capsys, monkeypatch, tmp_path):
    out_file = tmp_path / "out.mlir"
    status, out, _ = _opt(capsys, SQUARE, "-p", "enzyme-differentiate", "-o", out_file)
    assert status == 0 and out == ""
    assert "@fwddiffesquare" in out_file.read_text()
    for argv in (["-"], []):  # '-' or no file: standard input
        monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(SQUARE.read_text()))
        status, out, _ = _opt(capsys, *argv, "-p", "enzyme-differentiate")
        assert status == 0 and out == out_file.read_text()


def test_list_passes(capsys):
    status, out, _ = _opt(capsys, "--list-passes")
    assert status == 0
    lines = out.splitlines()
    inline = next(k for k, s in enumerate(lines) if s.startswith("inline: "))
    assert lines[inline + 1].strip().startswith("keep-ruled: bool = false  leave calls")
    names = [s.split(":")[0] for s in lines if not s.startswith(" ")]
    for name in ("enzyme", "enzyme-differentiate", "simplify-ad", "canonicalize",
                 "convert-scf-to-cf"):
        assert name in names
    enzyme = next(s for s in lines if s.startswith("enzyme: "))
    assert "fwddiffe" in enzyme and "Enzyme-MLIR" in enzyme
    assert not any("A Pass is a named rewrite pass" in s for s in lines)  # no base doc


# -- errors: one line, non-zero status, no traceback ------------------------------------


def test_missing_file_and_directory(capsys, tmp_path):
    assert _one_line_error(capsys, tmp_path / "nope.mlir").endswith(
        f"no such file: {tmp_path / 'nope.mlir'}")
    assert "not a file" in _one_line_error(capsys, tmp_path)


def test_parse_error_names_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f(%x: f64) -> f64 {\n  %y = arith.bogus %x\n}\n")
    line = _one_line_error(capsys, bad)
    assert f"{bad}:2:20: does not parse: Operation arith.bogus is not registered" in line


def test_op_failing_to_verify_while_parsed_names_the_file(capsys, tmp_path):
    """xDSL checks an op's types as it parses it (a VerifyException, not a
    ParseError): the line names the file and the op's line and column."""
    bad = tmp_path / "addi.mlir"
    bad.write_text("func.func @f(%x: f64) -> f64 {\n  %y = arith.addi %x, %x : f64\n"
                   "  func.return %y : f64\n}\n")
    line = _one_line_error(capsys, bad)
    assert line.endswith(f"{bad}:2:3: does not verify: Unexpected attribute f64"), line


@pytest.mark.parametrize("pipeline, fragments", [
    ("inline,bogus", ["unknown pass 'bogus'", "enzyme-differentiate"]),
    ("inline{bogus=1}", ["pass 'inline' has no option 'bogus'; its options: keep-ruled"]),
    ("inline{keep-ruled=3}", ["pass 'inline'", "keep-ruled"]),
    ("inline{", ["does not parse at column 8"]),
])
def test_bad_pipeline(capsys, pipeline, fragments):
    line = _one_line_error(capsys, SQUARE, "-p", pipeline, status=2)
    for fragment in fragments:
        assert fragment in line


def test_bad_command_line(capsys):
    assert "unrecognized arguments: --bogus" in _one_line_error(capsys, SQUARE, "--bogus",
                                                                 status=2)


def test_verify_failure(capsys, tmp_path):
    bad = tmp_path / "types.mlir"
    bad.write_text("func.func @f(%x: f64) -> f32 {\n  func.return %x : f64\n}\n")
    line = _one_line_error(capsys, bad)
    assert f"{bad} does not verify" in line and "expected [f32], got [f64]" in line


def test_pass_failure_names_the_pass(capsys, tmp_path):
    rec = tmp_path / "rec.mlir"
    rec.write_text(
        "func.func @f(%x: f64, %dx: f64) -> f64 {\n"
        f"  %r = enzyme.fwddiff @f(%x, %dx) {{activity=[{_DUP}], ret_activity=[{_NONEED}]}}"
        " : (f64, f64) -> f64\n  func.return %r : f64\n}\n")
    line = _one_line_error(capsys, rec, "-p", "enzyme")
    assert "pass 'enzyme' failed: enzyme.fwddiff @f: the function differentiates itself" in line


def test_unwritable_output(capsys, tmp_path):
    line = _one_line_error(capsys, SQUARE, "-o", tmp_path / "no" / "out.mlir")
    assert "cannot write" in line


def test_errors_in_a_real_process(tmp_path):
    # The installed entry point: no traceback, one line, statuses 1 and 2.
    for argv, status in (([str(tmp_path / "nope.mlir")], 1), ([str(SQUARE), "-p", "x"], 2)):
        proc = subprocess.run([sys.executable, "-m", "isozyme.tools.opt", *argv],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == status and proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr


# -- the enzyme pass: Enzyme-MLIR's names, right numbers ---------------------------------


def test_enzyme_pass_names_and_numbers(capsys, requests_file):
    status, out, _ = _opt(capsys, requests_file, "-p", "enzyme")
    assert status == 0 and "enzyme.fwddiff" not in out and "enzyme.autodiff" not in out
    module = parse_ir(out)
    names = [op.sym_name.data for op in module.ops]
    # the original @fwddiffef keeps its name; the two forward signatures get MLIR's
    # uniquing suffixes; the repeated signature (%a2) reuses fwddiffef_0
    assert names == ["f", "fwddiffef", "both", "batched",
                     "fwddiffef_0", "fwddiffef_1", "diffef", "fwddiffe2f"]
    assert out.count("func.call @fwddiffef_0(") == 2
    x, y, dx, dy = 0.5, 1.5, 0.25, -2.0
    c = math.cos(x * y)
    a, b, a2, gx, gy = run_ir(out, "both", [x, y, dx, dy]).results
    assert a == pytest.approx(c * y * dx, rel=1e-14)
    assert b == pytest.approx(c * x * dy, rel=1e-14)
    assert a2 == pytest.approx(c * y * dy, rel=1e-14)
    assert (gx, gy) == pytest.approx((c * y * dx, c * x * dx), rel=1e-14)  # seed dx
    # and against central finite differences of sin(x*y)
    h = 1e-6
    fd_x = (math.sin((x + h) * y) - math.sin((x - h) * y)) / (2 * h)
    assert gx / dx == pytest.approx(fd_x, rel=1e-8)
    r1, r2 = run_ir(out, "batched", [x, y, 1.0, 3.0]).results
    assert (r1, r2) == pytest.approx((c * y, 3 * c * y), rel=1e-14)


def test_enzyme_pass_names_callee_derivatives(capsys, tmp_path):
    # f calls g; @diffeg is taken, so g's derivative inside diffef is diffeg_0
    src = tmp_path / "call.mlir"
    src.write_text(f"""
func.func private @g(%x: f64) -> f64 {{
  %y = math.exp %x : f64
  func.return %y : f64
}}
func.func private @diffeg(%x: f64) -> f64 {{
  func.return %x : f64
}}
func.func private @f(%x: f64) -> f64 {{
  %y = func.call @g(%x) : (f64) -> f64
  %z = arith.mulf %y, %x : f64
  func.return %z : f64
}}
func.func @df(%x: f64, %s: f64) -> f64 {{
  %r = enzyme.autodiff @f(%x, %s) {{activity=[{_ACTIVE}], ret_activity=[#enzyme<activity enzyme_activenoneed>]}} : (f64, f64) -> f64
  func.return %r : f64
}}
""")
    status, out, _ = _opt(capsys, src, "-p", "enzyme")
    assert status == 0 and "func.call @diffeg_0(" in out and "func.call @diffef(" in out
    x, s = 0.75, 2.0
    (grad,) = run_ir(out, "df", [x, s]).results
    assert grad == pytest.approx(s * math.exp(x) * (1 + x), rel=1e-14)


def test_enzyme_differentiate_keeps_its_own_names(capsys, requests_file):
    status, out, _ = _opt(capsys, requests_file, "-p", "enzyme-differentiate")
    assert status == 0 and "@fwddiffef_0" not in out and "@fwddiffef_d_c__dn" in out


# -- xdsl-opt sees isozyme's dialects and passes ----------------------------------------


def test_universe_contents():
    from xdsl.universe import Universe

    from isozyme.universe import ISOZYME_UNIVERSE

    assert {"enzyme", "isz", "isz_gpu", "memref_ext"} <= set(ISOZYME_UNIVERSE.all_dialects)
    assert ISOZYME_UNIVERSE.all_dialects["enzyme"]().name == "enzyme"
    passes = ISOZYME_UNIVERSE.all_passes
    assert {"enzyme", "enzyme-differentiate", "simplify-ad", "inline"} <= set(passes)
    assert "canonicalize" not in passes and "convert-scf-to-cf" not in passes  # xDSL's
    renamed = passes["isozyme-convert-scf-to-cf"]()
    assert renamed.name == "isozyme-convert-scf-to-cf"
    assert renamed.__module__ == "isozyme.compiler.lowering.convert_scf_to_cf"
    assert passes["enzyme"]().name == "enzyme"
    # the installed entry point, merged with xDSL's own universe without a clash
    assert any(ep.value == "isozyme.universe:ISOZYME_UNIVERSE"
               for ep in entry_points(group="xdsl.universe"))
    multi = Universe.get_multiverse()
    assert "enzyme" in multi.all_dialects and "enzyme-differentiate" in multi.all_passes


def test_plain_xdsl_opt_runs_isozyme_passes():
    proc = subprocess.run(
        [sys.executable, "-c", "from xdsl.tools.xdsl_opt import main; main()",
         str(SQUARE), "-p", "enzyme,isozyme-convert-scf-to-cf"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "func.func private @fwddiffesquare(" in proc.stdout
    assert "func.call @fwddiffesquare(" in proc.stdout and "enzyme.fwddiff" not in proc.stdout
