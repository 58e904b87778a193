"""Rules are process-wide state: each test's registrations are undone after it, so a rule
a test puts on a library function (``math.expm1``, ``np.arcsinh``) cannot change the
derivatives of the tests that run later."""

import pytest

from isozyme.rules import registry


@pytest.fixture(autouse=True)
def _restore_rules():
    with registry._LOCK:
        before = {k: list(v) for k, v in registry._REGISTRY.items()}
    yield
    with registry._LOCK:
        changed = {k: list(v) for k, v in registry._REGISTRY.items()} != before
        if changed:
            registry._REGISTRY.clear()
            registry._REGISTRY.update(before)
    if changed:
        registry._invalidate()
