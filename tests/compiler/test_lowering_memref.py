"""Structural tests of ``convert-memref-to-llvm`` and memref arguments at C entry points.

Numerical behaviour is checked end to end in ``tests/runtime/test_memref.py``.
"""

from __future__ import annotations

import llvmlite.binding as llb
import pytest
from xdsl.context import Context
from xdsl.dialects import arith, builtin, cf, func, llvm, memref, scf
from xdsl.dialects.builtin import ModuleOp, i64
from xdsl.parser import Parser

from isozyme.compiler.lowering import (
    LOWERING_PASSES,
    ConvertMemrefToLLVMPass,
    ConvertScfToCfPass,
    LoweringError,
    lower_to_llvm,
    translate_to_llvm_ir,
)
from isozyme.compiler.lowering._common import descriptor_rank, memref_descriptor_type

V = "memref<?xf64, strided<[?], offset: ?>>"
M = "memref<?x?xf64, strided<[?, ?], offset: ?>>"


def parse(src: str) -> ModuleOp:
    ctx = Context()
    for d in (builtin.Builtin, func.Func, arith.Arith, scf.Scf, cf.Cf, memref.MemRef, llvm.LLVM):
        ctx.load_dialect(d)
    return Parser(ctx, src).parse_module()


def funcs(module: ModuleOp) -> dict[str, llvm.FuncOp]:
    return {op.sym_name.data: op for op in module.ops if isinstance(op, llvm.FuncOp)}


SRC = f"""
func.func @f(%A: {M}, %x: memref<?xf64>, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %t = memref.alloc(%n) : memref<?xf64>
  %z = arith.constant 0.0 : f64
  %m = memref.dim %A, %c0 : {M}
  %r = scf.for %i = %c0 to %m step %c1 iter_args(%acc = %z) -> (f64) {{
    %a = memref.load %A[%i, %c1] : {M}
    %v = memref.load %x[%i] : memref<?xf64>
    memref.store %a, %t[%i] : memref<?xf64>
    %s = arith.addf %acc, %v : f64
    scf.yield %s : f64
  }}
  memref.dealloc %t : memref<?xf64>
  func.return %r : f64
}}
"""


def test_pass_position() -> None:
    names = [p.name for p in LOWERING_PASSES]
    assert names.index("convert-memref-to-llvm") == names.index("convert-scf-to-cf") + 1
    assert names.index("convert-memref-to-llvm") < names.index("convert-func-to-llvm")


def test_descriptor_type() -> None:
    t = memref_descriptor_type(2)
    assert str(t) == (
        "!llvm.struct<(!llvm.ptr, !llvm.ptr, i64, !llvm.array<2 x i64>, "
        "!llvm.array<2 x i64>)>"
    )
    assert descriptor_rank(t) == 2
    assert descriptor_rank(memref_descriptor_type(0)) == 0
    assert descriptor_rank(llvm.LLVMStructType.from_type_list([i64, i64])) is None


def test_signature_ops_and_entry() -> None:
    module = parse(SRC)
    lower_to_llvm(module)
    fs = funcs(module)
    f = fs["f"]
    assert list(f.function_type.inputs.data) == [
        memref_descriptor_type(2),
        memref_descriptor_type(1),
        i64,
    ]
    names = [o.name for o in module.walk()]
    assert not [n for n in names if n.startswith("memref.")]
    callees = {o.callee.root_reference.data for o in module.walk() if isinstance(o, llvm.CallOp)}
    assert {"malloc", "free"} <= callees
    # The entry loads the descriptor pointer from the slot, then the descriptor.
    entry = fs["_iz_entry_f"]
    loads = [o for o in entry.walk() if isinstance(o, llvm.LoadOp)]
    assert [str(o.dereferenced_value.type) for o in loads[:2]] == [
        "!llvm.ptr",
        str(memref_descriptor_type(2)),
    ]
    llb.parse_assembly(translate_to_llvm_ir(module)).verify()


def test_identity_layout_uses_static_unit_stride() -> None:
    # The load of memref<?xf64> reads no stride or offset from the descriptor.
    src = """
func.func @g(%x: memref<?xf64>, %i: index) -> f64 {
  %v = memref.load %x[%i] : memref<?xf64>
  func.return %v : f64
}
"""
    module = parse(src)
    lower_to_llvm(module)
    g = funcs(module)["g"]
    positions = [
        list(o.position.iter_values())
        for o in g.walk()
        if isinstance(o, llvm.ExtractValueOp)
    ]
    assert positions == [[1]]  # the aligned pointer only


def test_block_arguments_retyped_after_scf_to_cf() -> None:
    src = f"""
func.func @h(%a: {V}, %b: {V}, %c: i1) -> f64 {{
  %r = scf.if %c -> ({V}) {{
    scf.yield %a : {V}
  }} else {{
    scf.yield %b : {V}
  }}
  %c0 = arith.constant 0 : index
  %v = memref.load %r[%c0] : {V}
  func.return %v : f64
}}
"""
    module = parse(src)
    ctx = Context(allow_unregistered=True)
    ConvertScfToCfPass().apply(ctx, module)
    ConvertMemrefToLLVMPass().apply(ctx, module)
    for op in module.walk():
        for region in op.regions:
            for block in region.blocks:
                for arg in block.args:
                    assert not isinstance(arg.type, builtin.MemRefType)
    module2 = parse(src)
    lower_to_llvm(module2)


def test_unsupported_memref_op_and_private_memref_result() -> None:
    src = """
func.func @k(%a: memref<4xf64>) -> index {
  %r = "memref.rank"(%a) : (memref<4xf64>) -> index
  func.return %r : index
}
"""
    with pytest.raises(LoweringError, match="memref.rank"):
        lower_to_llvm(parse(src))
    # memref.alloca is lowered (to llvm.alloca: Enzyme-MLIR's tests use it).
    module = parse("""
func.func @k() {
  %a = memref.alloca() : memref<4xf64>
  func.return
}
""")
    lower_to_llvm(module)
    assert "llvm.alloca" in [o.name for o in module.walk()]
    # A private function may return a memref.
    src = f"""
func.func private @id(%a: {V}) -> {V} {{
  func.return %a : {V}
}}
func.func @k(%a: {V}) -> f64 {{
  %b = func.call @id(%a) : ({V}) -> {V}
  %c0 = arith.constant 0 : index
  %v = memref.load %b[%c0] : {V}
  func.return %v : f64
}}
"""
    module = parse(src)
    lower_to_llvm(module)
    assert funcs(module)["id"].function_type.output == memref_descriptor_type(1)


# ------------------------------------------------------------------ memref results

def test_memref_results_fill_3_plus_2r_slots() -> None:
    src = f"""
func.func @k(%n: index) -> (f64, memref<?x?xf64>, memref<f32>, i1) {{
  %t = memref.alloc(%n, %n) : memref<?x?xf64>
  %u = memref.alloc() : memref<f32>
  %z = arith.constant 0.0 : f64
  %b = arith.constant true
  func.return %z, %t, %u, %b : f64, memref<?x?xf64>, memref<f32>, i1
}}
func.func @one(%a: {V}) -> {V} {{
  func.return %a : {V}
}}
"""
    module = parse(src)
    lower_to_llvm(module)
    fs = funcs(module)

    def slots(entry: llvm.FuncOp) -> list[int]:
        """The out-slot index of each store (GEP constant index; 0 for the base)."""
        out_ptr = entry.body.block.args[1]
        found = []
        for o in entry.walk():
            if isinstance(o, llvm.StoreOp):
                ptr = o.ptr
                if ptr is out_ptr:
                    found.append(0)
                else:
                    gep = ptr.owner
                    assert isinstance(gep, llvm.GEPOp) and gep.ptr is out_ptr
                    found.append(gep.rawConstantIndices.get_values()[0])
        return found

    # f64, then 3 + 2*2 descriptor fields, then 3 (rank 0), then i1.
    assert slots(fs["_iz_entry_k"]) == list(range(1 + 7 + 3 + 1))
    assert slots(fs["_iz_entry_one"]) == list(range(5))
    llb.parse_assembly(translate_to_llvm_ir(module)).verify()


# ------------------------------------------------------------------ subview, copy

def _extract_positions(f: llvm.FuncOp) -> list[list[int]]:
    return [
        list(o.position.iter_values()) for o in f.walk() if isinstance(o, llvm.ExtractValueOp)
    ]


def test_subview_static_source_reads_only_pointers() -> None:
    src = """
func.func @s(%A: memref<4x6xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %B = memref.subview %A[1, 2] [2, 3] [1, 2] : memref<4x6xf64> to memref<2x3xf64, strided<[6, 2], offset: 8>>
  %v = memref.load %B[%c0, %c0] : memref<2x3xf64, strided<[6, 2], offset: 8>>
  func.return %v : f64
}
"""
    module = parse(src)
    lower_to_llvm(module)
    s = funcs(module)["s"]
    # allocated, aligned copied; nothing else read from the source descriptor.
    assert sorted(_extract_positions(s)) == [[0], [1], [1]]
    consts = {
        o.value.value.data for o in s.walk()
        if isinstance(o, llvm.ConstantOp) and o.value.type == i64
    }
    assert {8, 2, 3, 6} <= consts  # offset, sizes, strides folded


def test_subview_dynamic_source_and_rank_reduction() -> None:
    src = f"""
func.func @s(%A: {M}, %i: index, %n: index) -> f64 {{
  %c0 = arith.constant 0 : index
  %r = memref.subview %A[%i, 1] [1, %n] [1, 3] : {M} to {V}
  %v = memref.load %r[%c0] : {V}
  func.return %v : f64
}}
"""
    module = parse(src)
    ctx = Context(allow_unregistered=True)
    ConvertScfToCfPass().apply(ctx, module)
    ConvertMemrefToLLVMPass().apply(ctx, module)
    undefs = [o for o in module.walk() if isinstance(o, llvm.UndefOp)]
    assert [u.res.type for u in undefs] == [memref_descriptor_type(1)]
    positions = [
        p for p in (list(o.position.iter_values()) for o in module.walk()
                    if isinstance(o, llvm.ExtractValueOp))
    ]
    # Offset and both strides of the source are read.
    assert [2] in positions and [4, 0] in positions and [4, 1] in positions
    module = parse(src)
    lower_to_llvm(module)
    llb.parse_assembly(translate_to_llvm_ir(module)).verify()


def test_memref_copy_expands_to_loops() -> None:
    from isozyme.compiler.lowering import ExpandMemrefCopyPass

    src = f"""
func.func @c(%A: {M}, %B: memref<?x?xf64>) {{
  "memref.copy"(%A, %B) : ({M}, memref<?x?xf64>) -> ()
  func.return
}}
"""
    module = parse(src)
    ExpandMemrefCopyPass().apply(Context(allow_unregistered=True), module)
    names = [o.name for o in module.walk()]
    assert "memref.copy" not in names
    assert names.count("scf.for") == 2 and names.count("memref.dim") == 2
    assert names.count("memref.load") == 1 and names.count("memref.store") == 1
    module.verify()
    lower_to_llvm(module)
