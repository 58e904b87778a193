"""Creates derivative functions on demand and memoizes them per activity signature."""

from __future__ import annotations

from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from isozyme.compiler.ad.forward import generate_forward
from isozyme.compiler.ad.reverse import generate_reverse
from isozyme.compiler.passes.lift_cf_to_scf import has_branches, lift_function
from isozyme.dialects.enzyme import Activity, DerivativeSignature

_SHORT = {
    Activity.ACTIVE: "a",
    Activity.DUP: "d",
    Activity.CONST: "c",
    Activity.DUPNONEED: "dn",
    Activity.ACTIVENONEED: "an",
    Activity.CONSTNONEED: "cn",
}


class DerivativeFactory:
    """Generates ``fwddiffe<f>``/``diffe<f>`` (``fwddiffe<W><f>`` in batch mode) into
    ``module``, once per :class:`DerivativeSignature`.

    The first derivative of ``f`` gets Enzyme's plain name; further activity signatures
    get a suffix naming their activities (``diffef_a_c__an``).
    """

    def __init__(self, module: ModuleOp):
        self.module = module
        self._done: dict[tuple, str] = {}
        self._names: set[str] = {
            op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)
        }

    def _name(self, sig: DerivativeSignature, fn: func.FuncOp) -> str:
        width = str(sig.width) if sig.width != 1 else ""  # Enzyme's fwddiffe2f
        base = f"{sig.prefix}{width}{fn.sym_name.data}"
        if base not in self._names:
            return base
        suffix = (
            "_".join(_SHORT[a] for a in sig.activities) + "__"
            + "_".join(_SHORT[a] for a in sig.ret_activities)
        )
        name = f"{base}_{suffix}"
        k = 1
        while name in self._names:
            name, k = f"{base}_{suffix}_{k}", k + 1
        return name

    def unique_name(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``... if a function of the module has it;
        reserved from then on (user rules name the functions they build with it)."""
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def derivative(self, fn: func.FuncOp, sig: DerivativeSignature) -> str:
        """Name of the derivative of ``fn`` with signature ``sig``, generated into the
        module on first request."""
        key = (fn.sym_name.data, sig)
        if key in self._done:
            return self._done[key]
        if has_branches(fn):
            # AD differentiates structured control flow: raise cf branches and
            # scf.execute_region first (refused with an UnsupportedError naming what
            # cannot be raised)
            lift_function(fn)
        name = self._name(sig, fn)
        self._names.add(name)
        self._done[key] = name  # before generating: a recursive call finds it
        gen = generate_reverse if sig.reverse else generate_forward
        new = gen(self, fn, sig, name)
        self.module.body.block.add_op(new)
        return name
