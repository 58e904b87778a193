"""The second namespace converted code calls into (bound to ``_iz_x_`` in it, beside
:mod:`.ops` as ``_iz_``): the builders of the constructs :mod:`.iteration` rewrites
(iteration over arrays, :mod:`.sequences`) and of ``assert``
(:func:`.runtime_checks.assert_`)."""

from __future__ import annotations

from .runtime_checks import assert_
from .sequences import is_traced, item, iterate, length

__all__ = ["assert_", "is_traced", "item", "iterate", "length"]
