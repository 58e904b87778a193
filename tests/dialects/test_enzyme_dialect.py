"""The enzyme dialect's textual form: Enzyme-MLIR's spellings, printed and parsed by xDSL."""

import pytest
from xdsl.parser import Parser
from xdsl.utils.exceptions import ParseError, VerifyException

from isozyme.compiler.context import make_context
from isozyme.dialects.enzyme import Activity, AutoDiffOp, ForwardDiffOp

SQUARE = """
func.func @square(%x: f64) -> f64 {
  %y = arith.mulf %x, %x : f64
  func.return %y : f64
}
"""


def parse(text: str):
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


@pytest.mark.parametrize(
    "spelling",
    [
        "<activity=[#enzyme.activity<enzyme_dup>], ret_activity=[#enzyme.activity<enzyme_dupnoneed>]>",
        "<{activity = [#enzyme.activity<enzyme_dup>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>]}>",
        "{activity=[#enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_dupnoneed>]}",
    ],
)
def test_fwddiff_spellings_parse_and_round_trip(spelling):
    text = SQUARE + f"""
func.func @dsquare(%x: f64, %dx: f64) -> f64 {{
  %r = enzyme.fwddiff @square(%x, %dx) {spelling} : (f64, f64) -> f64
  func.return %r : f64
}}
"""
    module = parse(text)
    ops = [o for o in module.walk() if isinstance(o, ForwardDiffOp)]
    assert len(ops) == 1
    assert ops[0].activities == [Activity.DUP]
    assert ops[0].ret_activities == [Activity.DUPNONEED]
    printed = str(module)
    assert "#enzyme.activity<enzyme_dup>" in printed
    assert str(parse(printed)) == printed


@pytest.mark.parametrize("act", [a.value for a in Activity])
def test_all_six_activities(act):
    # the operands follow the activity: a shadowed argument passes its shadow too
    shadowed = act in ("enzyme_dup", "enzyme_dupnoneed")
    args, types = ("%x, %x, %s", "f64, f64, f64") if shadowed else ("%x, %s", "f64, f64")
    text = SQUARE + f"""
func.func @g(%x: f64, %s: f64) -> f64 {{
  %r = enzyme.autodiff @square({args}) <{{activity = [#enzyme.activity<{act}>], ret_activity = [#enzyme<activity enzyme_activenoneed>]}}> : ({types}) -> f64
  func.return %r : f64
}}
"""
    module = parse(text)
    op = next(o for o in module.walk() if isinstance(o, AutoDiffOp))
    assert op.activities == [Activity(act)]
    assert f"#enzyme.activity<{act}>" in str(module)


def test_width_is_kept():
    text = SQUARE + """
func.func @g(%x: f64, %d: f64, %e: f64) -> f64 {
  %r, %s = enzyme.fwddiff @square(%x, %d, %e) <{activity = [#enzyme.activity<enzyme_dup>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>], width = 2 : i64}> : (f64, f64, f64) -> (f64, f64)
  func.return %r : f64
}
"""
    op = next(o for o in parse(text).walk() if isinstance(o, ForwardDiffOp))
    assert op.batch_width == 2
    assert op.signature.width == 2 and op.signature.mode == "forward"


def test_operand_count_follows_the_signature():
    # width 2: two shadows per enzyme_dup argument; one is a verifier error
    text = SQUARE + """
func.func @g(%x: f64, %d: f64) -> f64 {
  %r = enzyme.fwddiff @square(%x, %d) <{activity = [#enzyme.activity<enzyme_dup>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>], width = 2 : i64}> : (f64, f64) -> f64
  func.return %r : f64
}
"""
    with pytest.raises(Exception, match="width 2 takes 3 operands, got 2"):
        parse(text).verify()


def test_unknown_activity_is_a_parse_error():
    text = SQUARE + """
func.func @g(%x: f64, %d: f64) -> f64 {
  %r = enzyme.fwddiff @square(%x, %d) <{activity = [#enzyme.activity<enzyme_bogus>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>]}> : (f64, f64) -> f64
  func.return %r : f64
}
"""
    with pytest.raises(ParseError, match="unknown activity 'enzyme_bogus'"):
        parse(text)


def test_fwddiff_rejects_active_arguments():
    text = SQUARE + """
func.func @g(%x: f64) -> f64 {
  %r = enzyme.fwddiff @square(%x) <{activity = [#enzyme.activity<enzyme_active>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>]}> : (f64) -> f64
  func.return %r : f64
}
"""
    with pytest.raises(VerifyException, match="enzyme_active"):
        parse(text)


def test_cache_ops_round_trip():
    text = """
func.func @c(%x: f64) -> f64 {
  %c = enzyme.init : !enzyme.Cache<f64>
  enzyme.push %c, %x : !enzyme.Cache<f64>, f64
  %p = enzyme.pop %c : (!enzyme.Cache<f64>) -> f64
  enzyme.cache_free %c : !enzyme.Cache<f64>
  func.return %p : f64
}
"""
    module = parse(text)
    assert str(parse(str(module))) == str(module)
