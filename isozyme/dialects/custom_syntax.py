"""MLIR's custom syntax for ops whose xDSL 0.74 definition has none (or a narrower one).

Enzyme-MLIR's test inputs, and ``mlir-opt``'s output, write these ops as MLIR prints
them::

    scf.parallel (%i, %j) = (%a, %b) to (%c, %d) step (%s, %t) init (%z) -> f64 { ... }
    %r = scf.if %cond -> f32 { ... } else { ... }      // a result type without ()
    %r = memref.alloca_scope -> (f64) { ... memref.alloca_scope.return %v : f64 }
    %c = memref.cast %m : memref<4xf64> to memref<?xf64>

Each class here is a *parser* for one op name: it is registered in the context in
place of xDSL's class (:func:`with_custom_syntax`) and builds xDSL's own op, both
from the custom form and from the generic form, so everything downstream (derivative
rules, lowerings, ``isinstance`` checks) sees the usual op types.  Printing is xDSL's:
generic form for the ops xDSL prints no other way, which parses back here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xdsl.dialects import memref, scf
from xdsl.dialects.builtin import IndexType, i1
from xdsl.ir import Attribute, Block, Dialect, Operation, Region, SSAValue
from xdsl.parser import Parser


def _parse_optional_arrow_types(parser: Parser) -> list[Attribute]:
    """``(-> type | -> (type, ...))?``, as MLIR's ``parseOptionalArrowTypeList``."""
    if not parser.parse_optional_punctuation("->"):
        return []
    if parser.parse_optional_punctuation("(") is not None:
        if parser.parse_optional_punctuation(")") is not None:
            return []
        types = [parser.parse_type()]
        while parser.parse_optional_punctuation(",") is not None:
            types.append(parser.parse_type())
        parser.parse_punctuation(")")
        return types
    return [parser.parse_type()]


def _ensure_terminator(region: Region, terminator: type[Operation]) -> None:
    """Add MLIR's implicit terminator (``terminator`` without operands) to a
    single-block region lacking one."""
    if not region.blocks:
        region.add_block(Block())
    block = region.blocks.last
    assert block is not None
    if not isinstance(block.last_op, terminator):
        block.add_op(terminator.create())


class _ParseAs:
    """Mixin of the parser classes: the generic form builds the xDSL op (``BASE``)."""

    BASE: type[Operation]

    @classmethod
    def create(cls, **kwargs: Any) -> Operation:  # type: ignore[override]
        """Build the xDSL op (not this parser class) from its generic form."""
        return cls.BASE.create(**kwargs)


class ParallelSyntax(_ParseAs, scf.ParallelOp):
    """``scf.parallel (%ivs) = (%lbs) to (%ubs) step (%steps) [init (%inits)]
    [-> types] region attr-dict``; the body's ``scf.reduce`` may be left implicit."""

    BASE = scf.ParallelOp

    @classmethod
    def parse(cls, parser: Parser) -> scf.ParallelOp:  # type: ignore[override]
        paren = Parser.Delimiter.PAREN
        ivs = parser.parse_comma_separated_list(
            paren, lambda: parser.parse_argument(expect_type=False)
        )
        parser.parse_punctuation("=")

        def indices() -> list[SSAValue]:
            return parser.parse_comma_separated_list(
                paren, lambda: parser.parse_operand(IndexType())
            )

        lbs = indices()
        parser.parse_keyword("to")
        ubs = indices()
        parser.parse_keyword("step")
        steps = indices()
        unresolved_inits = []
        if parser.parse_optional_keyword("init"):
            unresolved_inits = parser.parse_comma_separated_list(
                paren, parser.parse_unresolved_operand
            )
        pos = parser.pos
        types = _parse_optional_arrow_types(parser)
        inits = parser.resolve_operands(unresolved_inits, types, pos)
        body = parser.parse_region([iv.resolve(IndexType()) for iv in ivs])
        attrs = parser.parse_optional_attr_dict()
        _ensure_terminator(body, scf.ReduceOp)
        op = scf.ParallelOp(lbs, ubs, steps, body, inits)
        op.attributes |= attrs
        return op


class IfSyntax(_ParseAs, scf.IfOp):
    """``scf.if %cond [-> type | -> (types)] region [else region] attr-dict``."""

    BASE = scf.IfOp

    @classmethod
    def parse(cls, parser: Parser) -> scf.IfOp:  # type: ignore[override]
        cond = parser.parse_operand(i1)
        types = _parse_optional_arrow_types(parser)
        then_region = scf.IfOp.parse_region_with_yield(parser)
        else_region = (
            scf.IfOp.parse_region_with_yield(parser)
            if parser.parse_optional_keyword("else")
            else Region()
        )
        attrs = parser.parse_optional_attr_dict()
        return scf.IfOp(cond, types, then_region, else_region, attrs)


class AllocaScopeSyntax(_ParseAs, memref.AllocaScopeOp):
    """``memref.alloca_scope [-> types] region attr-dict`` (an empty
    ``memref.alloca_scope.return`` may be left implicit)."""

    BASE = memref.AllocaScopeOp

    @classmethod
    def parse(cls, parser: Parser) -> memref.AllocaScopeOp:  # type: ignore[override]
        types = _parse_optional_arrow_types(parser)
        region = parser.parse_region()
        attrs = parser.parse_optional_attr_dict()
        if not types:
            _ensure_terminator(region, memref.AllocaScopeReturnOp)
        return memref.AllocaScopeOp.create(
            result_types=types, regions=[region], attributes=attrs
        )


class AllocaScopeReturnSyntax(_ParseAs, memref.AllocaScopeReturnOp):
    """``memref.alloca_scope.return [%values : types] attr-dict``."""

    BASE = memref.AllocaScopeReturnOp

    @classmethod
    def parse(cls, parser: Parser) -> memref.AllocaScopeReturnOp:  # type: ignore[override]
        values = []
        unresolved = parser.parse_optional_undelimited_comma_separated_list(
            parser.parse_optional_unresolved_operand, parser.parse_unresolved_operand
        )
        if unresolved:
            parser.parse_punctuation(":")
            pos = parser.pos
            types = parser.parse_comma_separated_list(
                Parser.Delimiter.NONE, parser.parse_type
            )
            values = parser.resolve_operands(unresolved, types, pos)
        attrs = parser.parse_optional_attr_dict()
        return memref.AllocaScopeReturnOp.create(operands=values, attributes=attrs)


class CastSyntax(_ParseAs, memref.CastOp):
    """``memref.cast %source attr-dict : type to type``."""

    BASE = memref.CastOp

    @classmethod
    def parse(cls, parser: Parser) -> memref.CastOp:  # type: ignore[override]
        unresolved = parser.parse_unresolved_operand()
        attrs = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        source_type = parser.parse_type()
        parser.parse_keyword("to")
        dest_type = parser.parse_type()
        (source,) = parser.resolve_operands([unresolved], [source_type], pos)
        return memref.CastOp.create(
            operands=[source], result_types=[dest_type], attributes=attrs
        )


#: xDSL op class -> the class that parses its MLIR syntax.
CUSTOM_SYNTAX: Mapping[type[Operation], type[Operation]] = {
    scf.ParallelOp: ParallelSyntax,
    scf.IfOp: IfSyntax,
    memref.AllocaScopeOp: AllocaScopeSyntax,
    memref.AllocaScopeReturnOp: AllocaScopeReturnSyntax,
    memref.CastOp: CastSyntax,
}


def with_custom_syntax(dialect: Dialect) -> Dialect:
    """``dialect`` with the parser classes of :data:`CUSTOM_SYNTAX` registered in place
    of the xDSL ops they build."""
    ops: Sequence[type[Operation]] = [
        CUSTOM_SYNTAX.get(op, op) for op in dialect.operations
    ]
    return Dialect(dialect.name, list(ops), list(dialect.attributes))
