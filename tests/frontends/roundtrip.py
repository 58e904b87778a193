"""Shared check of the frontend tests: a traced module verifies, prints, and parses back
to the same text (with the compiler's context, which loads every dialect we emit)."""

from xdsl.parser import Parser

from isozyme.compiler.context import make_context
from isozyme.frontends.python import TracedFunction


def reparse(traced: TracedFunction) -> str:
    """Verify ``traced.module``, print it, parse it back; return the text."""
    traced.module.verify()
    text = str(traced.module)
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert str(parsed) == text
    return text
