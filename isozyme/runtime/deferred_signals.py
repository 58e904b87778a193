"""SIGINT deferred while compiled code runs chunks of a parallel loop.

The CPU worker pool's dispatcher (:mod:`isozyme.runtime.thread_pool`) is a ``ctypes``
callback called by compiled code. An exception cannot leave it (``ctypes`` prints and
drops it and the compiled code goes on with a wrong chunk count), and it must not return
before every worker has finished its chunk (the workers read the caller's stack). So
while a dispatch runs, a Ctrl-C (SIGINT, delivered to the main thread) is only recorded;
the entry callable that called the compiled code delivers it, to the handler that was
installed, as soon as the native call has returned (:func:`deliver`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Recorded SIGINTs, each with the handler to deliver it to (empty: nothing pending).
PENDING: list[Any] = []


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Record SIGINT instead of handling it in the ``with`` block (on the main thread,
    whose Python handler is the one SIGINT runs; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # SIG_IGN / SIG_DFL / None: nothing Python would run
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: PENDING.append(previous))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def deliver() -> None:
    """Run the handler of each SIGINT recorded during the last native call (the default
    one raises KeyboardInterrupt)."""
    while PENDING:
        handler = PENDING.pop(0)
        PENDING.clear()  # one Ctrl-C is enough: the first handler usually raises
        handler(signal.SIGINT, None)
