"""The command lines: isozyme diff / demo and isozyme-opt."""

import io
import os
import shlex
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
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


def test_diff_print_op_generic():
    # MLIR stages in MLIR's generic form, LLVM IR as it is; without the flag, custom
    args = ["diff", f"{EXAMPLE}:rosenbrock", "--args", "1.0", "2.0", "--activity",
            "active", "active", "--print-ir", "traced,simplified,llvm-ir"]
    out = run_main(args + ["--print-op-generic"])
    traced = out.split(stage_header("traced"))[1].split(stage_header("simplified"))[0]
    assert traced.strip().startswith('"builtin.module"() ({')
    assert '"func.func"() <{' in traced and '"enzyme.autodiff"(' in traced
    simplified = out.split(stage_header("simplified"))[1].split(stage_header("llvm-ir"))[0]
    assert simplified.strip().startswith('"builtin.module"() ({')
    assert "func.func @" not in simplified and "define " in out
    assert out.strip().endswith("((-400.0, 200.0),)")
    custom = run_main(args)
    assert '"builtin.module"' not in custom and "func.func @" in custom


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
    # the kernel example: its CUDA C printed on any machine, its gradient computed
    assert 'extern "C" __global__ void' in proc.stdout
    grad = proc.stdout.split("d/dx =", 1)[1].replace("[", " ").replace("]", " ").split()
    np.testing.assert_allclose([float(v) for v in grad],
                               [1 / 14, 2 / 7, 4 / 7, 6 / 7, 8 / 7, 10 / 7, 17 / 14, 3 / 7])


def test_isozyme_opt_runs_enzyme_mlir(capsys):
    assert opt_main([str(DATA / "square.mlir"), "--passes",
                     "enzyme-differentiate,simplify-ad,inline,canonicalize"]) == 0
    out = capsys.readouterr().out
    assert "enzyme.fwddiff" not in out
    assert "arith.mulf" in out


# -- misuse: a non-zero status, one line on stderr, never a traceback ----------------

_OPT = "import sys; from isozyme.cli import opt_main; sys.exit(opt_main())"


def _run_cli(args, opt=False, stdout=subprocess.PIPE):
    cmd = [sys.executable, "-c", _OPT, *args] if opt else [sys.executable, "-m", "isozyme.cli",
                                                          *args]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)


def _assert_one_line_error(proc, *fragments, status=None):
    assert proc.returncode != 0
    if status is not None:
        assert proc.returncode == status
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "raises.py").write_text("import math\n\nVALUE = 1 / 0\n\ndef f(x):\n    return x\n")
    (d / "syntax.py").write_text("def f(x):\n    return x +\n")
    (d / "bad.mlir").write_text("func.func @f(%x: f64) -> f64 {\n  %y = arith.bogus %x\n}\n")
    return d


@pytest.mark.parametrize(
    "args, fragments, status",
    [
        (["--args", "1.0"], ["rosenbrock(x, y)", "1 value"], 1),
        (["--args", "1.0", "2.0", "3.0"], ["rosenbrock(x, y)", "3 value"], 1),
        (["--args", "1.0", "(2"], ["--args word 2", "not a Python literal"], 1),
        (["--args", "1.0", "two"], ["'two'", "not a Python literal"], 1),
        (["--args", "1.0", "2.0", "--activity", "active"], ["2 --args but 1 --activity"], 1),
        (["--args", "1.0", "2.0", "--activity", "active", "bogus"], ["unknown activity"], 1),
        (["--args", "1.0", "2.0", "--print-ir", "bogus"], ["unknown stage 'bogus'"], 1),
        (["--mode", "bogus"], ["invalid choice: 'bogus'"], 2),
        (["--args", "1.0", "'text'"], ["TypeError"], 1),  # the traced function fails
    ],
)
def test_diff_misuse_is_one_line(args, fragments, status):
    proc = _run_cli(["diff", f"{EXAMPLE}:rosenbrock", *args])
    _assert_one_line_error(proc, *fragments, status=status)


def test_diff_missing_file_and_function(tmp_path):
    _assert_one_line_error(_run_cli(["diff", f"{tmp_path / 'nope.py'}:f", "--args", "1.0"]),
                           "isozyme: error: no such file")
    _assert_one_line_error(_run_cli(["diff", f"{EXAMPLE}:nope", "--args", "1.0"]),
                           "isozyme: error: ", "has no function 'nope'")
    _assert_one_line_error(_run_cli(["diff", str(EXAMPLE)]),
                           "isozyme: error: expected FILE.py:FUNC")


def test_load_function_imports_a_sibling_module(tmp_path):
    """The file's directory is first on sys.path while it is imported (as with
    ``python FILE.py``), and sys.path is restored after."""
    from isozyme.cli import load_function

    (tmp_path / "iz_sibling_helper.py").write_text("def twice(x):\n    return 2 * x\n")
    (tmp_path / "uses_sibling.py").write_text(
        "from iz_sibling_helper import twice\n\ndef f(x):\n    return twice(x)\n")
    before = list(sys.path)
    fn = load_function(f"{tmp_path / 'uses_sibling.py'}:f")
    assert fn(3.0) == 6.0 and sys.path == before
    sys.modules.pop("iz_sibling_helper", None)
    sys.modules.pop("uses_sibling", None)


def test_diff_error_messages_have_the_error_prefix():
    """load_function/annotate/parse_stages/parse_args_values say ``isozyme: error:``
    as the other errors do (in-process: the SystemExit's message)."""
    from isozyme.cli import annotate, load_function, parse_args_values, parse_stages
    import isozyme as iz

    calls = [lambda: load_function("nope.py"), lambda: parse_stages("bogus"),
             lambda: annotate(iz.Reverse, [1.0], ["bogus"]),
             lambda: annotate(iz.Reverse, [1.0], []),
             lambda: parse_args_values(["(2"])]
    for call in calls:
        with pytest.raises(SystemExit) as e:
            call()
        assert str(e.value.code).startswith("isozyme: error: "), e.value.code


def test_diff_file_that_raises_on_import(bad_files):
    proc = _run_cli(["diff", f"{bad_files / 'raises.py'}:f", "--args", "1.0"])
    _assert_one_line_error(proc, "importing", "ZeroDivisionError", "(line 3)", status=1)
    proc = _run_cli(["diff", f"{bad_files / 'syntax.py'}:f", "--args", "1.0"])
    _assert_one_line_error(proc, "importing", "SyntaxError", status=1)


def test_diff_trace_error_is_one_line():
    # A TraceError's message has the source line on a second line: joined into one.
    proc = _run_cli(["diff", str(DATA / "cli_misuse.py") + ":hashes", "--args", "1.0"])
    _assert_one_line_error(proc, "cli_misuse.py:", "cannot trace `hash`", "| return", status=1)


def test_unknown_subcommand_is_one_line():
    _assert_one_line_error(_run_cli(["bogus"]), "invalid choice", status=2)


def test_closed_pipe_is_one_line():
    # The read end is closed before isozyme writes anything: every write fails (EPIPE).
    r, w = os.pipe()
    os.close(r)
    try:
        proc = _run_cli(["diff", f"{EXAMPLE}:looped", "--args", "0.5", "4", "--print-ir", "all"],
                        stdout=w)
    finally:
        os.close(w)
    _assert_one_line_error(proc, "broken pipe", status=1)


def test_closed_pipe_in_a_shell_pipeline():
    proc = subprocess.run(
        f"{shlex.quote(sys.executable)} -m isozyme.cli diff {shlex.quote(str(EXAMPLE))}:looped "
        "--args 0.5 4 --print-ir all | head -1",
        shell=True, capture_output=True, text=True, timeout=300,
    )
    assert proc.stdout == stage_header("traced") + "\n"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert len(proc.stderr.splitlines()) <= 1  # the pipe may close before or after the end


@pytest.mark.parametrize(
    "args, fragments, status",
    [
        (["missing.mlir"], ["no such file: missing.mlir"], 1),
        ([str(DATA / "square.mlir"), "--passes", "inline,bogus"], ["unknown pass 'bogus'"], 2),
        ([str(DATA / "square.mlir"), "--bogus"], ["unrecognized arguments"], 2),
    ],
)
def test_opt_misuse_is_one_line(args, fragments, status):
    _assert_one_line_error(_run_cli(args, opt=True), *fragments, status=status)


def test_opt_parse_error_is_one_line(bad_files):
    proc = _run_cli([str(bad_files / "bad.mlir")], opt=True)
    _assert_one_line_error(proc, "bad.mlir", "does not parse", status=1)


_PRANGE_EXAMPLE = '''
import isozyme as iz


def weighted(a):
    s = 0.0
    for i in iz.prange(40):
        s += a * i
    return s
'''


@pytest.mark.parametrize("target", ["cuda", "cuda-emu"])
def test_diff_target_prints_its_stages(tmp_path, target):
    src = tmp_path / "prange_example.py"
    src.write_text(_PRANGE_EXAMPLE)
    out = run_main(["diff", f"{src}:weighted", "--mode", "forward-with-primal",
                    "--args", "2.0", "--activity", "const", "--target", target,
                    "--print-ir", "all"])
    stages = ["traced", "optimized", "differentiated", "simplified", "gpu", "cuda", "host",
              "llvm", "llvm-ir", "llvm-ir-optimized"]
    positions = [out.index(stage_header(s)) for s in stages]
    assert positions == sorted(positions)
    assert "gpu.module" in out and 'extern "C" __global__' in out
    launch = "cuLaunchKernel" if target == "cuda" else "iz_emu_launch"
    assert f"@{launch}" in out
    if target == "cuda-emu":  # runs here: 2 * (0 + 1 + ... + 39)
        assert out.strip().endswith(", 1560.0)")
    else:  # runs where CuPy and a GPU are, else says why not
        assert "// ===== result" in out


def test_diff_unknown_target_exits():
    with pytest.raises(SystemExit):
        main(["diff", f"{EXAMPLE}:rosenbrock", "--args", "1.0", "2.0", "--target", "tpu"])


def test_diff_gpu_stage_needs_a_gpu_target():
    with pytest.raises(SystemExit, match="unknown stage 'cuda'"):
        main(["diff", f"{EXAMPLE}:rosenbrock", "--args", "1.0", "2.0", "--print-ir", "cuda"])
