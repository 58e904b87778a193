"""The pass registry (isozyme/compiler/passes/registry.py): every pass the pipeline and
the targets run is registered once, with a docstring and its options, and runs by name
from Python; pipelines in xdsl-opt's spelling parse; errors are one-line IsozymeErrors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from xdsl.context import Context
from xdsl.dialects import arith, builtin
from xdsl.parser import Parser
from xdsl.passes import ModulePass

from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import LOWERING_PASSES
from isozyme.compiler.passes import (
    available_passes,
    make_pass,
    parse_pass_pipeline,
    pass_info,
    pass_names,
    pipeline_spelling,
    register_pass,
    registered_passes,
    run_pass,
    unregister_pass,
)
from isozyme.compiler.passes.inline import InlinePass
from isozyme.compiler.pipeline import STAGE_PASSES
from isozyme.compiler.targets.cpu import CpuTarget
from isozyme.compiler.targets.cuda import CudaTarget
from isozyme.compiler.targets.cuda_emu import CudaEmuTarget
from isozyme.errors import IsozymeError

#: Two functions: a duplicated multiplication (CSE), a call to inline, a dead value.
SMALL = """
builtin.module {
  func.func private @sq(%x: f64) -> f64 {
    %y = arith.mulf %x, %x : f64
    func.return %y : f64
  }
  func.func @f(%a: f64) -> f64 {
    %p = arith.mulf %a, %a : f64
    %q = arith.mulf %a, %a : f64
    %dead = arith.addf %p, %q : f64
    %r = func.call @sq(%p) : (f64) -> f64
    %s = arith.addf %r, %q : f64
    func.return %s : f64
  }
}
"""


def small_module() -> builtin.ModuleOp:
    return Parser(make_context(), SMALL).parse_module()


def count(module: builtin.ModuleOp, name: str) -> int:
    return sum(op.name == name for op in module.walk())


def pipeline_and_target_passes() -> list[ModulePass]:
    """Every pass instance the pipeline's stages and the three targets build."""
    passes = [p for build in STAGE_PASSES.values() for p in build()]
    passes += list(CpuTarget().lowering_passes())
    for t in (CudaTarget(), CudaEmuTarget()):
        passes += [*t.kernel_passes(), *t.lowering_passes(("k0",))]
    return passes


def test_every_pipeline_and_target_pass_is_registered_once_with_a_docstring() -> None:
    names = pass_names()
    assert len(names) == len(set(names))
    classes = [info.cls for info in registered_passes()]
    assert len(classes) == len(set(classes)), "a class registered under two names"
    used = pipeline_and_target_passes()
    assert {"convert-linalg-to-parallel-loops", "lower-affine", "split-accumulations",
            "gpu-outline-parallel-loops", "convert-gpu-launch-to-llvm"} <= {p.name for p in used}
    for p in used:
        info = pass_info(p.name)
        assert info.cls is type(p), p.name
        assert info.doc.strip() and info.summary, f"{p.name} has no docstring"
    # every isozyme pass class documents itself (not only through the registry)
    for info in registered_passes():
        if info.origin == "isozyme":
            assert (info.cls.__doc__ or "").strip(), info.name
    # the lowering's list and isozyme-opt's table are views of the registry
    assert all(pass_info(c.name).cls is c for c in LOWERING_PASSES)
    assert available_passes() == {i.name: i.cls for i in registered_passes()}


def test_every_registered_pass_runs_by_name_on_a_small_module() -> None:
    for name in pass_names():
        module = small_module()
        assert run_pass(module, name) is module
        module.verify()
    m = run_pass(small_module(), "inline,cse,canonicalize,dce")
    assert count(m, "func.call") == 0 and count(m, "arith.mulf") == 2  # p, then sq(p)
    assert count(m, "arith.addf") == 1


def test_options_are_described_and_parsed() -> None:
    inline = pass_info("inline")
    (keep,) = inline.options
    assert (keep.name, keep.field, keep.type, keep.default) == ("keep-ruled", "keep_ruled",
                                                                "bool", False)
    assert "rule" in keep.help
    launch = {o.name: o for o in pass_info("convert-gpu-launch-to-llvm").options}
    assert launch["kernels"].type == "tuple[str, ...]" and launch["kernels"].default == ()
    assert launch["launch-symbol"].default == "cuLaunchKernel" and launch["kernels"].help
    assert pass_info("expand-memref-copy").options[0].help
    passes = parse_pass_pipeline(
        'inline{keep-ruled=true},cse,expand-memref-copy{parallel=true},'
        'convert-gpu-launch-to-llvm{kernels="a","b" launch-symbol="go"}'
    )
    assert passes[0] == InlinePass(keep_ruled=True)
    assert passes[2].parallel is True  # type: ignore[attr-defined]
    assert passes[3].kernels == ("a", "b") and passes[3].launch_symbol == "go"  # type: ignore[attr-defined]
    spelled = pipeline_spelling(passes)
    assert spelled.startswith("inline{keep-ruled=true},cse,expand-memref-copy{parallel=true}")
    assert parse_pass_pipeline(spelled) == passes  # the spelling reads back
    assert make_pass("inline", keep_ruled=True) == make_pass("inline", **{"keep-ruled": True})
    # run_pass with keyword options (no call here has a rule: it is inlined)
    assert count(run_pass(small_module(), "inline", keep_ruled=True), "func.call") == 0


@pytest.mark.parametrize(("call", "message"), [
    (lambda: pass_info("no-such-pass"), "unknown pass 'no-such-pass'; passes: "),
    (lambda: parse_pass_pipeline("cse,nope"), "unknown pass 'nope'"),
    (lambda: parse_pass_pipeline("inline{keep-it=true}"),
     "pass 'inline' has no option 'keep-it'; its options: keep-ruled"),
    (lambda: parse_pass_pipeline("inline{keep-ruled=3}"), "pass 'inline': bad options"),
    (lambda: parse_pass_pipeline("cse{"), "bad pass pipeline 'cse{'"),
    (lambda: make_pass("cse", aggressive=True), "pass 'cse' has no option 'aggressive'"),
    (lambda: make_pass("inline", keep_ruled="yes"),
     "pass 'inline': option 'keep-ruled' takes bool, not 'yes'"),
    (lambda: run_pass(small_module(), "canonicalise"), "unknown pass 'canonicalise'"),
])
def test_errors_are_one_line_isozyme_errors(call, message: str) -> None:
    with pytest.raises(IsozymeError) as e:
        call()
    text = str(e.value)
    assert text.startswith(message) and "\n" not in text, text


@dataclass(frozen=True)
class NegateMulfPass(ModulePass):
    """Test pass: put an ``arith.negf`` after every ``arith.mulf``."""

    name = "test-negate-mulf"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        del ctx
        for mul in [o for o in op.walk() if isinstance(o, arith.MulfOp)]:
            neg = arith.NegfOp(mul.result)
            mul.result.replace_all_uses_with(neg.result)
            neg.operands = (mul.result,)
            assert mul.parent is not None
            mul.parent.insert_op_after(neg, mul)


def test_a_users_pass_registers_once_and_runs_by_name() -> None:
    assert register_pass(NegateMulfPass) is NegateMulfPass
    try:
        assert "test-negate-mulf" in pass_names()
        info = pass_info("test-negate-mulf")
        assert info.origin == "user" and info.summary.startswith("Test pass")
        m = run_pass(small_module(), "cse,test-negate-mulf")
        assert count(m, "arith.negf") == 2
        with pytest.raises(IsozymeError, match="already registered"):
            register_pass(dataclasses.make_dataclass(
                "Other", [], bases=(NegateMulfPass,), frozen=True))
        with pytest.raises(IsozymeError, match="already registered"):
            register_pass(type("Cse", (NegateMulfPass,), {"name": "cse"}))
    finally:
        unregister_pass("test-negate-mulf")
    assert "test-negate-mulf" not in pass_names()
