"""The pipeline API (isozyme.pipeline): build and run pipelines from Python, and plug a
custom xDSL pass into autodiff's pipeline at a named point; isozyme.ir, ir_stages,
``isozyme diff --print-ir`` and autodiff see it, and the compile cache does not reuse
code compiled without it."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from xdsl.context import Context
from xdsl.dialects import arith, builtin
from xdsl.parser import Parser
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

import isozyme as iz
from isozyme import pipeline
from isozyme.calls import stats
from isozyme.compiler.context import make_context
from isozyme.compiler.targets import LLVMArtefact
from isozyme.errors import IsozymeError


@dataclass(frozen=True)
class MulfToAddf(ModulePass):
    """Test pass: every ``arith.mulf`` becomes an ``arith.addf`` (changes the numbers)."""

    name = "test-mulf-to-addf"

    def apply(self, ctx: Context, op: builtin.ModuleOp) -> None:
        del ctx
        for o in [o for o in op.walk() if isinstance(o, arith.MulfOp)]:
            Rewriter.replace_op(o, arith.AddfOp(o.lhs, o.rhs, o.fastmath))


STAGE = "after:test-mulf-to-addf"


def f(x, y):
    return x * y


ARGS = (iz.Active, iz.Active(2.0), iz.Active(3.0))


@pytest.fixture(autouse=True)
def _no_leftover_insertions():
    yield
    if pipeline.active_insertions():
        pipeline.remove()


def test_with_block_changes_ir_numbers_and_is_not_cached() -> None:
    assert iz.autodiff(iz.Reverse, f, *ARGS) == ((3.0, 2.0),)
    before = stats["compiles"]
    with pipeline.extra_passes([MulfToAddf()], after="optimized"):
        # AD now differentiates x + y
        assert iz.autodiff(iz.Reverse, f, *ARGS) == ((1.0, 1.0),)
        assert stats["compiles"] == before + 1  # the cached x * y code was not reused
        texts = iz.ir_stages(iz.Reverse, f, *ARGS, stages=["optimized", STAGE])
        assert "arith.mulf" in texts["optimized"]
        assert "arith.addf" in texts[STAGE] and "arith.mulf" not in texts[STAGE]
        assert STAGE in iz.ir_stages(iz.Reverse, f, *ARGS)  # in the default stages too
    n = stats["compiles"]
    assert iz.autodiff(iz.Reverse, f, *ARGS) == ((3.0, 2.0),)  # the old code, cached
    assert stats["compiles"] == n
    with pipeline.extra_passes(MulfToAddf(), after="optimized"):
        assert iz.autodiff(iz.Reverse, f, *ARGS) == ((1.0, 1.0),)
    assert stats["compiles"] == n  # an equal pass at the same point: same code


def test_process_wide_insert_after_differentiated_and_remove() -> None:
    handle = pipeline.insert(MulfToAddf(), after="differentiated")
    # the derivative code's products dret*y and dret*x became sums: 1 + y, 1 + x
    assert iz.autodiff(iz.Reverse, f, *ARGS) == ((4.0, 3.0),)
    stages = iz.ir_stages(iz.Reverse, f, *ARGS, stages=["differentiated", STAGE])
    assert "arith.mulf" in stages["differentiated"] and "arith.mulf" not in stages[STAGE]
    assert pipeline.stages_of("cpu").index(STAGE) == 3  # right after differentiated
    pipeline.remove(handle)
    assert iz.autodiff(iz.Reverse, f, *ARGS) == ((3.0, 2.0),)
    with pytest.raises(IsozymeError, match="no custom pass inserted"):
        pipeline.remove(handle)


def test_insert_around_a_named_target_pass_and_print_ir() -> None:
    from isozyme.cli import run_diff  # noqa: PLC0415

    pipeline.insert([MulfToAddf()], before="convert-arith-to-llvm")
    assert pipeline.stages_of("cpu") == (
        "traced", "optimized", "differentiated", "simplified", STAGE, "llvm")
    # (y is Const: the tangent dx*y becomes dx + y = 1 + 3 instead of 3)
    out = io.StringIO()
    result = run_diff(f, iz.Forward, [iz.Duplicated(2.0, 1.0), 3.0], [STAGE], out=out)
    assert result == (4.0,)
    text = out.getvalue()
    assert STAGE in text and "llvm.fadd" not in text.split("result")[0]
    assert "arith.addf" in text and "arith.mulf" not in text.split("result")[0]
    pipeline.remove("test-mulf-to-addf")
    assert iz.autodiff(iz.Forward, f, iz.Duplicated(2.0, 1.0), 3.0) == (3.0,)


def test_after_a_gpu_target_stage() -> None:
    with iz.target("cuda-emu"), pipeline.extra_passes(MulfToAddf(), after="gpu"):
        stages = pipeline.stages_of("cuda-emu")
        assert stages[stages.index("gpu") + 1] == STAGE
        text = iz.ir(iz.Reverse, f, *ARGS, stage=STAGE)
        assert "arith.addf" in text and "arith.mulf" not in text


def test_pipeline_objects_build_and_run() -> None:
    default = pipeline.Pipeline.default("cpu")
    assert default.stage_names == ("traced", "optimized", "differentiated", "simplified",
                                   "llvm")
    assert str(default).startswith(
        "lift-cf-to-scf{strict=false},inline{keep-ruled=true},"
        "resolve-shaped-type-result-dims,linalg-fuse-elementwise,")
    assert [p.name for p in default.passes("differentiated")] == ["enzyme-differentiate"]
    traced = iz.ir(iz.Reverse, f, *ARGS, stage="traced")
    module = Parser(make_context(), traced).parse_module()
    seen: list[str] = []
    custom = default.insert(MulfToAddf(), after="simplified")
    artefact = custom.run(module, on_stage=lambda s, _: seen.append(s))
    assert seen == ["traced", "optimized", "differentiated", "simplified", STAGE, "llvm"]
    assert isinstance(artefact, LLVMArtefact)
    assert "llvm.fmul" not in str(artefact.module) and "llvm.fadd" in str(artefact.module)
    assert not pipeline.active_insertions()  # a pipeline value changes nothing global
    # a flat pipeline in xdsl-opt's spelling
    text = ("func.func @g(%a: f64) -> f64 {\n  %p = arith.mulf %a, %a : f64\n"
            "  %q = arith.mulf %a, %a : f64\n  %s = arith.addf %p, %q : f64\n"
            "  func.return %s : f64\n}")
    flat = pipeline.Pipeline.parse("cse")
    flat = flat.insert(MulfToAddf(), after="cse")
    m = Parser(make_context(), text).parse_module()
    assert flat.run(m, upto=STAGE) is None
    assert [o.name for o in m.walk()].count("arith.addf") == 2  # one product, now a sum
    assert str(pipeline.Pipeline.parse("canonicalize,cse")) == "canonicalize,cse"
    # after a pipeline's own stage: the stage's IR, then the custom pass's
    own = pipeline.Pipeline.parse("cse", stage="cleanup").insert(MulfToAddf(),
                                                               after="cleanup")
    assert own.stage_names == ("cleanup", STAGE)
    m, seen = Parser(make_context(), text).parse_module(), []
    own.run(m, on_stage=lambda s, ir: seen.append((s, str(ir).count("arith.mulf"))))
    assert seen == [("cleanup", 1), (STAGE, 0)]


def test_bad_insertions_are_refused() -> None:
    cases = [
        (dict(after="differentiated", before="simplified"), "give exactly one of"),
        (dict(after="nowhere"), "no stage or pass named 'nowhere'"),
        (dict(after="cuda"), "the cuda stage is text"),
        (dict(before="traced"), "nothing runs before 'traced'"),
    ]
    for kw, message in cases:
        with pytest.raises(IsozymeError, match=message):
            pipeline.insert(MulfToAddf(), **kw)
    with pytest.raises(IsozymeError, match="pass an instance of MulfToAddf"):
        pipeline.insert(MulfToAddf, after="optimized")
    with pytest.raises(IsozymeError, match="unknown pass 'no-such'"):
        pipeline.insert("no-such", after="optimized")
    with pytest.raises(IsozymeError, match="no IR stage 'after:x'"):
        pipeline.Pipeline.default().run(builtin.ModuleOp([]), upto="after:x")
    assert not pipeline.active_insertions()


def test_vjp_and_cli_stages_see_custom_passes() -> None:
    # vjp keys its own compile cache: code compiled without the pass is not reused
    args = (1.0, iz.Active(2.0), iz.Active(3.0))
    assert iz.vjp(iz.Reverse, f, *args) == ((3.0, 2.0),)
    with pipeline.extra_passes([MulfToAddf()], after="optimized"):
        assert iz.vjp(iz.Reverse, f, *args) == ((1.0, 1.0),)
        from isozyme.cli import parse_stages  # noqa: PLC0415

        assert STAGE in parse_stages("all") and parse_stages(STAGE) == [STAGE]
    assert iz.vjp(iz.Reverse, f, *args) == ((3.0, 2.0),)
