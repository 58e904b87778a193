"""Targets as modules: the registry, the stages per target, choosing a target (forced or
from the arguments), the compile cache per target, printing the GPU stages on any
machine, and the host program's lowering (``convert-gpu-launch-to-llvm``, device
memory for ``cuda``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from xdsl.dialects import builtin, func, gpu, llvm
from xdsl.parser import Parser

import isozyme as iz
from isozyme.abi import CUDA_LAUNCH_SYMBOL, KERNEL_TABLE
from isozyme.calls import choose_target, stats
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import LoweringError, apply_lowering
from isozyme.compiler.lowering.convert_gpu_launch_to_llvm import (
    ConvertGpuLaunchToLLVMPass,
)
from isozyme.compiler.pipeline import run_pipeline
from isozyme.compiler.targets import (
    TARGET_NAMES,
    GpuArtefact,
    LLVMArtefact,
    get_target,
    stages_of,
)
from isozyme.compiler.targets.cpu import CpuTarget
from isozyme.compiler.targets.cuda import CudaTarget
from isozyme.compiler.targets.cuda_emu import CudaEmuTarget


class FakeDeviceArray:
    """A device array as isozyme sees one: only ``__cuda_array_interface__``."""

    def __init__(self, shape: tuple[int, ...], typestr: str = "<f8") -> None:
        self.shape = shape
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": typestr, "data": (0x7F0000000000, False),
            "version": 3, "strides": None,
        }


# -- registry and stages ----------------------------------------------------------------
def test_registry_names_and_classes() -> None:
    assert TARGET_NAMES == ("cpu", "cuda", "cuda-emu")
    assert isinstance(get_target("cpu"), CpuTarget)
    assert type(get_target("cuda")) is CudaTarget
    assert isinstance(get_target("cuda-emu"), CudaEmuTarget)
    assert get_target("cuda") is get_target("cuda")
    t = get_target("cpu")
    assert get_target(t) is t
    with pytest.raises(iz.IsozymeError, match="unknown target 'tpu'.*cpu, cuda, cuda-emu"):
        get_target("tpu")


def test_stages_per_target() -> None:
    common = ("traced", "optimized", "differentiated", "simplified")
    assert stages_of("cpu") == common + ("llvm", "llvm-ir", "llvm-ir-optimized")
    gpu_stages = common + ("gpu", "cuda", "host", "llvm", "llvm-ir", "llvm-ir-optimized")
    assert stages_of("cuda") == gpu_stages
    assert stages_of("cuda-emu") == gpu_stages


def test_cpu_target_passes_start_with_parallel_to_for() -> None:
    names = [p.name for p in CpuTarget().lowering_passes()]
    # the worker pool's outlining first (it does nothing with threads=1), and its
    # dispatch lowered once the check status arguments exist
    assert names[:2] == ["outline-parallel-loops-cpu", "convert-parallel-to-for"]
    assert names[-1] == "add-c-entry-points"
    i = names.index
    assert i("convert-isz-check-to-llvm") < i("convert-parallel-dispatch-to-llvm") \
        < i("add-c-entry-points")
    assert "outline-parallel-loops-cpu" not in CpuTarget().lowering_specs()


def test_gpu_host_passes() -> None:
    names = [p.name for p in CudaTarget().lowering_passes(("k0",))]
    i = names.index
    assert i("convert-host-memory-access-to-copies") < i("convert-memref-to-llvm") \
        < i("use-device-allocator") < i("convert-func-to-llvm") \
        < i("convert-gpu-launch-to-llvm") < i("add-c-entry-points")
    emu = [p.name for p in CudaEmuTarget().lowering_passes(("k0",))]
    assert "use-device-allocator" not in emu  # host memory
    assert "convert-host-memory-access-to-copies" not in emu
    launch = [p for p in CudaEmuTarget().lowering_passes(("k0",))
              if isinstance(p, ConvertGpuLaunchToLLVMPass)]
    assert launch[0].launch_symbol == "iz_emu_launch" and launch[0].kernels == ("k0",)


def test_run_pipeline_takes_the_target() -> None:
    src = """
    func.func @f(%x: f64) -> f64 {
      %y = arith.mulf %x, %x : f64
      func.return %y : f64
    }
    """
    module = Parser(make_context(), src).parse_module()
    seen: list[str] = []
    artefact = run_pipeline(module, on_stage=lambda s, _: seen.append(s))
    assert isinstance(artefact, LLVMArtefact) and artefact.module is module
    assert seen == ["traced", "optimized", "differentiated", "simplified", "llvm"]
    module = Parser(make_context(), src).parse_module()
    assert run_pipeline(module, target="cuda", upto="host") is None
    with pytest.raises(iz.IsozymeError, match="cpu target has no IR stage 'host'"):
        run_pipeline(module, target="cpu", upto="host")


# -- choosing a target ------------------------------------------------------------------
def test_import_does_not_import_cupy() -> None:
    code = "import isozyme, sys; assert 'cupy' not in sys.modules, 'cupy imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_device_arrays_select_cuda() -> None:
    d = FakeDeviceArray((4,))
    assert choose_target([iz.Const(d), iz.Const(2.0)], None) == "cuda"
    assert choose_target([iz.Const(np.zeros(4)), iz.Const(2.0)], None) == "cpu"
    assert choose_target([iz.Const(np.zeros(4))], "cuda-emu") == "cuda-emu"


def test_mixing_host_and_device_arrays_names_them() -> None:
    anns = [iz.Const(np.zeros(4)), iz.Const(1.0), iz.Const(FakeDeviceArray((4,))),
            iz.Const({"a": np.ones(2), "b": FakeDeviceArray((2,))})]
    with pytest.raises(iz.AnnotationError) as e:
        choose_target(anns, None)
    msg = str(e.value)
    assert "host arrays (numpy: argument 0, leaf 0 of argument 3)" in msg
    assert "device arrays (__cuda_array_interface__: argument 2, leaf 1 of argument 3)" in msg


def test_mixing_through_autodiff() -> None:
    def f(x, y):
        return x[0] + y[0]

    with pytest.raises(iz.AnnotationError, match="mixes host arrays.*argument 0.*argument 1"):
        iz.autodiff(iz.Forward, f, iz.Const(np.zeros(3)), iz.Const(FakeDeviceArray((3,))))


def test_device_array_under_a_cpu_target() -> None:
    def f(x):
        return x[0]

    with iz.target("cpu"):
        with pytest.raises(iz.AnnotationError, match="cpu target runs on host memory.*argument 0"):
            iz.autodiff(iz.Forward, f, iz.Const(FakeDeviceArray((3,))))


def test_numpy_arrays_under_the_cuda_target() -> None:
    def f(x):
        return x[0]

    with iz.target("cuda"):
        with pytest.raises(iz.AnnotationError, match="cuda target runs on device arrays.*host .numpy. arrays: argument 0"):
            iz.autodiff(iz.Forward, f, iz.Const(np.zeros(3)))


def test_target_context_manager() -> None:
    from isozyme.api import _FORCED_TARGET

    assert _FORCED_TARGET.get() is None
    with iz.target("cuda-emu") as name:
        assert name == "cuda-emu" and _FORCED_TARGET.get() == "cuda-emu"
        with iz.target("cpu"):
            assert _FORCED_TARGET.get() == "cpu"
        assert _FORCED_TARGET.get() == "cuda-emu"
    assert _FORCED_TARGET.get() is None
    with pytest.raises(ZeroDivisionError):
        with iz.target("cuda"):
            1 / 0
    assert _FORCED_TARGET.get() is None
    with pytest.raises(iz.IsozymeError, match="unknown target 'gpu'"):
        with iz.target("gpu"):
            pass


def test_target_is_per_thread() -> None:
    import threading

    from isozyme.api import _FORCED_TARGET

    seen: list[object] = []
    with iz.target("cuda-emu"):
        t = threading.Thread(target=lambda: seen.append(_FORCED_TARGET.get()))
        t.start()
        t.join()
    assert seen == [None]


def test_cache_key_includes_the_target() -> None:
    def sq(x):
        return x * x + 1.0

    out_cpu = iz.autodiff(iz.ForwardWithPrimal, sq, iz.Duplicated(3.0, 1.0))
    before = stats["compiles"]
    assert iz.autodiff(iz.ForwardWithPrimal, sq, iz.Duplicated(3.0, 1.0)) == out_cpu
    assert stats["compiles"] == before
    with iz.target("cuda-emu"):
        out_emu = iz.autodiff(iz.ForwardWithPrimal, sq, iz.Duplicated(3.0, 1.0))
    assert stats["compiles"] == before + 1
    assert out_emu == out_cpu == (6.0, 10.0)


# -- printing the GPU stages on any machine ----------------------------------------------
def _saxpy(a, x, y):
    for i in iz.prange(x.shape[0]):
        y[i] = a * x[i] + y[i]


@pytest.fixture
def no_checks():
    old = iz.config(boundscheck=False)
    yield
    iz.config(**old)


def test_ir_of_the_cuda_target_without_a_gpu(no_checks) -> None:
    x, y = np.ones(8), np.zeros(8)
    args = (iz.Const(2.0), iz.Const(x), iz.Const(y))
    cuda = iz.ir(iz.Forward, _saxpy, *args, stage="cuda", target="cuda")
    assert 'extern "C" __global__ void' in cuda
    host = iz.ir(iz.Forward, _saxpy, *args, stage="host", target="cuda")
    assert "gpu.launch_func" in host and "gpu.module" not in host
    texts = iz.ir_stages(iz.Forward, _saxpy, *args, target="cuda")
    assert tuple(texts) == stages_of("cuda")
    assert "gpu.module" in texts["gpu"] and "scf.parallel" not in texts["gpu"]
    assert f"@{CUDA_LAUNCH_SYMBOL}" in texts["llvm"]
    assert "gpu." not in texts["llvm"]
    assert KERNEL_TABLE in texts["llvm-ir"]
    assert "iz_launch_stream" in texts["llvm-ir"]  # launches on the call's stream
    assert "call i32 @cuLaunchKernel" in texts["llvm-ir-optimized"]
    # the forced target applies to ir() too
    with iz.target("cuda-emu"):
        llvm_text = iz.ir(iz.Forward, _saxpy, *args, stage="llvm")
    assert "@iz_emu_launch" in llvm_text
    with pytest.raises(iz.IsozymeError, match="unknown IR stage 'cuda' for the cpu target"):
        iz.ir(iz.Forward, _saxpy, *args, stage="cuda")


def test_cuda_host_program_uses_device_memory(no_checks) -> None:
    def total(x):
        s = 0.0
        for i in iz.prange(x.shape[0]):
            s += x[i] * x[i]
        return s

    text = iz.ir(iz.ForwardWithPrimal, total, iz.Const(np.ones(8)), stage="llvm", target="cuda")
    # the reduction's buffer is device memory, initialised and read with cuMemcpy
    assert "llvm.call @iz_device_alloc" in text and "llvm.call @iz_device_free" in text
    assert "@malloc" not in text and "@free(" not in text
    assert text.count("llvm.call @cuMemcpy") == 2
    # each device allocation's pointer is tested (out of device memory stops the call),
    # each driver call's result too: checks of the per-call status record
    assert "isozyme cuda: a device allocation failed ({0} bytes)" in text
    assert text.count("llvm.ptrtoint") >= text.count("llvm.call @iz_device_alloc")
    assert "CUDA driver call failed: cuMemcpy returned {0}" in text
    assert "CUDA driver call failed: cuLaunchKernel of @" in text
    emu = iz.ir(iz.ForwardWithPrimal, total, iz.Const(np.ones(8)), stage="llvm",
                target="cuda-emu")
    assert "@malloc" in emu and "cuMemcpy" not in emu and "iz_device" not in emu


# -- convert-gpu-launch-to-llvm on hand-built IR -------------------------------------------
_HOST = """
builtin.module {
  func.func @scale(%x: memref<?xf64, strided<[?], offset: ?>>, %a: f64) {
    %c0 = arith.constant 0 : index
    %n = memref.dim %x, %c0 : memref<?xf64, strided<[?], offset: ?>>
    %c1 = arith.constant 1 : index
    %c256 = arith.constant 256 : index
    %g = arith.ceildivsi %n, %c256 : index
    %t = arith.constant true
    %lb = arith.constant 0 : index
    %ub = arith.constant 3 : index
    scf.for %k = %lb to %ub step %c1 {
      func.return
    }
    func.return
  }
}
"""


def launch_module(kernel: str = "scale_k0") -> builtin.ModuleOp:
    """``@scale(x, a)``: a time loop of 3 launches of ``kernel(x, a, n, true)``, with
    the ``gpu.module`` removed (the ``host`` stage)."""
    module = Parser(make_context(), _HOST.replace("      func.return\n", "", 1)).parse_module()
    f = next(o for o in module.ops if isinstance(o, func.FuncOp))
    ops = list(f.body.block.ops)
    x, a = f.body.block.args
    n, c1, c256, g, t = (ops[k].results[0] for k in (1, 2, 3, 4, 5))
    loop = next(o for o in ops if o.name == "scf.for")
    body = loop.body.block
    launch = gpu.LaunchFuncOp(
        builtin.SymbolRefAttr("isozyme_kernels", [kernel]), [g, c1, c1], [c256, c1, c1],
        kernelOperands=[x, a, n, t],
    )
    body.insert_op_before(launch, body.last_op)
    module.attributes["gpu.container_module"] = builtin.UnitAttr()
    return module


def test_launch_lowering_shape() -> None:
    module = launch_module()
    apply_lowering(module, CudaTarget().lowering_passes(("other_k", "scale_k0")), make_context())
    assert "gpu.container_module" not in module.attributes
    scale = next(o for o in module.ops if isinstance(o, llvm.FuncOp) and o.sym_name.data == "scale")
    calls = [o for o in scale.walk() if isinstance(o, llvm.CallOp)]
    launch = [c for c in calls if c.callee.root_reference.data == CUDA_LAUNCH_SYMBOL]
    assert len(launch) == 1 and len(launch[0].args) == 11
    # every alloca is in the entry block (a launch in a loop does not grow the stack)
    entry = scale.body.blocks[0]
    allocas = [o for o in scale.walk() if isinstance(o, llvm.AllocaOp)]
    assert len(allocas) == 5 and all(o.parent_block() is entry for o in allocas)
    # the i1 argument is stored as one byte, the memref as its descriptor
    assert {str(o.elem_type) for o in allocas} >= {"i8", "f64", "i64", "!llvm.ptr"}
    # kernel 1 of the table
    geps = [o for o in scale.walk() if isinstance(o, llvm.GEPOp)
            and isinstance(o.ptr.owner, llvm.AddressOfOp)]
    assert [list(g.rawConstantIndices.iter_values()) for g in geps] == [[1]]
    globals_ = {o.sym_name.data: o for o in module.ops if isinstance(o, llvm.GlobalOp)}
    assert set(globals_) == {KERNEL_TABLE}  # no launch status: a failure is a check
    # the launch goes to the stream iz_launch_stream() returns, called once at entry
    stream = launch[0].args[8].owner
    assert isinstance(stream, llvm.CallOp) and stream.parent_block() is entry
    assert stream.callee.root_reference.data == "iz_launch_stream"
    from isozyme.compiler.lowering.convert_check_to_llvm import check_table

    assert [m for _, m, _ in check_table(module)] == [
        "CUDA driver call failed: cuLaunchKernel of @scale_k0 returned {0}"]
    assert all(g.linkage.linkage.data == "external" for g in globals_.values())


def test_launch_of_an_unknown_kernel() -> None:
    with pytest.raises(LoweringError, match="@nope, which is not a kernel.*kernels: scale_k0"):
        apply_lowering(launch_module("nope"), CudaTarget().lowering_passes(("scale_k0",)),
                       make_context())


def test_gpu_artefact_fields(no_checks) -> None:
    from isozyme.calls import build, prepare

    spec = prepare(iz.Forward, _saxpy, (iz.Const(2.0), iz.Const(np.ones(4)), iz.Const(np.ones(4))),
                   target="cuda")
    assert spec.target == "cuda"
    built = build(spec, keep_stages=True, upto="llvm")
    assert set(built.stages) >= {"gpu", "cuda", "host", "llvm"}
    assert built.run([]) == ()  # nothing loaded


def test_gpu_artefact_type() -> None:
    art = GpuArtefact("cuda-emu", builtin.ModuleOp([]), ("k",), "", "iz_emu_launch")
    assert art.kernels == ("k",) and art.target == "cuda-emu"


def _fake_at(shape: tuple[int, ...], address: int) -> FakeDeviceArray:
    a = FakeDeviceArray(shape)
    a.__cuda_array_interface__["data"] = (address, False)
    return a


def test_duplicated_device_arrays_are_checked_from_their_metadata() -> None:
    # np.asarray of a CuPy array raises: shadows of device arrays are checked from the
    # __cuda_array_interface__ alone (shape, dtype, aliasing), never read on the host
    x, dx = _fake_at((4,), 0x7F0000000000), _fake_at((4,), 0x7F0000100000)
    d = iz.Duplicated(x, dx)
    assert d.val is x and d.dval is dx
    with pytest.raises(iz.AnnotationError, match=r"shadow shape/dtype \(3,\)/float64 does not "
                       r"match primal \(4,\)/float64"):
        iz.Duplicated(x, _fake_at((3,), 0x7F0000100000))
    with pytest.raises(iz.AnnotationError, match="the shadow dx aliases the primal x"):
        iz.Duplicated(x, _fake_at((4,), 0x7F0000000008))
