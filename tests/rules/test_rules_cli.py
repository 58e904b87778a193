"""``isozyme diff --print-ir`` shows a ruled call kept until AD, and the rule's numbers."""

import io
import math
from contextlib import redirect_stdout
from pathlib import Path

from isozyme.cli import main, stage_header

EXAMPLE = Path(__file__).parent.parent / "data" / "rules_cli_example.py"


def _run(args: list[str]) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(args) == 0
    return buf.getvalue()


def test_print_ir_shows_the_ruled_call_until_ad():
    out = _run(["diff", f"{EXAMPLE}:mysquare", "--mode", "reverse", "--args", "2.0",
                "--activity", "active", "--print-ir", "traced,optimized,differentiated"])
    traced = out[out.index(stage_header("traced")):out.index(stage_header("optimized"))]
    optimized = out[out.index(stage_header("optimized")):
                    out.index(stage_header("differentiated"))]
    differentiated = out[out.index(stage_header("differentiated")):]
    for text in (traced, optimized):  # the call, marked with its rule, is not inlined
        assert "func.call @mysin" in text and "isozyme.rule" in text
    assert "augrule_mysin" in differentiated and "revrule_mysin" in differentiated
    # d/dx sin(x)^2 through the rule: 2 sin(x) * 3 cos(x)
    want = 6 * math.sin(2.0) * math.cos(2.0)
    got = float(out.strip().splitlines()[-1].strip("(),"))
    assert abs(got - want) < 1e-12 * abs(want)
