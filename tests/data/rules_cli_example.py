"""A file for ``isozyme diff``: a function with a user rule (tests/rules/test_rules_cli.py)."""

import math

from isozyme import rules


def mysin(x):
    return math.sin(x)


# deliberately three times the true derivative: the numbers show the rule was used
rules.easy_rule(mysin, lambda x: ((3.0 * math.cos(x),),))


def mysquare(x):
    y = mysin(x)
    return y * y
