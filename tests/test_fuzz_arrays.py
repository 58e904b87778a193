"""Property test: random whole-array numpy programs give numpy's answer (result and the
final contents of every argument) and derivatives that match central differences in
Forward and Reverse mode (issue 6, item 9).

The programs come from :mod:`tests.fuzz_arrays`: shapes with dimensions of size 1 and
0, broadcasting (also over dimensions that are 1 only at run time), views (``.T``,
``[:, None]``, ``reshape``, ``ravel``, slices with negative steps), reductions and
in-place writes, directly and through views.  Each hypothesis example is one program,
checked under 8 size assignments with 2 draws of values each, so an example of
hypothesis is 16 (program, inputs) examples and one compilation per mode.

``ISOZYME_FUZZ_EXAMPLES`` (default 2000) sets the number of (program, inputs) examples;
``ISOZYME_FUZZ_SHRINK=1`` lets hypothesis shrink a failing program (slow: every step
compiles).  ``python -m tests.fuzz_arrays --examples 5000`` runs more programs by hand,
each in a forked child, and prints every distinct mismatch.
"""

import collections
import math
import os
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_arrays import (ASSIGNMENTS, VALUES_PER_ASSIGNMENT, check_program, generate,
                               summary)

EXAMPLES = int(os.environ.get("ISOZYME_FUZZ_EXAMPLES", "2000"))
PER_PROGRAM = ASSIGNMENTS * VALUES_PER_ASSIGNMENT
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + (
    [Phase.shrink] if os.environ.get("ISOZYME_FUZZ_SHRINK") == "1" else [])
# a harness whose programs isozyme mostly refuses tests nothing: keep refusals a minority
MAX_REFUSED = 0.5


class DataChooser:
    """The generator's decisions drawn from hypothesis (so that it can shrink them)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, options: Sequence[Any]) -> Any:
        """One of ``options``."""
        return options[self.data.draw(st.integers(0, len(options) - 1))]

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return self.data.draw(st.integers(lo, hi))

    def chance(self, p: float) -> bool:
        """True with probability about ``p`` (hypothesis shrinks towards True)."""
        return self.data.draw(st.integers(0, 999)) < p * 1000


def test_random_array_programs_match_numpy_and_finite_differences(tmp_path_factory):
    stats: collections.Counter = collections.Counter()
    directory = tmp_path_factory.mktemp("fuzz_arrays")

    @settings(derandomize=True, database=None, deadline=None, phases=PHASES,
              max_examples=math.ceil(EXAMPLES / PER_PROGRAM),
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        program = generate(DataChooser(data), ASSIGNMENTS)
        seed = data.draw(st.integers(0, 2**32 - 1))
        check_program(program, seed, stats, directory)  # raises Mismatch

    check()
    report = summary(stats)
    print(report)
    checked = sum(v for k, v in stats.items() if k != "rejected")
    refused = sum(v for k, v in stats.items() if k.startswith("refused"))
    assert checked >= 0.9 * EXAMPLES, report
    assert refused <= MAX_REFUSED * checked, report
