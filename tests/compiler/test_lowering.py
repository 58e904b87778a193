"""Structural tests of the lowering passes (``simplified`` stage -> ``llvm`` dialect).

Numerical behaviour is checked end to end in ``tests/runtime/test_jit.py``.
"""

from __future__ import annotations

import llvmlite.binding as llb
import pytest
from xdsl.dialects import builtin, func, llvm
from xdsl.dialects.builtin import ModuleOp, f64, i1, i64
from xdsl.parser import Parser

from isozyme.compiler.lowering import (
    LOWERING_PASSES,
    ConvertScfToCfPass,
    LoweringError,
    lower_to_llvm,
    translate_to_llvm_ir,
)
from isozyme.compiler.context import make_context as _context




def parse(src: str) -> ModuleOp:
    return Parser(_context(), src).parse_module()


def lowered(src: str) -> ModuleOp:
    module = parse(src)
    lower_to_llvm(module)
    return module


def funcs(module: ModuleOp) -> dict[str, llvm.FuncOp]:
    return {op.sym_name.data: op for op in module.ops if isinstance(op, llvm.FuncOp)}


def op_names(op: llvm.FuncOp) -> list[str]:
    return [o.name for o in op.walk() if o is not op]


PROGRAM = """
func.func private @helper(%x: f64, %n: index) -> (f64, index) {
  %c1 = arith.constant 1 : index
  %m = arith.addi %n, %c1 : index
  %y = arith.mulf %x, %x fastmath<fast> : f64
  func.return %y, %m : f64, index
}
func.func @main(%x: f64, %n: index, %flag: i1, %s: f32) -> (f64, index, i1, f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %x) -> (f64) {
    %t = math.tan %acc : f64
    scf.yield %t : f64
  }
  %y, %m = func.call @helper(%r, %n) : (f64, index) -> (f64, index)
  %not = arith.xori %flag, %flag : i1
  %t32 = math.tanh %s : f32
  func.return %y, %m, %not, %t32 : f64, index, i1, f32
}
"""


def test_pass_names_follow_mlir() -> None:
    assert [p.name for p in LOWERING_PASSES] == [
        "expand-memref-copy",
        "convert-scf-to-cf",
        "convert-memref-to-llvm",
        "convert-arith-to-llvm",
        "convert-math-to-llvm",
        "convert-enzyme-cache-to-llvm",
        "convert-func-to-llvm",
        "convert-cf-to-llvm",
        "convert-isz-check-to-llvm",
        "add-c-entry-points",
    ]


def test_only_llvm_ops_remain_and_module_verifies() -> None:
    module = lowered(PROGRAM)
    names = {op.name for op in module.walk() if op is not module}
    assert names and all(n.startswith("llvm.") for n in names), names
    module.verify()


def test_signatures_linkage_and_entry_points() -> None:
    fs = funcs(lowered(PROGRAM))
    main, helper = fs["main"], fs["helper"]
    assert main.linkage.linkage.data == "external"
    assert helper.linkage.linkage.data == "internal"
    # index -> i64, several results -> a literal struct.
    assert list(helper.function_type.inputs) == [f64, i64]
    assert helper.function_type.output == llvm.LLVMStructType.from_type_list([f64, i64])
    assert list(main.function_type.inputs)[:3] == [f64, i64, i1]
    # Only public functions get a C entry point, taking (ptr in, ptr out).
    assert "_iz_entry_main" in fs and "_iz_entry_helper" not in fs
    entry = fs["_iz_entry_main"]
    assert list(entry.function_type.inputs) == [llvm.LLVMPointerType()] * 2
    assert isinstance(entry.function_type.output, llvm.LLVMVoidType)
    entry_ops = op_names(entry)
    # i1 crosses as i64: trunc after the load, zext before the store.
    assert "llvm.trunc" in entry_ops and "llvm.zext" in entry_ops
    assert entry_ops.count("llvm.extractvalue") == 4


def test_block_arguments_use_i64() -> None:
    main = funcs(lowered(PROGRAM))["main"]
    for block in main.body.blocks:
        for arg in block.args:
            assert not isinstance(arg.type, builtin.IndexType)


def test_multiple_results_use_insertvalue_and_extractvalue() -> None:
    fs = funcs(lowered(PROGRAM))
    assert op_names(fs["helper"]).count("llvm.insertvalue") == 2
    assert op_names(fs["main"]).count("llvm.extractvalue") == 2


def test_fastmath_flags_are_carried() -> None:
    helper = funcs(lowered(PROGRAM))["helper"]
    (fmul,) = [o for o in helper.walk() if isinstance(o, llvm.FMulOp)]
    assert fmul.fastmathFlags == llvm.FastMathAttr("fast")


def test_math_uses_intrinsics_and_libm() -> None:
    src = """
    func.func @f(%x: f64, %y: f32) -> (f64, f64, f32, f32) {
      %0 = math.sin %x : f64
      %1 = math.atan2 %x, %x : f64
      %2 = math.sqrt %y : f32
      %3 = math.expm1 %y : f32
      func.return %0, %1, %2, %3 : f64, f64, f32, f32
    }"""
    fs = funcs(lowered(src))
    declared = {name for name, f in fs.items() if not f.body.blocks}
    # libm functions are declared under a reserved prefix (a user function may be
    # called atan2); the runtime links them to libm.
    assert {"llvm.sin.f64", "__iz_libm_atan2", "llvm.sqrt.f32", "__iz_libm_expm1f"} <= declared


def test_unsupported_op_is_reported() -> None:
    src = """
    func.func @f(%a: i64) -> i64 {
      %r = arith.ceildivui %a, %a : i64
      func.return %r : i64
    }"""
    with pytest.raises(LoweringError, match="arith.ceildivui"):
        lowered(src)


def test_user_function_named_like_libm_calls_libm() -> None:
    """A user @sinh (as Enzyme-MLIR's tests name them) and the libm sinh that its
    math.sinh lowers to are different functions; @tan, called from @f, is the user's."""
    import math

    from isozyme.runtime.jit import compile_llvm_module

    src = """
    func.func private @tan(%a: f64) -> f64 {
      %two = arith.constant 2.0 : f64
      %r = arith.mulf %a, %two : f64
      func.return %r : f64
    }
    func.func @sinh(%a: f64) -> f64 {
      %r = math.sinh %a : f64
      func.return %r : f64
    }
    func.func @f(%a: f64) -> (f64, f64) {
      %t = math.tan %a : f64
      %u = func.call @tan(%a) : (f64) -> f64
      func.return %t, %u : f64, f64
    }"""
    module = lowered(src)
    fs = funcs(module)
    assert "tan" in fs and fs["tan"].body.blocks  # the user's, kept under its name
    assert "__iz_libm_tan" in fs and not fs["__iz_libm_tan"].body.blocks
    compiled = compile_llvm_module(module)
    (s,) = compiled.entry("sinh", ["f64"], ["f64"])(0.7)
    assert s == pytest.approx(math.sinh(0.7), rel=1e-15)
    t, u = compiled.entry("f", ["f64"], ["f64", "f64"])(0.7)
    assert t == pytest.approx(math.tan(0.7), rel=1e-15)
    assert u == 1.4
    # the optimised code calls libm's tan and sinh by their names (LLVM knows them)
    for name in ("tan", "sinh"):
        assert f"declare double @{name}(double)" in compiled.llvm_ir_optimized
    assert "__iz_libm_" not in compiled.llvm_ir_optimized


def test_libc_name_clash_is_reported() -> None:
    """The C library functions the lowering calls (malloc, free) keep their names (LLVM
    optimises them): a user function of that name is refused, naming it."""
    src = """
    func.func private @malloc(%n: i64) -> i64 {
      func.return %n : i64
    }
    func.func @f(%n: index) {
      %a = memref.alloc(%n) : memref<?xf64>
      memref.dealloc %a : memref<?xf64>
      func.return
    }"""
    with pytest.raises(LoweringError, match="defines @malloc, which clashes"):
        lowered(src)


def test_scf_while_to_cf() -> None:
    src = """
    func.func @f(%n: i64) -> i64 {
      %c0 = arith.constant 0 : i64
      %c1 = arith.constant 1 : i64
      %r = scf.while (%k = %c0) : (i64) -> i64 {
        %go = arith.cmpi slt, %k, %n : i64
        scf.condition(%go) %k : i64
      } do {
      ^bb0(%k1: i64):
        %k2 = arith.addi %k1, %c1 : i64
        scf.yield %k2 : i64
      }
      func.return %r : i64
    }"""
    module = parse(src)
    ConvertScfToCfPass().apply(_context(), module)
    module.verify()
    names = [op.name for op in module.walk()]
    assert not any(n.startswith("scf.") for n in names)
    assert names.count("cf.cond_br") == 1 and names.count("cf.br") == 3
    (f,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    # entry, before, after, continuation (+ the split-off rest).
    assert len(f.body.blocks) >= 4


CACHE = """
func.func @f(%n: index, %x: f64) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %cache = enzyme.init : !enzyme.Cache<f64>
  scf.for %i = %c0 to %n step %c1 {
    enzyme.push %cache, %x : !enzyme.Cache<f64>, f64
  }
  %v = enzyme.pop %cache : (!enzyme.Cache<f64>) -> f64
  enzyme.cache_free %cache : !enzyme.Cache<f64>
  func.return %v : f64
}
"""


def test_enzyme_cache_lowering() -> None:
    fs = funcs(lowered(CACHE))
    for helper in ("__iz_cache_push_f64", "__iz_cache_pop_f64", "__iz_cache_free"):
        assert fs[helper].body.blocks and fs[helper].linkage.linkage.data == "internal"
    assert not fs["realloc"].body.blocks and not fs["free"].body.blocks
    # The cache struct is allocated in the entry block, not inside the loop.
    entry_block = fs["f"].body.blocks.first
    assert entry_block is not None
    assert any(isinstance(o, llvm.AllocaOp) for o in entry_block.ops)
    allocas = [o for o in fs["f"].walk() if isinstance(o, llvm.AllocaOp)]
    assert len(allocas) == 1


def test_llvm_ir_text_is_valid() -> None:
    text = translate_to_llvm_ir(lowered(PROGRAM + CACHE.replace("@f(", "@g(")))
    mod = llb.parse_assembly(text)
    mod.verify()
    assert "define internal" in text and "_iz_entry_main" in text
