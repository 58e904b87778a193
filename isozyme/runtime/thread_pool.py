"""The CPU target's worker pool: ``__iz_parallel_for``, the dispatcher that compiled code
calls to run the outermost parallel loops on several threads.

The ``outline-parallel-loops-cpu`` pass outlines the body of each outermost
``scf.parallel`` into a function of a chunk ``[lo, hi)`` of the loop's first dimension,
and ``convert-parallel-dispatch-to-llvm`` gives it a trampoline with one signature for
every loop::

    void tramp(void *ctx, int64_t lo, int64_t hi, int64_t *status, int64_t chunk)

(``ctx``: the addresses of the loop's live-in values; ``status``: a check status record
of ``n_slots`` 8-byte slots, or null when the body has no run-time check).  The compiled
code then calls::

    int64_t __iz_parallel_for(tramp, ctx, lo, hi, status, n_slots)

which this module defines as a ``ctypes`` callback and binds in LLVM's symbol table
(``llvmlite.binding.add_symbol``) when it is imported.  It returns the number of chunks
``n`` (at most ``MAX_CHUNKS``); chunk ``k`` of a loop with reductions stores its partial
results at index ``k`` of the loop's partials buffers, which the compiled code then
combines in chunk order.

**Why a Python pool.**  The dispatcher acquires the GIL, splits ``[lo, hi)`` into one
contiguous chunk per thread, hands all chunks but the first to persistent worker threads
and runs the first itself; each chunk runs the trampoline through ``ctypes``, which
releases the GIL, so the chunks run truly in parallel.  Measured on a quiet 2-core
machine this costs about 17 us per dispatch, 50-60 us under load (thread wake-ups),
against ~0 for a pthread pool written in LLVM IR, which would be much more code to own;
the compiled code only calls the dispatcher when the loop has enough work
(``MIN_PARALLEL_WORK`` of ``outline-parallel-loops-cpu``, tested inline before the
call), so small loops (the heat stencil's 10^4-element steps) pay nothing.  One dispatch
runs at a time: a loop reached while the workers are busy (another Python thread's call)
runs on its calling thread.

**Checks.**  Each chunk gets its own status record; after every chunk has finished the
record of the first chunk (in iteration order) that failed is copied into the caller's,
so the error reported is the one of the lowest failing iteration, as a serial run would
report it (other chunks may have written elements beyond it: the iterations of a parallel
loop have no order).

The thread count is read from :func:`isozyme.config.threads` on every dispatch.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

import llvmlite.binding as llb

from isozyme.config import threads as configured_threads
from isozyme.runtime.deferred_signals import sigint_deferred
from isozyme.compiler.lowering.convert_parallel_dispatch_to_llvm import PARALLEL_FOR_SYMBOL
from isozyme.compiler.lowering.outline_parallel_loops_cpu import MAX_CHUNKS

#: ``void tramp(void *ctx, int64_t lo, int64_t hi, int64_t *status, int64_t chunk)``.
TRAMPOLINE = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64
)
#: ``int64_t __iz_parallel_for(tramp, ctx, lo, hi, status, n_slots)``: the chunk count.
DISPATCHER = ctypes.CFUNCTYPE(
    ctypes.c_int64,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_void_p,
    ctypes.c_int64,
)

#: Test hook: when a list, every chunk appends ``(threading.get_ident(), lo, hi)``.
chunk_log: list[tuple[int, int, int]] | None = None


class _Worker(threading.Thread):
    """A daemon thread that runs one job at a time, handed over through an event."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="isozyme-parallel")
        self._wake = threading.Event()
        self._done = threading.Event()
        self._job: Callable[[], None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self._done.clear()
        self._job = job
        self._wake.set()

    def wait(self) -> None:
        self._done.wait()

    def run(self) -> None:  # noqa: D102 (threading.Thread API)
        while True:
            self._wake.wait()
            self._wake.clear()
            job, self._job = self._job, None
            try:
                if job is not None:
                    job()
            finally:
                self._done.set()


class _Pool:
    """Persistent workers; one dispatch at a time (others run serially meanwhile)."""

    def __init__(self) -> None:
        self._workers: list[_Worker] = []
        self.busy = threading.Lock()

    def workers(self, n: int) -> list[_Worker]:
        while len(self._workers) < n:
            w = _Worker()
            w.start()
            self._workers.append(w)
        return self._workers[:n]


_POOL = _Pool()


def _reset_after_fork() -> None:
    # A forked child has none of the parent's worker threads: start afresh.
    global _POOL
    _POOL = _Pool()


os.register_at_fork(after_in_child=_reset_after_fork)


def _run_chunk(fn: Callable[..., None], ctx: int, lo: int, hi: int, status: int | None,
               chunk: int) -> None:
    if chunk_log is not None:
        chunk_log.append((threading.get_ident(), lo, hi))
    fn(ctx, lo, hi, status, chunk)


def parallel_for(fn_addr: int, ctx: int, lo: int, hi: int, status: int | None, n_slots: int) -> int:
    """Run ``tramp(ctx, ·, ·, ·, k)`` over ``[lo, hi)`` in contiguous chunks ``k``, one per
    thread (see the module docstring); return the number of chunks.

    Nothing may be raised out of it (see :mod:`.deferred_signals`): a Ctrl-C is
    deferred to the end of the native call, and whatever happens every worker's chunk
    has finished before it returns."""
    with sigint_deferred():
        return _dispatch(fn_addr, ctx, lo, hi, status, n_slots)


def _wait_all(workers: list[_Worker]) -> None:
    """Wait for every worker, even through an exception (the chunks read the caller's
    stack and fill its partials: returning earlier would free them under the workers)."""
    for w in workers:
        while True:
            try:
                w.wait()
                break
            except BaseException:  # noqa: BLE001, S112 (keep waiting: see docstring)
                continue


def _dispatch(fn_addr: int, ctx: int, lo: int, hi: int, status: int | None,
              n_slots: int) -> int:
    fn = TRAMPOLINE(fn_addr)
    n = min(configured_threads(), hi - lo, MAX_CHUNKS)
    # One dispatch at a time: a second caller (another Python thread) runs its loop
    # serially rather than waiting for busy workers.
    if n <= 1 or not _POOL.busy.acquire(blocking=False):
        _run_chunk(fn, ctx, lo, hi, status, 0)
        return 1
    try:
        try:
            bounds = [lo + (hi - lo) * k // n for k in range(n + 1)]
            records = [(ctypes.c_int64 * max(n_slots, 1))() for _ in range(n)]
            addrs = [ctypes.addressof(r) if status else None for r in records]
            workers = _POOL.workers(n - 1)
        except Exception:  # noqa: BLE001 (no chunk has run: run the loop serially)
            _run_chunk(fn, ctx, lo, hi, status, 0)
            return 1
        for k, w in enumerate(workers, start=1):
            w.submit(lambda k=k: _run_chunk(fn, ctx, bounds[k], bounds[k + 1], addrs[k], k))
        try:
            _run_chunk(fn, ctx, bounds[0], bounds[1], addrs[0], 0)
        finally:
            _wait_all(workers)
    finally:
        _POOL.busy.release()
    if status:
        for r in records:
            if r[0] != 0:  # the first failing chunk, in iteration order
                ctypes.memmove(status, r, n_slots * 8)
                break
    return n


_CALLBACK = DISPATCHER(parallel_for)  # kept alive for the process
#: The dispatcher's address (what compiled code calls).
DISPATCHER_ADDRESS: int = ctypes.cast(_CALLBACK, ctypes.c_void_p).value or 0
llb.add_symbol(PARALLEL_FOR_SYMBOL, DISPATCHER_ADDRESS)
