"""The command lines: isozyme diff / demo and isozyme-opt."""

import io
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from isozyme.cli import main, opt_main, stage_header

DATA = Path(__file__).parent / "data"
EXAMPLE = DATA / "cli_example.py"


def run_main(args) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(args) == 0
    return buf.getvalue()


def test_diff_reverse_prints_result():
    out = run_main(["diff", f"{EXAMPLE}:rosenbrock", "--mode", "reverse", "--args", "1.0", "2.0",
                    "--activity", "active", "active"])
    assert out.strip().endswith("((-400.0, 200.0),)")


def test_diff_forward_with_primal_const_dup():
    out = run_main(["diff", f"{EXAMPLE}:rosenbrock", "--mode", "forward-with-primal",
                    "--args", "1.0", "3.0", "--activity", "const", "dup"])
    assert out.strip().endswith("(400.0, 400.0)")


def test_diff_print_ir_all_stages_in_order():
    out = run_main(["diff", f"{EXAMPLE}:looped", "--mode", "reverse-with-primal",
                    "--args", "0.5", "4", "--print-ir", "all"])
    stages = ["traced", "optimized", "differentiated", "simplified", "llvm", "llvm-ir",
              "llvm-ir-optimized"]
    positions = [out.index(stage_header(s)) for s in stages]
    assert positions == sorted(positions)
    assert "scf.for" in out and "enzyme.autodiff" in out and "define" in out
    assert "// ===== result" in out


def test_diff_selected_stages_only():
    out = run_main(["diff", f"{EXAMPLE}:rosenbrock", "--args", "1.0", "2.0",
                    "--print-ir", "traced,llvm"])
    assert stage_header("traced") in out and stage_header("llvm") in out
    assert stage_header("optimized") not in out


def test_diff_unknown_stage_exits():
    with pytest.raises(SystemExit, match="unknown stage"):
        main(["diff", f"{EXAMPLE}:rosenbrock", "--args", "1.0", "2.0", "--print-ir", "bogus"])


def test_diff_reports_isozyme_errors(capsys):
    assert main(["diff", f"{EXAMPLE}:rosenbrock", "--mode", "forward", "--args", "1.0", "2.0",
                 "--activity", "active", "const"]) == 1
    assert "Active is for reverse mode" in capsys.readouterr().err


def test_demo_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "isozyme.cli", "demo"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "((-400.0, 200.0),)" in proc.stdout
    assert stage_header("traced") in proc.stdout


def test_isozyme_opt_runs_enzyme_mlir(capsys):
    assert opt_main([str(DATA / "square.mlir"), "--passes",
                     "enzyme-differentiate,simplify-ad,inline,canonicalize"]) == 0
    out = capsys.readouterr().out
    assert "enzyme.fwddiff" not in out
    assert "arith.mulf" in out
