"""The variables a traced loop carries (:class:`Carried`): numbers as the loop's
``iter_args``, arrays re-bound in the body in buffers (:mod:`.carried_arrays`),
variables first assigned in the body and read after it with an "assigned" flag
(:mod:`.late_values`).  ``control_flow.for_range``/``while_`` trace the body with it,
again when a carried type widens or an array turns out to be re-bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from xdsl.dialects.builtin import f64, i1
from xdsl.ir import Attribute, SSAValue

from .carried_arrays import LoopArrays
from .context import current_builder
from .diagnostics import trace_error, user_location
from .late_values import late_parts, late_value
from .tracer import (
    UNDEF,
    Tracer,
    Undefined,
    as_tracer,
    constant,
    is_array_value,
    is_number,
    join_types,
    type_and_strength,
)

State = tuple[Any, ...]


def _undefined(v: object) -> bool:
    return isinstance(v, Undefined)


def named_state(state: Sequence[Any], names: Sequence[str], where: str) -> list[Any]:
    """``state`` with each unbound variable (``UNDEF``) an :class:`Undefined` that names
    it, for the error a read of it raises."""
    return [Undefined(n, f"it has no value yet where the {where} reads it (assign it "
                         "before the loop or branch, or before this read)")
            if v is UNDEF else v for n, v in zip(names, state)]


class Carried:
    """The loop-carried variables of a traced loop and their IR types.

    Numbers are ``iter_args``; arrays re-bound in the body are carried in buffers
    (:class:`.carried_arrays.LoopArrays`).  A name first assigned in the body and read
    after the loop (``live_after``) is carried too, from a placeholder, with an ``i1``
    flag (the last ``iter_arg``) saying whether the body assigned it yet; its value is
    then a late tracer (:mod:`.late_values`) whose uses check the flag.
    """

    def __init__(self, names: Sequence[str], state: State, loop: str,
                 live_after: Sequence[str] = ()) -> None:
        self.names = list(names)
        self.loop = loop
        self.line = user_location()[1]
        self.initial = list(state)
        self.live_after = frozenset(live_after)
        self.slots: list[int] = []  # positions of carried numeric values
        self.kinds: list[tuple[Attribute, bool]] = []
        self.late: set[int] = set()  # slots first assigned in the body, read after it
        self.unobserved: set[int] = set()  # late slots whose type the body has not set
        self.dropped: set[int] = set()  # names of live_after the loop cannot carry
        # late variables of an enclosing loop passed on into this one: (value, flag)
        self.late_init: dict[int, tuple[SSAValue, SSAValue]] = {}
        for k, v in enumerate(state):
            parts = late_parts(v, self.names[k])
            if parts is not None and not is_array_value(v):
                # still maybe unassigned: carried with the enclosing loop's flag
                self.late.add(k)
                self.late_init[k] = (parts[0], parts[1])
                self.slots.append(k)
                self.kinds.append(type_and_strength(Tracer(parts[0])))
                continue
            if is_array_value(v):
                continue  # arrays re-bound in the body are carried in buffers: self.arrays
            if isinstance(v, Tracer) or is_number(v):
                self.slots.append(k)
                self.kinds.append(type_and_strength(v))
            elif _undefined(v) and self.names[k] in self.live_after:
                # carried from the first trace on (the body may read it, from the
                # previous iteration), as a float until the body shows its type
                self.late.add(k)
                self.unobserved.add(k)
                self.slots.append(k)
                self.kinds.append((f64, False))
        self.arrays = LoopArrays(self.names, self.initial, f"a {loop} (line {self.line})")

    @property
    def flags(self) -> list[int]:
        """The late variables' slots, in the order of their "assigned" flags (the last
        ``iter_args``)."""
        return sorted(self.late) + sorted(p.slot for p in self.arrays.late)

    @property
    def types(self) -> list[Attribute]:
        return [t for t, _ in self.kinds] + [i1] * len(self.flags)

    def _late(self, flags: Sequence[SSAValue], inside: bool) -> Callable[[SSAValue, str], Any]:
        why = (f"it is first assigned inside the {self.loop} at line {self.line}, and "
               + ("this iteration reads it before assigning it, in the loop's first "
                  "iteration" if inside else "the loop ran no iteration"))
        flag_of = {self.names[k]: f for k, f in zip(self.flags, flags)}
        return lambda value, name: late_value(value, flag_of[name], name, why)

    def inputs(self, args: Sequence[Any]) -> list[Any]:
        """The state inside the body: block arguments for carried values, buffers for
        carried arrays."""
        values = named_state(self.initial, self.names, self.loop)
        late = self._late(args[len(self.slots):], inside=True)
        for slot, arg in zip(self.slots, args):
            values[slot] = late(arg, self.names[slot]) if slot in self.late else Tracer(arg)
        self.arrays.bind(values, late)
        return values

    def check(self, out: Sequence[Any]) -> bool:
        """Check the body's new state; widen carried types; True if they changed."""
        changed = False
        carried = set(self.slots)
        for k, (name, before, after) in enumerate(zip(self.names, self.initial, out)):
            if is_array_value(before):
                changed = self.arrays.check(k, after) or changed
                continue
            if k in self.late:
                changed = self._check_late(k, after) or changed
                continue
            if k in self.dropped:  # a late variable the body may leave unassigned
                continue
            if _undefined(before) and name in self.live_after and k not in self.dropped \
                    and is_array_value(after):
                changed = self.arrays.check_late(k, after, current_builder().block) or changed
                continue
            if k in carried:
                if _undefined(after):
                    raise after.error()
                if is_array_value(after):
                    raise trace_error(
                        f"variable '{name}' in a {self.loop} (line {self.line})",
                        "it holds a number before the loop and an array in it; assign it "
                        "an array before the loop (e.g. np.zeros(...)) to carry an array",
                    )
                if not (isinstance(after, Tracer) or is_number(after)):
                    raise trace_error(
                        f"variable '{name}' in a {self.loop}",
                        f"it is a number before the loop and a {type(after).__name__} in it",
                    )
                i = self.slots.index(k)
                joined = join_types(self.kinds[i], type_and_strength(after))
                if joined != self.kinds[i][0]:
                    strong = self.kinds[i][1] or isinstance(after, Tracer)
                    self.kinds[i] = (joined, strong)
                    changed = True
            elif not _undefined(before) and after is not before:
                raise trace_error(
                    f"variable '{name}' in a {self.loop}",
                    f"it holds a {type(before).__name__} before the loop and the loop body "
                    "changes it; only numbers can be carried through a traced loop "
                    "(initialize it with a number before the loop)",
                )
        return changed

    def _check_late(self, k: int, after: Any) -> bool:
        """A late slot's value at the end of the body: set or widen its type, or stop
        carrying it (an array goes to a buffer; anything else, or a name assigned on
        some paths only, is undefined after the loop as before); True to trace again."""
        i = self.slots.index(k)
        if isinstance(after, Tracer) and not is_array_value(after) or is_number(after):
            kind = type_and_strength(after)
            if k in self.unobserved:
                self.unobserved.discard(k)
                if kind[0] != self.kinds[i][0]:
                    self.kinds[i] = kind
                    return True
                self.kinds[i] = kind
                return False
            joined = join_types(self.kinds[i], kind)
            if joined != self.kinds[i][0]:
                self.kinds[i] = (joined, self.kinds[i][1] or isinstance(after, Tracer))
                return True
            return False
        del self.slots[i], self.kinds[i]
        self.late.discard(k)
        self.unobserved.discard(k)
        if is_array_value(after):  # an array: carried in a buffer from the next trace on
            self.arrays.check_late(k, after, current_builder().block)
        else:
            self.dropped.add(k)
        return True

    def yields(self, out: Sequence[Any]) -> list[Tracer]:
        """The carried values of ``out`` converted to the carried types, then the late
        variables' flags (a late variable the body passed on keeps its flag)."""
        values = []
        for slot, t in zip(self.slots, self.types):
            parts = late_parts(out[slot], self.names[slot]) if slot in self.late else None
            values.append(as_tracer(Tracer(parts[0]) if parts else out[slot], t))
        flags = []
        for slot in self.flags:
            parts = late_parts(out[slot], self.names[slot])
            flags.append(Tracer(parts[1]) if parts else constant(True, i1))
        return values + flags

    def init_values(self) -> list[Tracer]:
        """The carried values before the loop, converted to the carried types (a zero
        placeholder for a late variable), and the late variables' flags (false)."""
        values = [as_tracer(Tracer(self.late_init[slot][0]) if slot in self.late_init
                            else 0 if slot in self.late else self.initial[slot], t)
                  for slot, t in zip(self.slots, self.types)]
        return values + [Tracer(self.late_init[slot][1]) if slot in self.late_init
                         else constant(False, i1) for slot in self.flags]

    def results(self, results: Sequence[Any], first_assigned: str) -> State:
        """The state after the loop: results for carried values, buffers for carried
        arrays, Undefined for names first assigned in the body (late tracers for those
        read after it)."""
        out = list(self.initial)
        late = self._late(results[len(self.slots):], inside=False)
        for slot, r in zip(self.slots, results):
            out[slot] = late(r, self.names[slot]) if slot in self.late else Tracer(r)
        self.arrays.bind(out, late)
        for k in self.dropped:  # (an enclosing loop's late value is stale after it)
            out[k] = UNDEF
        for k, v in enumerate(out):
            if _undefined(v):
                out[k] = Undefined(
                    self.names[k],
                    f"it is {first_assigned} the {self.loop} at line {self.line}, so it has "
                    "no value after the loop; assign it before the loop",
                )
        return tuple(out)
