"""The Python constructs traced code may use: the registry the documentation's table of
supported constructs is generated from (``docs/generate_support_tables.py``).

Each row names a runnable example in ``docs/construct_examples.py`` (user code, kept
outside the package), which ``tests/frontends/test_constructs.py`` runs: every supported
construct's example against plain Python, its gradient against central differences in
both modes; every refused one for its error. So the table cannot claim what the
frontend does not do. Add a row here, its example there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Construct:
    """One row of the table: a construct, whether traced code may use it, a note."""

    name: str
    supported: bool
    note: str
    example: str  # the name of its example in docs/construct_examples.py
    extra: tuple[object, ...] = ()  # the example's arguments after x
    error: str = ""  # for a refused construct: a fragment of its TraceError


# --------------------------------------------------------------------------- the registry


CONSTRUCTS: list[Construct] = [
    Construct("`if`/`elif`/`else` on traced values", True,
              "both branches traced; `scf.if`", "if_on_traced", (6,)),
    Construct("`while` on a traced condition", True, "`scf.while`", "while_on_traced", (6,)),
    Construct("an array re-bound in a loop (`w = w - lr * g`)", True,
              "carried in one buffer; its shape is fixed, its dtype may widen",
              "array_rebound_in_loop", (4,)),
    Construct("an array re-bound in an `if`", True,
              "one buffer allocated before the `if`", "array_rebound_in_if", (0,)),
    Construct("ping-pong buffers (`u, v = v, u`)", True, "private buffers swap values",
              "ping_pong_buffers", (3,)),
    Construct("`break` and `continue`", True,
              "a carried flag; a `for` over a range becomes a `while`",
              "break_and_continue", (6,)),
    Construct("`return` inside a loop", True, "a carried flag and return value",
              "return_inside_loop", (6,)),
    Construct("a variable first assigned in a loop, used after it", True,
              "UnboundVariableError at run time when the loop ran no iteration",
              "assigned_in_loop_used_after", (6,)),
    Construct("`for row in X`, `zip`, `enumerate`", True,
              "a loop over `range(len(X))` reading rows", "iterate_over_array", (0,)),
    Construct("`reversed(range(n))`", True, "a loop over a traced range", "reversed_range",
              (6,)),
    Construct("`sum(...)` of a generator expression", True, "an accumulation loop",
              "sum_of_generator", (6,)),
    Construct("list comprehension over a Python range", True, "runs while tracing",
              "comprehension_over_python_range", (0,)),
    Construct("`assert` on traced sizes", True, "a run-time check raising AssertionError",
              "assert_on_shapes", (4,)),
    Construct("sizes as Python ints (`tuple(range(x.shape[0]))`)", True,
              "one compilation per shape of that argument", "sizes_as_python_ints", (0,)),
    Construct("fancy indexing: gathers, `np.add.at`", True,
              "loops of loads and stores; the adjoint is a scatter-add",
              "fancy_gather_and_scatter", (0,)),
    Construct("boolean masks: `x[mask]`, `x[mask] = v`", True,
              "the read's size is counted at run time", "boolean_mask", (0,)),
    Construct("`functools.partial`, lambdas", True, "inlined", "partial_and_lambda", (0,)),
    Construct("nested functions and closures", True, "inlined", "closure_helper", (0,)),
    Construct("generators (`yield`) over traced values", False,
              "write a loop, or `sum(...)` of a generator expression",
              "yield_in_traced_code", (6,), error="yield"),
]
