"""Which loop induction variable an index is an injective function of.

Two analyses need the same proof that distinct iterations of a loop nest touch
distinct elements: the reverse of ``scf.parallel`` (a shadow accumulation needs no
atomic when its element is private to one iteration: ``ad_rules/memref.py``) and the
GPU targets' ``parallelize-host-loops`` (a sequential nest whose iterations are
independent may run as a kernel). An index is such a function of one induction
variable ``iv`` when it is built from ``iv`` alone by (the ``arith`` table's
``ARITH_INJECTIVE``):

* ``+ c``, ``- c``, ``c - ...`` with ``c`` defined outside the loop nest (invariant);
* ``* k`` with ``k`` a non-zero integer constant;
* widening casts (``arith.extsi``, ``arith.index_cast`` to a type at least as wide;
  ``index`` counts as 64 bits), which keep distinct values distinct.

Truncating casts, divisions, remainders, ``select`` (numpy's wrapped negative index)
and loads are not followed: the answer is then None, and callers stay conservative.
64-bit wrap-around of the arithmetic is not modelled (indices near 2**63).
"""

from __future__ import annotations

from collections.abc import Collection

from xdsl.ir import Block, Operation, SSAValue

from isozyme.compiler.ad_rules import injective_operand


def defined_inside(root: Operation, v: SSAValue) -> bool:
    """Whether ``v`` is defined in ``root``'s regions (an op result or a block
    argument there), or by ``root`` itself."""
    owner = v.owner
    op = owner.parent_op() if isinstance(owner, Block) else owner
    return op is not None and (op is root or root.is_ancestor(op))


def followed_iv(v: SSAValue, root: Operation, ivs: Collection[SSAValue]) -> SSAValue | None:
    """The induction variable among ``ivs`` (of loops in ``root``) that index ``v`` is
    an injective function of (see the module docstring), or None."""
    while v not in ivs:
        op = v.owner
        if isinstance(op, Block):
            return None
        nxt = injective_operand(op, lambda x: not defined_inside(root, x))
        if nxt is None:
            return None
        v = nxt
    return v
