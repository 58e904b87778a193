"""The compile-time report: how long each step of a compilation takes.

A compilation (one :func:`isozyme.autodiff` cache miss, one ``isozyme diff``) goes
through tracing, the passes of each IR stage, the target's lowering to the ``llvm``
dialect, translation to LLVM IR, LLVM's optimization pipeline and machine-code
generation.  Each of these steps runs inside :func:`phase`, which records its wall
time in the :class:`Report` of the compilation running in this thread (and does
nothing, at the cost of one context-variable read, when no report is being kept).

Reports are kept when

* the environment variable ``ISOZYME_TIMINGS=1`` is set: each compilation prints its
  report to standard error when it ends (read at each compilation, so it can be set
  from Python too);
* ``isozyme diff --timings`` runs: the report of its compilation is printed after the
  result;
* code runs inside :func:`collect`, which returns the reports of the compilations
  started in its ``with`` block (for benchmarks and tests).

Phases nest: the time of a phase includes the phases run inside it, and the report
shows each at its depth.  The report's ``total`` is the wall time of the whole
compilation; what no phase covers (building the runner, cache bookkeeping) is its
``other`` line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TextIO

__all__ = [
    "CATEGORIES",
    "Phase",
    "Report",
    "collect",
    "compilation",
    "enabled_by_env",
    "phase",
]

#: The kinds of phase, in pipeline order (the report's summary line sums each).
CATEGORIES = ("setup", "trace", "pass", "lowering", "llvm-translate", "llvm-optimize",
              "codegen", "runtime", "cache")


@dataclass
class Phase:
    """One timed step: ``name`` (e.g. ``"optimized/canonicalize"``), its ``category``
    (one of :data:`CATEGORIES`), wall ``seconds`` and nesting ``depth`` (0: directly
    inside the compilation)."""

    name: str
    category: str
    seconds: float
    depth: int
    #: whether a phase of the same category encloses it (its time is counted there)
    nested_in_same: bool = False


@dataclass
class Report:
    """The timed phases of one compilation, in the order they ended (inner phases
    before the phase that contains them)."""

    label: str
    phases: list[Phase] = field(default_factory=list)
    #: wall time of the whole compilation, set when it ends
    total: float = 0.0
    #: categories of the phases open now, outermost first
    _open: list[str] = field(default_factory=list)

    def seconds(self, category: str) -> float:
        """Seconds spent in phases of ``category`` (a phase inside another of the same
        category is counted once, in the outer one)."""
        return sum(
            p.seconds for p in self.phases if p.category == category and not p.nested_in_same
        )

    def by_name(self) -> dict[str, float]:
        """Total seconds per phase name (a pass run twice in one stage is summed)."""
        out: dict[str, float] = {}
        for p in self.phases:
            out[p.name] = out.get(p.name, 0.0) + p.seconds
        return out

    def format(self) -> str:
        """The report as text: one line per phase, in the order the phases started,
        then a summary by category."""
        ms = 1e3
        lines = [f"isozyme timings: {self.label}: {self.total * ms:.1f} ms"]
        width = max([len(p.name) + 2 * p.depth for p in self.phases] + [24])
        for p in _start_order(self.phases):
            share = 100.0 * p.seconds / self.total if self.total else 0.0
            lines.append(
                f"  {'  ' * p.depth}{p.name:<{width - 2 * p.depth}} "
                f"{p.seconds * ms:9.2f} ms {share:5.1f}%"
            )
        covered = sum(p.seconds for p in self.phases if p.depth == 0)
        lines.append(f"  {'other':<{width}} {(self.total - covered) * ms:9.2f} ms")
        summary = ", ".join(
            f"{c} {self.seconds(c) * ms:.1f} ms" for c in CATEGORIES if self.seconds(c)
        )
        lines.append(f"  by kind: {summary}")
        return "\n".join(lines)


def _start_order(phases: list[Phase]) -> list[Phase]:
    """Phases as they started: each parent (which ends after its children) moves in
    front of the run of deeper phases that ended just before it."""
    out: list[Phase] = []
    for p in phases:
        i = len(out)
        while i > 0 and out[i - 1].depth > p.depth:
            i -= 1
        out.insert(i, p)
    return out


#: The report of the compilation running in this thread / task (None: not timing).
_CURRENT: ContextVar[Report | None] = ContextVar("isozyme_timings_report", default=None)
#: The lists :func:`collect` blocks gather reports into (innermost last).
_COLLECTORS: ContextVar[tuple[list[Report], ...]] = ContextVar(
    "isozyme_timings_collectors", default=()
)


def enabled_by_env() -> bool:
    """Whether ``ISOZYME_TIMINGS`` asks for a report of every compilation."""
    value = os.environ.get("ISOZYME_TIMINGS", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


class phase:  # noqa: N801 (used as a context manager, like contextlib's)
    """Time the ``with`` block as a phase ``name`` of ``category`` in the current
    compilation's report; nothing when no report is being kept.

    A class rather than a generator: it runs once per pass of every compilation, and
    costs one context-variable read when timings are off."""

    __slots__ = ("name", "category", "_report", "_start")

    def __init__(self, name: str, category: str = "pass") -> None:
        self.name = name
        self.category = category

    def __enter__(self) -> phase:
        self._report = report = _CURRENT.get()
        if report is not None:
            report._open.append(self.category)
            self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        report = self._report
        if report is not None:
            seconds = time.perf_counter() - self._start
            report._open.pop()
            report.phases.append(Phase(self.name, self.category, seconds,
                                       len(report._open), self.category in report._open))


@contextmanager
def compilation(label: str, out: TextIO | None = None) -> Iterator[Report | None]:
    """Keep a report of the compilation run in the ``with`` block, when anyone asks
    for one (``ISOZYME_TIMINGS=1``, :func:`collect`, or ``out``: a stream to print the
    report to); yield it, or None.

    A compilation started inside another (a shape variant compiled while the first
    one finishes) gets a report of its own."""
    collectors = _COLLECTORS.get()
    to_stderr = enabled_by_env()
    if not (collectors or to_stderr or out is not None):
        token = _CURRENT.set(None)  # an enclosing report does not time this one
        try:
            yield None
        finally:
            _CURRENT.reset(token)
        return
    report = Report(label)
    token = _CURRENT.set(report)
    start = time.perf_counter()
    try:
        yield report
    finally:
        report.total = time.perf_counter() - start
        _CURRENT.reset(token)
        for sink in collectors:
            sink.append(report)
        for stream in {id(s): s for s in (out, sys.stderr if to_stderr else None)
                       if s is not None}.values():
            print(report.format(), file=stream, flush=True)


@contextmanager
def collect() -> Iterator[list[Report]]:
    """Gather the reports of the compilations started in the ``with`` block (in this
    thread or task) into the list it yields::

        with isozyme.timings.collect() as reports:
            isozyme.autodiff(isozyme.Reverse, f, isozyme.Active(1.0))
        print(reports[0].format())
        reports[0].seconds("llvm-optimize")
    """
    sink: list[Report] = []
    token = _COLLECTORS.set((*_COLLECTORS.get(), sink))
    try:
        yield sink
    finally:
        _COLLECTORS.reset(token)
