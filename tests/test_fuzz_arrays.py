"""Property test: random whole-array numpy programs give numpy's answer (result and the
final contents of every argument) and derivatives that match central differences in
Forward and Reverse mode (issue 6, item 9).

The programs come from :mod:`tests.fuzz_arrays`: shapes with dimensions of size 1 and
0, broadcasting (also over dimensions that are 1 only at run time), views (``.T``,
``[:, None]``, ``reshape``, ``ravel``, slices with negative steps), reductions and
in-place writes, directly and through views.  Each hypothesis example is one program,
checked under 8 size assignments with 3 draws of values each, so an example of
hypothesis is 24 (program, inputs) examples and a few compilations per mode (one per
pattern of size-1 dimensions).

Hypothesis draws each program's seed (derandomized: the same seeds in every run); the
program and its inputs come from that seed exactly as in the command line, so a failure
prints the command that reproduces and reduces it.  ``ISOZYME_FUZZ_EXAMPLES`` (default
2000) sets the number of (program, inputs) examples.  ``python -m tests.fuzz_arrays
--examples 5000 --seed 1`` runs more programs by hand, each in a forked child, and prints
every distinct mismatch.
"""

import collections
import math
import os

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_arrays import (ASSIGNMENTS, VALUES_PER_ASSIGNMENT, Mismatch, RandomChooser,
                               check_program, generate, summary)

# 1000 random programs in CI (about 95 s on 2 cores); more with the variable or the CLI
EXAMPLES = int(os.environ.get("ISOZYME_FUZZ_EXAMPLES", "1000"))
PER_PROGRAM = ASSIGNMENTS * VALUES_PER_ASSIGNMENT
# shrinking a seed gives another program, not a smaller one: the CLI's --reduce does that
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
# a harness whose programs isozyme mostly refuses tests nothing: keep refusals a minority
MAX_REFUSED = 0.5


def test_random_array_programs_match_numpy_and_finite_differences(tmp_path_factory):
    stats: collections.Counter = collections.Counter()
    directory = tmp_path_factory.mktemp("fuzz_arrays")

    @settings(derandomize=True, database=None, deadline=None, phases=PHASES,
              max_examples=math.ceil(EXAMPLES / PER_PROGRAM),
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.integers(0, 2**31 - 1))
    def check(seed: int) -> None:
        # hypothesis picks the seeds; the program comes from python's random, as in the
        # command line, so that a failure is reproduced and reduced from its seed alone
        program = generate(RandomChooser(seed), ASSIGNMENTS)
        try:
            check_program(program, seed, stats, directory)
        except Mismatch as err:
            raise Mismatch(f"{err}\n--- reduce it with ---\npython -m tests.fuzz_arrays "
                           f"--seed {seed} --examples 1 --reduce") from None

    check()
    report = summary(stats)
    print(report)
    checked = sum(v for k, v in stats.items() if k != "rejected")
    refused = sum(v for k, v in stats.items() if k.startswith("refused"))
    assert checked >= 0.9 * EXAMPLES, report
    assert refused <= MAX_REFUSED * checked, report
