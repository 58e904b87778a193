"""Creates derivative functions on demand and memoizes them per activity signature."""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from isozyme.compiler.ad.forward import generate_forward
from isozyme.compiler.ad.reverse import generate_reverse
from isozyme.dialects.enzyme import Activity

_SHORT = {
    Activity.ACTIVE: "a",
    Activity.DUP: "d",
    Activity.CONST: "c",
    Activity.DUPNONEED: "dn",
    Activity.ACTIVENONEED: "an",
    Activity.CONSTNONEED: "cn",
}


class DerivativeFactory:
    """Generates ``fwddiffe<f>``/``diffe<f>`` into ``module``, once per signature.

    The first derivative of ``f`` gets Enzyme's plain name; further activity signatures
    get a suffix naming their activities (``diffef_a_c__an``).
    """

    def __init__(self, module: ModuleOp):
        self.module = module
        self._done: dict[tuple, str] = {}
        self._names: set[str] = {
            op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)
        }

    def _name(self, prefix: str, fn: func.FuncOp, acts, rets) -> str:
        base = f"{prefix}{fn.sym_name.data}"
        if base not in self._names:
            return base
        suffix = "_".join(_SHORT[a] for a in acts) + "__" + "_".join(_SHORT[a] for a in rets)
        name = f"{base}_{suffix}"
        k = 1
        while name in self._names:
            name, k = f"{base}_{suffix}_{k}", k + 1
        return name

    def _get(self, kind: str, fn: func.FuncOp, acts: Sequence[Activity], rets: Sequence[Activity]) -> str:
        key = (kind, fn.sym_name.data, tuple(acts), tuple(rets))
        if key in self._done:
            return self._done[key]
        prefix = "fwddiffe" if kind == "fwd" else "diffe"
        name = self._name(prefix, fn, acts, rets)
        self._names.add(name)
        self._done[key] = name  # before generating: a recursive call finds it
        gen = generate_forward if kind == "fwd" else generate_reverse
        new = gen(self, fn, acts, rets, name)
        self.module.body.block.add_op(new)
        return name

    def forward(self, fn: func.FuncOp, acts: Sequence[Activity], rets: Sequence[Activity]) -> str:
        """Name of the forward-mode derivative of ``fn`` for these activities."""
        return self._get("fwd", fn, acts, rets)

    def reverse(self, fn: func.FuncOp, acts: Sequence[Activity], rets: Sequence[Activity]) -> str:
        """Name of the reverse-mode derivative of ``fn`` for these activities."""
        return self._get("rev", fn, acts, rets)
