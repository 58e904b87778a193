"""The ``enzyme`` dialect: autodiff requests, activities and caches.

The textual form follows Enzyme-MLIR so that IR written for Enzyme runs through
isozyme::

    %r = enzyme.autodiff @f(%x, %seed) <{activity = [#enzyme.activity<enzyme_active>],
             ret_activity = [#enzyme.activity<enzyme_activenoneed>]}> : (f64, f64) -> f64

The activity lists may also be spelled ``<activity=[...], ret_activity=[...]>`` (without
braces) or as an attribute dictionary ``{activity=[...]}``, and each activity as
``#enzyme.activity<enzyme_dup>`` or the older ``#enzyme<activity enzyme_dup>``.

Operand and result conventions (Enzyme-MLIR's):

``enzyme.fwddiff``
    operands: per argument its primal, followed by its shadow when the argument is
    ``enzyme_dup``/``enzyme_dupnoneed`` (``width`` shadows in batch mode).
    results: per return value its primal unless the return activity ends in
    ``noneed`` or is ``enzyme_const``... precisely: ``enzyme_dup`` gives primal and
    shadow, ``enzyme_dupnoneed`` the shadow only, ``enzyme_const`` the primal only,
    ``enzyme_constnoneed`` nothing.

``enzyme.autodiff``
    operands: per argument its primal, followed by its shadow when the argument is
    ``enzyme_dup``/``enzyme_dupnoneed``; then one seed (differential) per return value
    whose activity is ``enzyme_active``/``enzyme_activenoneed``.
    results: the primal of each return value whose activity is ``enzyme_active`` or
    ``enzyme_const``, then one gradient per argument whose activity is
    ``enzyme_active``.

The cache ops ``enzyme.init``/``enzyme.push``/``enzyme.pop`` hold the values the reverse
sweep needs from the forward sweep: a LIFO stack per cached value, growing with the trip
count of the loops around the push.  ``enzyme.cache_free`` (an isozyme op) releases one.

Enzyme-MLIR's gradient slots are read too: ``enzyme.init`` of a ``!enzyme.Gradient<T>``
makes one mutable ``T`` (an accumulator that is not an SSA value), written by
``enzyme.set`` and read by ``enzyme.get``.  Enzyme-MLIR declares no custom syntax for
init/push/pop/set/get, so its files spell them in MLIR's generic form, which isozyme
parses; isozyme prints and parses a custom form as well::

    %g = "enzyme.init"() : () -> !enzyme.Gradient<f64>      // Enzyme-MLIR, generic
    "enzyme.set"(%g, %v) : (!enzyme.Gradient<f64>, f64) -> ()
    %r = "enzyme.get"(%g) : (!enzyme.Gradient<f64>) -> f64
    %g = enzyme.init : !enzyme.Gradient<f64>                  // custom
    enzyme.set %g, %v : !enzyme.Gradient<f64>, f64
    %r = enzyme.get %g : (!enzyme.Gradient<f64>) -> f64

One op name, ``enzyme.init``, creates both kinds: it is an :class:`InitOp` for a cache
and a :class:`GradientInitOp` for a gradient (the parser picks the class from the result
type), so passes that handle caches never see a gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xdsl.dialects.builtin import (
    ArrayAttr,
    FlatSymbolRefAttrConstr,
    FunctionType,
    IntegerAttr,
    SymbolRefAttr,
    i64,
)
from xdsl.dialects.utils import EnumAttribute
from xdsl.ir import (
    Attribute,
    Dialect,
    Operation,
    ParametrizedAttribute,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    param_def,
    prop_def,
    result_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser, Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.str_enum import StrEnum


class Activity(StrEnum):
    """Enzyme's six activities, spelled as Enzyme-MLIR spells them."""

    ACTIVE = "enzyme_active"
    DUP = "enzyme_dup"
    CONST = "enzyme_const"
    DUPNONEED = "enzyme_dupnoneed"
    ACTIVENONEED = "enzyme_activenoneed"
    CONSTNONEED = "enzyme_constnoneed"


@irdl_attr_definition
class ActivityAttr(EnumAttribute[Activity]):
    """``#enzyme.activity<enzyme_dup>``; also parses ``#enzyme<activity enzyme_dup>``."""

    name = "enzyme.activity"

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> Activity:
        # Pretty form: `<enzyme_dup>`; opaque form: the caller already consumed
        # `#enzyme<activity` and parses the closing `>` itself.
        if parser.parse_optional_punctuation("<") is not None:
            value = cls._parse_activity_keyword(parser)
            parser.parse_punctuation(">")
            return value
        return cls._parse_activity_keyword(parser)

    @staticmethod
    def _parse_activity_keyword(parser: AttrParser) -> Activity:
        pos = parser.pos
        word = parser.parse_identifier()
        try:
            return Activity(word)
        except ValueError:
            parser.raise_error(
                f"unknown activity '{word}', expected one of "
                + ", ".join(a.value for a in Activity),
                pos,
            )

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string(f"<{self.data.value}>")


#: Argument activities that carry shadows (``width`` of them in batch mode).
SHADOWED = (Activity.DUP, Activity.DUPNONEED)
#: Return activities that take a seed in reverse mode.
SEEDED = (Activity.ACTIVE, Activity.ACTIVENONEED)


@dataclass(frozen=True)
class DerivativeSignature:
    """What one derivative function is: its argument and return activities, its batch
    ``width`` and its ``mode`` (``"forward"``: ``fwddiffe<f>``, ``"reverse"``:
    ``diffe<f>``).

    It is the one description of a derivative's operand and result layout that the
    ``enzyme`` ops, the AD generators (``compiler/ad``), the call rules and the runtime
    (``isozyme.calls``) share.  The layout is Enzyme-MLIR's, with ``width`` shadows,
    seeds and gradients where Enzyme-MLIR has one:

    * forward: operands: per argument its primal, then ``width`` shadows when it is
      ``enzyme_dup``/``enzyme_dupnoneed``; results: per return value its primal unless
      the activity ends in ``noneed``, then ``width`` shadows when it is
      ``enzyme_dup``/``enzyme_dupnoneed`` (lane by lane).
    * reverse: operands: per argument its primal and ``width`` shadows when shadowed;
      then per ``enzyme_active``/``enzyme_activenoneed`` return ``width`` seeds;
      results: the primal of each ``enzyme_active``/``enzyme_const`` return, then per
      ``enzyme_active`` argument ``width`` gradients.
    """

    activities: tuple[Activity, ...]
    ret_activities: tuple[Activity, ...]
    width: int = 1
    mode: str = "forward"

    def __post_init__(self) -> None:
        object.__setattr__(self, "activities", tuple(self.activities))
        object.__setattr__(self, "ret_activities", tuple(self.ret_activities))
        if self.mode not in ("forward", "reverse"):
            raise ValueError(f"mode must be 'forward' or 'reverse', not {self.mode!r}")
        if self.width < 1:
            raise ValueError(f"width must be at least 1, not {self.width}")

    @property
    def reverse(self) -> bool:
        """Whether this is a reverse-mode (``diffe``) signature."""
        return self.mode == "reverse"

    @property
    def prefix(self) -> str:
        """Enzyme's name prefix of the generated function."""
        return "diffe" if self.reverse else "fwddiffe"

    def operand_types(
        self, arg_types: Sequence[Attribute], result_types: Sequence[Attribute]
    ) -> list[Attribute]:
        """The derivative function's operand types."""
        ins: list[Attribute] = []
        for t, a in zip(arg_types, self.activities, strict=True):
            ins.append(t)
            if a in SHADOWED:
                ins += [t] * self.width
        if self.reverse:
            for t, a in zip(result_types, self.ret_activities, strict=True):
                if a in SEEDED:
                    ins += [t] * self.width
        return ins

    def result_types(
        self, arg_types: Sequence[Attribute], result_types: Sequence[Attribute]
    ) -> list[Attribute]:
        """The derivative function's result types."""
        outs: list[Attribute] = []
        if self.reverse:
            outs += [t for t, a in zip(result_types, self.ret_activities, strict=True)
                     if a in (Activity.ACTIVE, Activity.CONST)]
            for t, a in zip(arg_types, self.activities, strict=True):
                if a is Activity.ACTIVE:
                    outs += [t] * self.width
            return outs
        for t, a in zip(result_types, self.ret_activities, strict=True):
            if a in (Activity.DUP, Activity.CONST):
                outs.append(t)
            if a in SHADOWED:
                outs += [t] * self.width
        return outs

    def split_forward_results(self, results: Sequence) -> tuple[list, list[list]]:
        """The results of a forward-mode derivative call, as :meth:`result_types` lays
        them out: the primals it returns, and per differentiated return value its
        ``width`` tangents."""
        assert not self.reverse
        primals: list = []
        tangents: list[list] = []
        k = 0
        for act in self.ret_activities:
            if act in (Activity.DUP, Activity.CONST):
                primals.append(results[k])
                k += 1
            if act in SHADOWED:
                tangents.append(list(results[k : k + self.width]))
                k += self.width
        return primals, tangents

    @staticmethod
    def return_activity(reverse: bool, differentiated: bool, primal_needed: bool) -> Activity:
        """The activity of one return value: differentiated (a tangent in forward mode,
        a seed in reverse mode) or not, with or without its primal."""
        if not differentiated:
            return Activity.CONST if primal_needed else Activity.CONSTNONEED
        if reverse:
            return Activity.ACTIVE if primal_needed else Activity.ACTIVENONEED
        return Activity.DUP if primal_needed else Activity.DUPNONEED

    @classmethod
    def of(cls, op: "_DiffOpBase") -> "DerivativeSignature":
        """The signature an ``enzyme.fwddiff``/``enzyme.autodiff`` op requests."""
        return cls(
            tuple(op.activities), tuple(op.ret_activities), op.batch_width,
            "reverse" if isinstance(op, AutoDiffOp) else "forward",
        )


@irdl_attr_definition
class CacheType(ParametrizedAttribute, TypeAttribute):
    """``!enzyme.Cache<T>``: a LIFO stack of values of type T (Enzyme-MLIR's type)."""

    name = "enzyme.Cache"
    type: Attribute = param_def()

    def __init__(self, element_type: Attribute):
        super().__init__(element_type)


@irdl_attr_definition
class GradientType(ParametrizedAttribute, TypeAttribute):
    """``!enzyme.Gradient<T>``: one mutable value of type T, e.g. the adjoint of a value
    that reverse mode accumulates across regions (Enzyme-MLIR's type)."""

    name = "enzyme.Gradient"
    basetype: Attribute = param_def()

    def __init__(self, basetype: Attribute):
        super().__init__(basetype)


def _print_diff_op(op: "_DiffOpBase", printer: Printer) -> None:
    printer.print_string(" ")
    printer.print_attribute(op.fn)
    printer.print_string("(")
    printer.print_list(op.inputs, printer.print_operand)
    printer.print_string(") <{activity = ")
    printer.print_attribute(op.activity)
    printer.print_string(", ret_activity = ")
    printer.print_attribute(op.ret_activity)
    if op.width is not None:
        printer.print_string(", width = ")
        printer.print_attribute(op.width)
    printer.print_string("}>")
    if op.attributes:
        printer.print_op_attributes(op.attributes)
    printer.print_string(" : ")
    printer.print_attribute(
        FunctionType.from_lists(
            [v.type for v in op.inputs], [r.type for r in op.outputs]
        )
    )


_DIFF_KEYS = ("activity", "ret_activity", "width")


def _parse_diff_op(cls: type["_DiffOpBase"], parser: Parser) -> "_DiffOpBase":
    fn = parser.parse_attribute()
    if not isinstance(fn, SymbolRefAttr):
        parser.raise_error("expected a function symbol such as @f")
    unresolved = parser.parse_comma_separated_list(
        parser.Delimiter.PAREN, parser.parse_unresolved_operand
    )
    props: dict[str, Attribute] = {}
    if parser.parse_optional_punctuation("<") is not None:
        if parser.parse_optional_punctuation("{") is not None:
            props.update(_parse_key_values(parser, "}"))
            parser.parse_punctuation(">")
        else:
            props.update(_parse_key_values(parser, ">"))
    attrs = parser.parse_optional_attr_dict()
    for key in _DIFF_KEYS:
        if key in attrs:
            props[key] = attrs.pop(key)
    parser.parse_punctuation(":")
    ftype = parser.parse_function_type()
    operands = parser.resolve_operands(unresolved, ftype.inputs.data, parser.pos)
    if "activity" not in props or "ret_activity" not in props:
        parser.raise_error(f"{cls.name} needs both 'activity' and 'ret_activity'")
    width = props.get("width")
    op = cls(
        fn,
        operands,
        list(ftype.outputs.data),
        props["activity"],  # type: ignore[arg-type]
        props["ret_activity"],  # type: ignore[arg-type]
        width,  # type: ignore[arg-type]
    )
    op.attributes.update(attrs)
    return op


def _parse_key_values(parser: Parser, closing: str) -> dict[str, Attribute]:
    """Parse ``key = attr, key = attr`` up to and including ``closing``."""
    result: dict[str, Attribute] = {}
    if parser.parse_optional_punctuation(closing) is not None:  # type: ignore[arg-type]
        return result
    while True:
        key = parser.parse_identifier()
        parser.parse_punctuation("=")
        result[key] = parser.parse_attribute()
        if parser.parse_optional_punctuation(",") is None:
            break
    parser.parse_punctuation(closing)  # type: ignore[arg-type]
    return result


class _DiffOpBase(IRDLOperation):
    """Shared definition of the two differentiation requests."""

    fn = prop_def(FlatSymbolRefAttrConstr)
    inputs = var_operand_def()
    outputs = var_result_def()
    activity = prop_def(ArrayAttr[ActivityAttr])
    ret_activity = prop_def(ArrayAttr[ActivityAttr])
    width = opt_prop_def(IntegerAttr)

    def __init__(
        self,
        fn: str | SymbolRefAttr,
        inputs: Sequence[SSAValue],
        result_types: Sequence[Attribute],
        activity: Sequence[Activity] | ArrayAttr[ActivityAttr],
        ret_activity: Sequence[Activity] | ArrayAttr[ActivityAttr],
        width: int | IntegerAttr | None = None,
    ):
        if isinstance(fn, str):
            fn = SymbolRefAttr(fn)
        if not isinstance(activity, ArrayAttr):
            activity = ArrayAttr([ActivityAttr(a) for a in activity])
        if not isinstance(ret_activity, ArrayAttr):
            ret_activity = ArrayAttr([ActivityAttr(a) for a in ret_activity])
        props: dict[str, Attribute] = {
            "fn": fn,
            "activity": activity,
            "ret_activity": ret_activity,
        }
        if isinstance(width, int):
            width = IntegerAttr(width, i64)
        if width is not None:
            props["width"] = width
        super().__init__(
            operands=[inputs], result_types=[result_types], properties=props
        )

    @property
    def activities(self) -> list[Activity]:
        """The argument activities as enum values."""
        return [a.data for a in self.activity.data]

    @property
    def ret_activities(self) -> list[Activity]:
        """The return activities as enum values."""
        return [a.data for a in self.ret_activity.data]

    @property
    def batch_width(self) -> int:
        """Batch width (1 unless ``width`` is given)."""
        return 1 if self.width is None else self.width.value.data

    @property
    def signature(self) -> DerivativeSignature:
        """The derivative signature this op requests."""
        return DerivativeSignature.of(self)

    def verify_(self) -> None:
        sig = self.signature
        if len(sig.activities) != len(self.activities):  # pragma: no cover
            raise VerifyException("activity list mismatch")
        n_shadowed = sum(a in SHADOWED for a in sig.activities)
        n_seeded = sum(a in SEEDED for a in sig.ret_activities) if sig.reverse else 0
        expected = len(sig.activities) + sig.width * (n_shadowed + n_seeded)
        if len(self.inputs) != expected:
            raise VerifyException(
                f"{self.name} with {len(sig.activities)} argument activities and width "
                f"{sig.width} takes {expected} operands, got {len(self.inputs)}"
            )

    def print(self, printer: Printer) -> None:
        _print_diff_op(self, printer)

    @classmethod
    def parse(cls, parser: Parser):
        return _parse_diff_op(cls, parser)


@irdl_op_definition
class ForwardDiffOp(_DiffOpBase):
    """``enzyme.fwddiff``: forward-mode derivative of ``fn`` at the given operands.

    The AD pass replaces it by a ``func.call`` of the generated ``fwddiffe<fn>``.
    """

    name = "enzyme.fwddiff"

    def verify_(self) -> None:
        super().verify_()
        for a in self.activities:
            if a in (Activity.ACTIVE, Activity.ACTIVENONEED):
                raise VerifyException(
                    "enzyme.fwddiff arguments cannot be enzyme_active; use enzyme_dup"
                )


@irdl_op_definition
class AutoDiffOp(_DiffOpBase):
    """``enzyme.autodiff``: reverse-mode derivative of ``fn`` at the given operands.

    The AD pass replaces it by a ``func.call`` of the generated ``diffe<fn>``.
    """

    name = "enzyme.autodiff"


def _parse_init(parser: Parser) -> Operation:
    """The custom form of both inits: ``enzyme.init attr-dict : !enzyme.Cache<T>`` or
    ``... : !enzyme.Gradient<T>``; the result type picks the op class."""
    attrs = parser.parse_optional_attr_dict()
    parser.parse_punctuation(":")
    pos = parser.pos
    t = parser.parse_type()
    if not isinstance(t, (CacheType, GradientType)):
        parser.raise_error(
            f"enzyme.init makes a !enzyme.Cache<T> or a !enzyme.Gradient<T>, not {t}", pos
        )
    op = InitOp.create(result_types=[t])
    op.attributes.update(attrs)
    return op


def _print_init(op: Operation, printer: Printer) -> None:
    printer.print_op_attributes(op.attributes)
    printer.print_string(" : ")
    printer.print_attribute(op.results[0].type)


@irdl_op_definition
class InitOp(IRDLOperation):
    """``enzyme.init``: create an empty cache (a LIFO stack) of one value type.

    Parsing ``enzyme.init`` with a ``!enzyme.Gradient<T>`` result (custom or generic
    form) gives a :class:`GradientInitOp` instead (see the module docstring)."""

    name = "enzyme.init"
    result = result_def(CacheType)

    def __init__(self, element_type: Attribute):
        super().__init__(result_types=[CacheType(element_type)])

    @classmethod
    def create(cls, **kwargs: Any) -> Any:  # type: ignore[override]
        """``Operation.create``, which the generic parser and ``clone`` call, with the
        class chosen by the result type: a gradient's init is a ``GradientInitOp``."""
        if cls is InitOp and any(
            isinstance(t, GradientType) for t in kwargs.get("result_types", ())
        ):
            return GradientInitOp.create(**kwargs)
        return super().create(**kwargs)

    @classmethod
    def parse(cls, parser: Parser) -> Operation:  # type: ignore[override]
        return _parse_init(parser)

    def print(self, printer: Printer) -> None:
        _print_init(self, printer)


@irdl_op_definition
class GradientInitOp(IRDLOperation):
    """``enzyme.init`` of a ``!enzyme.Gradient<T>``: create one mutable ``T`` slot
    (Enzyme-MLIR's gradient), zero until the first ``enzyme.set``.

    Not registered by name (``enzyme.init`` is :class:`InitOp`'s): the parser builds it
    through :meth:`InitOp.create` when the result is a gradient."""

    name = "enzyme.init"
    result = result_def(GradientType)

    def __init__(self, basetype: Attribute):
        super().__init__(result_types=[GradientType(basetype)])

    @classmethod
    def parse(cls, parser: Parser) -> Operation:  # type: ignore[override]
        return _parse_init(parser)

    def print(self, printer: Printer) -> None:
        _print_init(self, printer)


@irdl_op_definition
class PushOp(IRDLOperation):
    """``enzyme.push``: push a value of the forward sweep onto a cache."""

    name = "enzyme.push"
    cache = operand_def(CacheType)
    value = operand_def()
    assembly_format = "$cache `,` $value attr-dict `:` type($cache) `,` type($value)"

    def __init__(self, cache: SSAValue, value: SSAValue):
        super().__init__(operands=[cache, value])


@irdl_op_definition
class PopOp(IRDLOperation):
    """``enzyme.pop``: pop the most recently pushed value of a cache (reverse sweep)."""

    name = "enzyme.pop"
    cache = operand_def(CacheType)
    result = result_def()
    assembly_format = "$cache attr-dict `:` functional-type($cache, $result)"

    def __init__(self, cache: SSAValue):
        assert isinstance(cache.type, CacheType)
        super().__init__(operands=[cache], result_types=[cache.type.type])


@irdl_op_definition
class CacheFreeOp(IRDLOperation):
    """``enzyme.cache_free`` (isozyme): release a cache's storage once it is empty."""

    name = "enzyme.cache_free"
    cache = operand_def(CacheType)
    assembly_format = "$cache attr-dict `:` type($cache)"

    def __init__(self, cache: SSAValue):
        super().__init__(operands=[cache])


@irdl_op_definition
class SetOp(IRDLOperation):
    """``enzyme.set``: overwrite the value held by a gradient."""

    name = "enzyme.set"
    gradient = operand_def(GradientType)
    value = operand_def()
    assembly_format = (
        "$gradient `,` $value attr-dict `:` type($gradient) `,` type($value)"
    )

    def __init__(self, gradient: SSAValue, value: SSAValue):
        super().__init__(operands=[gradient, value])

    def verify_(self) -> None:
        t = self.gradient.type
        assert isinstance(t, GradientType)
        if self.value.type != t.basetype:
            raise VerifyException(
                f"enzyme.set: a value of type {self.value.type} cannot be stored in a "
                f"{t}"
            )


@irdl_op_definition
class GetOp(IRDLOperation):
    """``enzyme.get``: read the value held by a gradient."""

    name = "enzyme.get"
    gradient = operand_def(GradientType)
    result = result_def()
    assembly_format = "$gradient attr-dict `:` functional-type($gradient, $result)"

    def __init__(self, gradient: SSAValue):
        assert isinstance(gradient.type, GradientType)
        super().__init__(operands=[gradient], result_types=[gradient.type.basetype])

    def verify_(self) -> None:
        t = self.gradient.type
        assert isinstance(t, GradientType)
        if self.result.type != t.basetype:
            raise VerifyException(
                f"enzyme.get: a {t} holds a {t.basetype}, not a {self.result.type}"
            )


Enzyme = Dialect(
    "enzyme",
    [ForwardDiffOp, AutoDiffOp, InitOp, PushOp, PopOp, CacheFreeOp, SetOp, GetOp],
    [ActivityAttr, CacheType, GradientType],
)
