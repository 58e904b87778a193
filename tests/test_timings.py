"""The compile-time report (:mod:`isozyme.timings`): ``collect``, ``ISOZYME_TIMINGS=1``
and ``isozyme diff --timings``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import isozyme as iz
from isozyme import timings
from isozyme.cli import main as cli_main
from isozyme.compiler.pipeline import STAGE_PIPELINES
from isozyme.compiler.passes.registry import parse_pass_pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_disk_cache():
    """Compilations here must compile: a disk cache hit (an identical function traced
    by another test) skips the pipeline and LLVM, whose steps these tests look for."""
    old = iz.config(disk_cache=False)
    yield
    iz.config(**old)


def _fresh_square_sum():
    """A new function object each call, so that the compile cache misses."""
    def square_sum(x):
        s = 0.0
        for i in range(x.shape[0]):
            s += x[i] * x[i]
        return s
    return square_sum


def _pass_name(spec: str) -> str:
    return parse_pass_pipeline(spec)[0].name


def test_collect_reports_every_step_of_a_compilation():
    x = np.arange(4.0)
    dx = np.zeros(4)
    with timings.collect() as reports:
        iz.autodiff(iz.Reverse, _fresh_square_sum(), iz.Active, iz.Duplicated(x, dx))
    assert len(reports) == 1
    report = reports[0]
    assert "Reverse of" in report.label and "square_sum" in report.label
    names = [p.name for p in report.phases]
    assert "trace" in names
    # every pass of every target-independent stage, by stage, in pipeline order
    for stage, specs in STAGE_PIPELINES.items():
        got = [n.split("/", 1)[1] for n in names if n.startswith(stage + "/")]
        assert got == [_pass_name(s) for s in specs], stage
    assert any(n.startswith("lowering/convert-arith-to-llvm") for n in names)
    for n in ("llvm/translate", "llvm/parse", "llvm/optimize", "llvm/codegen"):
        assert n in names
    for category in ("trace", "pass", "lowering", "llvm-translate", "llvm-optimize",
                     "codegen"):
        assert report.seconds(category) > 0.0, category
    covered = sum(p.seconds for p in report.phases if p.depth == 0)
    assert 0.0 < covered <= report.total
    np.testing.assert_allclose(dx, 2 * x)  # and the code it timed is right


def test_a_cache_hit_is_not_a_compilation():
    f = _fresh_square_sum()
    x = np.arange(3.0)
    iz.autodiff(iz.Reverse, f, iz.Active, iz.Duplicated(x, np.zeros(3)))
    with timings.collect() as reports:
        iz.autodiff(iz.Reverse, f, iz.Active, iz.Duplicated(x, np.zeros(3)))
    assert reports == []


def test_nothing_is_recorded_without_a_report():
    assert timings._CURRENT.get() is None
    with timings.phase("orphan"):
        pass
    with timings.compilation("nobody asked") as report:
        assert report is None
        with timings.phase("inner"):
            pass


def test_nested_phases_are_counted_once_and_printed_in_start_order():
    with timings.collect() as reports:
        with timings.compilation("synthetic"):
            with timings.phase("outer", "pass"):
                with timings.phase("inner", "pass"):
                    pass
                with timings.phase("llvm", "codegen"):
                    pass
    (report,) = reports
    outer = next(p for p in report.phases if p.name == "outer")
    inner = next(p for p in report.phases if p.name == "inner")
    assert (outer.depth, inner.depth) == (0, 1)
    assert inner.nested_in_same and not outer.nested_in_same
    assert report.seconds("pass") == outer.seconds
    assert report.seconds("codegen") > 0.0
    text = report.format()
    assert text.index("outer") < text.index("inner") < text.index("llvm")
    assert text.splitlines()[0].startswith("isozyme timings: synthetic:")
    assert "by kind: pass" in text


def test_environment_variable_prints_each_compilation_to_stderr(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import isozyme as iz

        def f(x, y):
            return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2

        print(iz.autodiff(iz.Reverse, f, iz.Active, iz.Active(1.0), iz.Active(2.0)))
        print(iz.autodiff(iz.Reverse, f, iz.Active, iz.Active(1.0), iz.Active(2.0)))
    """))
    env = dict(os.environ, ISOZYME_TIMINGS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    assert out.stdout.count("((-400.0, 200.0),)") == 2
    assert out.stderr.count("isozyme timings: Reverse of f (cpu):") == 1  # 2nd: cached
    for line in ("trace", "optimized/canonicalize", "differentiated/enzyme-differentiate",
                 "lowering/convert-func-to-llvm", "llvm/optimize", "llvm/codegen"):
        assert f"  {line} " in out.stderr, line
    assert "isozyme timings" not in out.stdout


@pytest.mark.parametrize("value", ["0", ""])
def test_environment_variable_off(monkeypatch, value):
    monkeypatch.setenv("ISOZYME_TIMINGS", value)
    assert not timings.enabled_by_env()
    with timings.compilation("off") as report:
        assert report is None


def test_cli_diff_timings(capsys):
    iz.clear_cache()  # another test may have compiled the example already
    rc = cli_main(["diff", str(ROOT / "isozyme/examples/rosenbrock.py") + ":rosenbrock",
                   "--args", "1.0", "2.0", "--timings"])
    assert rc == 0
    out, err = capsys.readouterr()
    assert "(-400.0, 200.0)" in out and "isozyme timings" not in out
    assert "isozyme timings: Reverse of rosenbrock (cpu):" in err
    assert "llvm/optimize" in err and "by kind:" in err
