"""GradBench's ba, ht, kmeans, particle, saddle, ode, lstm, gmm and det evals written
with isozyme.

Import as ``gradbench`` with ``benchmarks/`` on ``sys.path`` (``run.py`` and the tests
do this): the name ``benchmarks`` itself is taken by a package in the environment.
"""
