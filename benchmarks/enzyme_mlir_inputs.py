"""Measure isozyme against Enzyme-MLIR's own test inputs (issue 11).

Usage: ``python benchmarks/enzyme_mlir_inputs.py DIR`` where DIR holds ``.mlir`` files
taken from EnzymeAD/Enzyme's ``enzyme/test/MLIR/ForwardMode`` and ``ReverseMode``.

Each file is split at ``// -----`` (mlir's ``--split-input-file``).  A *check* is one
``enzyme.fwddiff``/``enzyme.autodiff`` request in a chunk, or the request a RUN line's
``--enzyme-wrap="infn=F ... argTys=... retTys=... mode=..."`` asks for (synthesized here
as an ``enzyme.autodiff``/``enzyme.fwddiff`` of F).  For each check the harness builds an
entry ``@__check`` that takes exactly the request's operands and returns its results,
runs it with :func:`isozyme.tools.ir_run.run_ir` on random inputs, and compares with
central finite differences of the primal function through ``run_ir`` as well:

* forward: every tangent (returned, or left in a shadow memref) must equal the
  directional derivative, along the given tangents, of the matching primal output
  (returned value, or the memref's contents after the call);
* reverse (a dot-product test along one random direction ``v`` of the active inputs):
  with ``L = sum(seed * result) + sum(<shadow_in, memref contents after the call>)``,
  ``<gradient, v>`` must equal the directional derivative of ``L`` along ``v``, where the
  gradient is the returned gradients of active scalars and ``shadow_out`` of duplicated
  memrefs, which Enzyme defines as ``d L / d memref_in`` (the incoming shadow is the
  adjoint of the contents after the call).

Outcomes: ``pass``, ``wrong`` (numbers differ), ``error`` (an isozyme error, first
line kept) and ``ineligible`` (batched requests, tensor/llvm/complex types, no float
input or output to check, primal without a body).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import AnyFloat, IndexType, IntegerType, MemRefType, ModuleOp
from xdsl.ir import Block, Region

from isozyme.dialects.enzyme import AutoDiffOp, ForwardDiffOp
from isozyme.tools.ir_run import parse_ir, run_ir

REQUEST_RE = re.compile(r"enzyme\.(fwddiff|autodiff)\s+@([\w$.]+)")
WRAP_RE = re.compile(r'--enzyme-wrap="([^"]*)"')


@dataclass
class Check:
    """One request of one chunk and what became of it."""

    file: str
    chunk: int
    primal: str
    mode: str
    outcome: str = "pass"
    detail: str = ""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message, with its type."""
    text = next((s for s in str(e).splitlines() if s.strip()), "")
    return f"{type(e).__name__}: {text}"[:160]


def wrap_request(run_line: str, module: ModuleOp) -> str | None:
    """The text of a function holding the request of an ``--enzyme-wrap`` RUN line."""
    m = WRAP_RE.search(run_line)
    if not m:
        return None
    opts = dict(kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)
    fn = next((f for f in module.ops if isinstance(f, func.FuncOp)
               and f.sym_name.data == opts.get("infn")), None)
    if fn is None:
        return None
    acts = [a for a in opts.get("argTys", "").split(",") if a]
    rets = [a for a in opts.get("retTys", "").split(",") if a]
    fwd = opts.get("mode", "").startswith("Forward")
    ins, outs, names = [], [], []
    for k, (t, a) in enumerate(zip(fn.function_type.inputs.data, acts)):
        ins.append(str(t)); names.append(f"%a{k}")
        if a in ("enzyme_dup", "enzyme_dupnoneed"):
            ins.append(str(t)); names.append(f"%d{k}")
    for k, (t, r) in enumerate(zip(fn.function_type.outputs.data, rets)):
        if fwd:
            if r in ("enzyme_dup", "enzyme_const"):
                outs.append(str(t))
            if r in ("enzyme_dup", "enzyme_dupnoneed"):
                outs.append(str(t))
        else:
            if r == "enzyme_active":
                outs.append(str(t))
            if r in ("enzyme_active", "enzyme_activenoneed"):
                ins.append(str(t)); names.append(f"%s{k}")
    if not fwd:
        outs += [str(t) for t, a in zip(fn.function_type.inputs.data, acts)
                 if a == "enzyme_active"]
    act = ", ".join(f"#enzyme<activity {a}>" for a in acts)
    ret = ", ".join(f"#enzyme<activity {a}>" for a in rets)
    sig = ", ".join(f"{n}: {t}" for n, t in zip(names, ins))
    res = f"%r:{len(outs)} = " if len(outs) > 1 else ("%r = " if outs else "")
    rvals = ", ".join(f"%r#{i}" for i in range(len(outs))) if len(outs) > 1 else "%r"
    ret_stmt = f"return {rvals} : {', '.join(outs)}" if outs else "return"
    op = "fwddiff" if fwd else "autodiff"
    return (f"func.func @__wrap({sig}) -> ({', '.join(outs)}) {{\n"
            f"  {res}enzyme.{op} @{fn.sym_name.data}({', '.join(names)}) "
            f"{{activity=[{act}], ret_activity=[{ret}]}} : ({', '.join(ins)}) -> "
            f"({', '.join(outs)})\n  {ret_stmt}\n}}\n")


def check_module(module: ModuleOp, req: ForwardDiffOp | AutoDiffOp) -> ModuleOp:
    """A copy of ``module`` with ``@__check``: the request alone, on its own operands."""
    block = Block(arg_types=[v.type for v in req.operands])
    new = req.clone()
    for k, a in enumerate(block.args):
        new.operands[k] = a
    block.add_op(new)
    block.add_op(func.ReturnOp(*new.results))
    fn = func.FuncOp("__check", ([v.type for v in req.operands], [r.type for r in req.results]),
                     Region(block))
    out = module.clone()
    out.body.block.add_op(fn)
    return out


def sample(t, rng) -> object:
    """A random input of type ``t``: floats in [0.2, 0.8], i1 random, integers 3,
    dynamic memref sizes 3."""
    if isinstance(t, AnyFloat):
        return float(rng.uniform(0.2, 0.8))
    if isinstance(t, IntegerType) and t.width.data == 1:
        return bool(rng.integers(0, 2))
    if isinstance(t, IntegerType | IndexType):
        return 3
    if isinstance(t, MemRefType) and isinstance(t.element_type, AnyFloat):
        shape = [3 if s < 0 else s for s in t.get_shape()]
        dt = np.float64 if t.element_type.bitwidth == 64 else np.float32
        return rng.uniform(0.2, 0.8, size=shape).astype(dt)
    raise TypeError(f"no sample for {t}")


def is_float(t) -> bool:
    """Whether ``t`` is a float scalar or a memref of floats."""
    return isinstance(t, AnyFloat) or (
        isinstance(t, MemRefType) and isinstance(t.element_type, AnyFloat))


def run_check(text: str, module: ModuleOp, req, c: Check, rng) -> None:
    """Run one request and compare it with finite differences; sets ``c.outcome``."""
    width = req.width.value.data if req.width is not None else 1
    acts = [str(a).split("enzyme_")[-1].rstrip(">") for a in req.activity.data]
    rets = [str(a).split("enzyme_")[-1].rstrip(">") for a in req.ret_activity.data]
    fwd = isinstance(req, ForwardDiffOp)
    primal = next((f for f in module.ops if isinstance(f, func.FuncOp)
                   and f.sym_name.data == c.primal), None)
    if width != 1:
        c.outcome, c.detail = "ineligible", "batched request (width > 1)"; return
    if primal is None or not primal.body.blocks:
        c.outcome, c.detail = "ineligible", "primal has no body"; return
    pins, pouts = list(primal.function_type.inputs.data), list(primal.function_type.outputs.data)
    for t in pins + pouts:
        if not (is_float(t) or isinstance(t, IntegerType | IndexType)):
            c.outcome, c.detail = "ineligible", f"type {t} (run_ir passes scalars, memrefs)"; return
    x = [sample(t, rng) for t in pins]
    shadow = ("dup", "dupnoneed")
    active_in = [k for k, a in enumerate(acts) if (a in shadow or a == "active") and is_float(pins[k])]
    if not active_in:
        c.outcome, c.detail = "ineligible", "no float input to differentiate"; return
    v = [sample(t, rng) if k in active_in else None for k, t in enumerate(pins)]
    seeds = [float(rng.uniform(0.2, 0.8)) for _ in rets]
    # operands of the request, in Enzyme-MLIR's layout
    ops, shadows = [], {}
    for k, a in enumerate(acts):
        ops.append(np.array(x[k], copy=True) if isinstance(x[k], np.ndarray) else x[k])
        if a in shadow:
            s = v[k] if fwd else sample(pins[k], rng)
            s = np.array(s, copy=True) if isinstance(s, np.ndarray) else s
            shadows[k] = (len(ops), np.array(s, copy=True) if isinstance(s, np.ndarray) else s)
            ops.append(s)
    if not fwd:
        for k, r in enumerate(rets):
            if r in ("active", "activenoneed"):
                ops.append(seeds[k])
    try:
        got = run_ir(check_module(module, req), "__check", ops)
    except Exception as e:  # noqa: BLE001  every failure is reported, not raised
        c.outcome, c.detail = "error", first_line(e); return

    def primal_outputs(h: float) -> tuple[list, list]:
        xs = [(xi + h * vi) if vi is not None else xi for xi, vi in zip(x, v)]
        xs = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in xs]
        r = run_ir(text, c.primal, xs)
        return r.results, r.args

    f32 = any(isinstance(t, AnyFloat) and t.bitwidth == 32 or isinstance(t, MemRefType)
              and isinstance(t.element_type, AnyFloat) and t.element_type.bitwidth == 32
              for t in pins + pouts)
    h, tol = (1e-2, 2e-2) if f32 else (1e-6, 1e-5)
    try:
        (rp, ap), (rm, am) = primal_outputs(h), primal_outputs(-h)
    except Exception as e:  # noqa: BLE001
        c.outcome, c.detail = "error", "primal: " + first_line(e); return
    res = list(got.results)
    if fwd:
        pairs = []  # (tangent got, finite difference)
        for k, r in enumerate(rets):
            if r in ("dup", "const"):
                res.pop(0)
            if r in shadow:
                pairs.append((res.pop(0), (np.asarray(rp[k], float) - np.asarray(rm[k], float)) / (2 * h)))
        for k, (pos, _) in shadows.items():
            pairs.append((got.args[pos], (np.asarray(ap[k], float) - np.asarray(am[k], float)) / (2 * h)))
        pairs = [(g, e) for g, e in pairs if np.size(e)]
        if not pairs:
            c.outcome, c.detail = "ineligible", "no float output to compare"; return
        bad = [(g, e) for g, e in pairs if not np.allclose(np.asarray(g, float), e, rtol=tol, atol=tol)]
        if bad:
            c.outcome, c.detail = "wrong", f"tangent {np.ravel(bad[0][0])[:4]} vs fd {np.ravel(bad[0][1])[:4]}"
        return
    # reverse: dot-product test
    def loss(rs, args) -> float:
        total = sum(seeds[k] * float(rs[k]) for k, r in enumerate(rets)
                    if r in ("active", "activenoneed"))
        for k, (_, s0) in shadows.items():
            total += float(np.sum(np.asarray(s0, float) * np.asarray(args[k], float)))
        return total
    fd = (loss(rp, ap) - loss(rm, am)) / (2 * h)
    n_primal = sum(1 for r in rets if r == "active")
    grads = res[n_primal:]
    dot = 0.0
    gi = 0
    for k, a in enumerate(acts):
        if a == "active":
            if gi >= len(grads):
                c.outcome, c.detail = "ineligible", "cannot map the request's results"; return
            if k in active_in:
                dot += float(grads[gi]) * float(v[k])
            gi += 1
        elif a in shadow and k in active_in:
            pos, s0 = shadows[k]
            dot += float(np.sum(np.asarray(got.args[pos], float) * np.asarray(v[k], float)))
    if not any(r in ("active", "activenoneed") for r in rets) and not shadows:
        c.outcome, c.detail = "ineligible", "no float output to compare"; return
    if not np.isclose(dot, fd, rtol=tol, atol=tol):
        c.outcome, c.detail = "wrong", f"<grad, v> = {dot:.6g} vs fd {fd:.6g}"


def measure_file(path: Path, rng) -> list[Check]:
    """Every check of one file, run."""
    source = path.read_text()
    run_line = next((l for l in source.splitlines() if l.startswith("// RUN")), "")
    checks: list[Check] = []
    for n, text in enumerate(re.split(r"^// -----\s*$", source, flags=re.M)):
        found = REQUEST_RE.findall(text)
        try:
            module = parse_ir(text, path.name)
            wrap = wrap_request(run_line, module)
            if wrap:
                # the wrapper goes inside an explicit `module { ... }`, not next to it
                body = re.sub(r"^\s*module\s*\{(.*)\}\s*$", r"\1",
                              "\n".join(l for l in text.splitlines()
                                        if not l.lstrip().startswith("//")), flags=re.S)
                text = body + "\n" + wrap
                module = parse_ir(text, path.name)
        except Exception as e:  # noqa: BLE001
            for mode, f in found or ([("wrap", "?")] if WRAP_RE.search(run_line) else []):
                checks.append(Check(path.name, n, f, "fwd" if mode == "fwddiff" else "rev", "error", "parse: " + first_line(e)))
            continue
        for req in [op for op in module.walk() if isinstance(op, ForwardDiffOp | AutoDiffOp)]:
            c = Check(path.name, n, req.fn.root_reference.data if hasattr(req.fn, "root_reference")
                      else str(req.fn).lstrip("@"),
                      "fwd" if isinstance(req, ForwardDiffOp) else "rev")
            try:
                run_check(text, module, req, c, rng)
            except Exception as e:  # noqa: BLE001  a harness limit, not isozyme's
                c.outcome, c.detail = "ineligible", "harness: " + first_line(e)
            checks.append(c)
    return checks


def main(argv: list[str]) -> int:
    """Measure every ``.mlir`` file of ``argv[1]``; print a table and a summary."""
    rng = np.random.default_rng(0)
    checks: list[Check] = []
    for path in sorted(Path(argv[1]).glob("*.mlir")):
        got = measure_file(path, rng)
        if not got:
            got = [Check(path.name, 0, "-", "-", "ineligible", "no runnable request")]
        checks += got
        for c in got:
            print(f"| {c.file} | {c.chunk} | @{c.primal} | {c.mode} | {c.outcome} | {c.detail} |", flush=True)
    counts = Counter(c.outcome for c in checks)
    eligible = counts["pass"] + counts["wrong"] + counts["error"]
    print(f"\n{counts['pass']} of {eligible} eligible checks pass; {counts['wrong']} wrong, "
          f"{counts['error']} isozyme errors, {counts['ineligible']} ineligible")
    causes = Counter((c.outcome, c.detail.split(":")[0] if c.outcome == "ineligible" else c.detail)
                     for c in checks if c.outcome != "pass")
    for (o, d), k in causes.most_common():
        print(f"- {k}: {o}: {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
