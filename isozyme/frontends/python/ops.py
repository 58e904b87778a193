"""The namespace converted code calls into (bound to the name ``_iz_`` in it).

Keeping the generated code's entry points in one module makes the AST rewrite easy to
read: ``_iz_.converted_call``, ``_iz_.if_stmt``, ``_iz_.for_range``...
"""

from __future__ import annotations

from .ast_transform import mark_converted as converted_fn
from .control_flow import (
    and_,
    compare_chain,
    for_range,
    if_return,
    if_stmt,
    ifexp,
    ld,
    not_,
    or_,
    ret,
    while_,
)
from .functions import converted_call
from .accumulation import accumulate, augment
from .whole_array.array_builders import array_iter, array_read
from .parallel import for_prange, prange_unsupported

__all__ = [
    "accumulate",
    "and_",
    "array_iter",
    "array_read",
    "augment",
    "compare_chain",
    "converted_call",
    "converted_fn",
    "for_prange",
    "for_range",
    "if_return",
    "if_stmt",
    "ifexp",
    "ld",
    "not_",
    "or_",
    "prange_unsupported",
    "ret",
    "while_",
]
