"""The ``isz`` dialect's table: run-time checks have no derivative.

``ISZ_GUARDS``: ops that guard the code after them and have no adjoint.  Forward mode
clones them into the derivative (they guard it as they guard the primal), reverse mode
keeps them in the forward sweep only, the activity analysis gives them no edges.
"""

from __future__ import annotations

from xdsl.ir import Operation

from isozyme.compiler.ad_rules.registry import GuardRule, register
from isozyme.dialects.check import CheckOp

ISZ_GUARDS: frozenset[type[Operation]] = frozenset({CheckOp})

register({t: GuardRule() for t in ISZ_GUARDS})
