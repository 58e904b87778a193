"""User derivative rules on hand-written IR: the compiler half of ``isozyme.rules``.

A ``func.call`` marked ``isozyme.rule`` is differentiated by the functions its
:class:`UserRule` builds (here from MLIR text), not through the callee's body: each rule
below multiplies the true derivative by 3, so the numbers prove which one ran.
"""

import math

import pytest
from xdsl.dialects import func
from xdsl.parser import Parser

from isozyme.compiler.ad_rules.user_rules import RuleRequest, UserRule, register_user_rule
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.passes.differentiate import DifferentiatePass
from isozyme.compiler.passes.inline import InlinePass
from isozyme.compiler.passes.simplify_ad import SimplifyADPass
from isozyme.dialects.enzyme import Activity
from isozyme.runtime.jit import compile_llvm_module


class TripleSin(UserRule):
    """d sin(x) = 3 cos(x) dx (deliberately wrong); records the requests it got."""

    name = "the test rule of sin"

    def __init__(self, inactive: bool = False):
        self.inactive = inactive
        self.requests: list[RuleRequest] = []

    def build(self, request: RuleRequest, name: str, module) -> func.FuncOp:
        self.requests.append(request)
        np_ = request.needs_primal
        if request.mode == "forward":
            assert request.activities == (Activity.DUP,) and request.width == 1
            outs = ("%s, " if np_ else "") + "%t"
            types = ("f64, " if np_ else "") + "f64"
            body = f"""
func.func private @{name}(%x: f64, %dx: f64) -> ({types}) {{
  %s = math.sin %x : f64
  %c = math.cos %x : f64
  %three = arith.constant 3.0 : f64
  %c3 = arith.mulf %c, %three : f64
  %t = arith.mulf %c3, %dx : f64
  func.return {outs} : {types}
}}"""
        elif request.mode == "augmented":
            outs = ("%s, " if np_ else "") + "%c"
            types = ("f64, " if np_ else "") + "f64"
            body = f"""
func.func private @{name}(%x: f64) -> ({types}) {{
  %s = math.sin %x : f64
  %c = math.cos %x : f64
  func.return {outs} : {types}
}}"""
        else:
            assert request.tape_types and request.activities == (Activity.ACTIVE,)
            body = f"""
func.func private @{name}(%x: f64, %seed: f64, %c: f64) -> f64 {{
  %three = arith.constant 3.0 : f64
  %c3 = arith.mulf %c, %three : f64
  %g = arith.mulf %c3, %seed : f64
  func.return %g : f64
}}"""
        parsed = Parser(make_context(), body).parse_module()
        fn = next(iter(parsed.ops))
        fn.detach()
        return fn


def _module(rule: UserRule, body: str, requests: str, callee_op: str = "math.sin"):
    rid = register_user_rule(rule, "sin")
    src = f"""
func.func private @mysin(%x: f64) -> f64 {{
  %s = {callee_op} %x : f64
  func.return %s : f64
}}
{body.replace("RULE", rid)}
{requests}
"""
    ctx = make_context()
    module = Parser(ctx, src).parse_module()
    return ctx, module


def _run(ctx, module, entries):
    InlinePass(keep_ruled=True).apply(ctx, module)
    assert 'isozyme.rule' in str(module)  # the ruled call reaches AD as a call
    DifferentiatePass().apply(ctx, module)
    SimplifyADPass().apply(ctx, module)
    InlinePass().apply(ctx, module)
    module.verify()
    text = str(module)
    lower_to_llvm(module, ctx)
    cm = compile_llvm_module(module)
    return text, [cm.entry(*e) for e in entries]


SQUARE_IN_LOOP = """
func.func private @f(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %zero) -> (f64) {
    %y = func.call @mysin(%x) {isozyme.rule = "RULE"} : (f64) -> f64
    %yy = arith.mulf %y, %y : f64
    %a = arith.addf %acc, %yy : f64
    scf.yield %a : f64
  }
  func.return %r : f64
}
"""

REQS = """
func.func @grad(%x: f64, %n: index, %seed: f64) -> (f64, f64) {
  %g:2 = enzyme.autodiff @f(%x, %n, %seed) {activity=[#enzyme<activity enzyme_active>, #enzyme<activity enzyme_const>], ret_activity=[#enzyme<activity enzyme_active>]} : (f64, index, f64) -> (f64, f64)
  func.return %g#0, %g#1 : f64, f64
}
func.func @tangent(%x: f64, %dx: f64, %n: index) -> f64 {
  %t = enzyme.fwddiff @f(%x, %dx, %n) {activity=[#enzyme<activity enzyme_dup>, #enzyme<activity enzyme_const>], ret_activity=[#enzyme<activity enzyme_dupnoneed>]} : (f64, f64, index) -> f64
  func.return %t : f64
}
"""

ENTRIES = [("grad", ["f64", "index", "f64"], ["f64", "f64"]),
           ("tangent", ["f64", "f64", "index"], ["f64"])]


@pytest.mark.parametrize("n", [0, 1, 4])
def test_rule_in_a_loop_is_used_in_both_modes(n):
    rule = TripleSin()
    ctx, module = _module(rule, SQUARE_IN_LOOP, REQS)
    text, (grad, tangent) = _run(ctx, module, ENTRIES)
    x = 0.7
    want = n * 2 * math.sin(x) * 3 * math.cos(x)  # the rule's (wrong) derivative
    primal, g = grad(x, n, 1.0)
    assert primal == pytest.approx(n * math.sin(x) ** 2, rel=1e-14)
    assert g == pytest.approx(want, rel=1e-13)
    assert tangent(x, 1.0, n)[0] == pytest.approx(want, rel=1e-13)
    modes = {r.mode for r in rule.requests}
    assert modes == {"forward", "augmented", "reverse"}
    # y * y needs the primal: every request asked for it
    assert all(r.needs_primal for r in rule.requests)
    # the tape (cos x) of each iteration is cached for the reverse loop
    assert "isozyme.cache" in text or "enzyme.push" in text


def test_needs_primal_is_false_when_only_the_derivative_is_used():
    body = """
func.func private @f(%x: f64) -> f64 {
  %y = func.call @mysin(%x) {isozyme.rule = "RULE"} : (f64) -> f64
  func.return %y : f64
}
"""
    reqs = """
func.func @tangent(%x: f64, %dx: f64) -> f64 {
  %t = enzyme.fwddiff @f(%x, %dx) {activity=[#enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_dupnoneed>]} : (f64, f64) -> f64
  func.return %t : f64
}
func.func @grad(%x: f64, %seed: f64) -> f64 {
  %g = enzyme.autodiff @f(%x, %seed) {activity=[#enzyme<activity enzyme_active>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (f64, f64) -> f64
  func.return %g : f64
}
"""
    rule = TripleSin()
    ctx, module = _module(rule, body, reqs)
    _, (tangent, grad) = _run(ctx, module, [("tangent", ["f64", "f64"], ["f64"]),
                                           ("grad", ["f64", "f64"], ["f64"])])
    assert tangent(0.3, 2.0)[0] == pytest.approx(6 * math.cos(0.3), rel=1e-14)
    assert grad(0.3, 1.0)[0] == pytest.approx(3 * math.cos(0.3), rel=1e-14)
    lean = [r for r in rule.requests if not r.needs_primal]
    assert {r.mode for r in lean} == {"forward", "augmented", "reverse"}


def test_inactive_rule_gives_no_derivative_and_no_activity():
    body = """
func.func private @f(%x: f64) -> f64 {
  %y = func.call @mysin(%x) {isozyme.rule = "RULE"} : (f64) -> f64
  %z = arith.mulf %y, %x : f64
  func.return %z : f64
}
"""
    reqs = """
func.func @grad(%x: f64, %seed: f64) -> f64 {
  %g = enzyme.autodiff @f(%x, %seed) {activity=[#enzyme<activity enzyme_active>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (f64, f64) -> f64
  func.return %g : f64
}
func.func @tangent(%x: f64, %dx: f64) -> f64 {
  %t = enzyme.fwddiff @f(%x, %dx) {activity=[#enzyme<activity enzyme_dup>], ret_activity=[#enzyme<activity enzyme_dupnoneed>]} : (f64, f64) -> f64
  func.return %t : f64
}
"""
    rule = TripleSin(inactive=True)
    ctx, module = _module(rule, body, reqs)
    _, (grad, tangent) = _run(ctx, module, [("grad", ["f64", "f64"], ["f64"]),
                                           ("tangent", ["f64", "f64"], ["f64"])])
    x = 0.4
    assert grad(x, 1.0)[0] == pytest.approx(math.sin(x), rel=1e-14)  # d(y x) with y constant
    assert tangent(x, 1.0)[0] == pytest.approx(math.sin(x), rel=1e-14)
    assert rule.requests == []


def test_rule_applies_where_the_body_has_no_derivative():
    # the callee's body is floor (zero derivative, no activity edge): the rule, not the
    # body, decides what flows (a straight-through estimator is such a rule)
    body = """
func.func private @f(%x: f64) -> f64 {
  %y = func.call @mysin(%x) {isozyme.rule = "RULE"} : (f64) -> f64
  func.return %y : f64
}
"""
    reqs = """
func.func @grad(%x: f64, %seed: f64) -> f64 {
  %g = enzyme.autodiff @f(%x, %seed) {activity=[#enzyme<activity enzyme_active>], ret_activity=[#enzyme<activity enzyme_activenoneed>]} : (f64, f64) -> f64
  func.return %g : f64
}
"""
    rule = TripleSin()
    ctx, module = _module(rule, body, reqs, callee_op="math.floor")
    _, (grad,) = _run(ctx, module, [("grad", ["f64", "f64"], ["f64"])])
    assert grad(0.3, 1.0)[0] == pytest.approx(3 * math.cos(0.3), rel=1e-14)
