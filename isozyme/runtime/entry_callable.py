"""The fast Python callables of compiled entry points (:func:`make_entry_callable`).

They are generated Python functions specialised to the signature, packing arguments
with one precompiled ``struct.Struct.pack_into`` into a preallocated buffer and reading
results with one ``unpack_from``, which returns the result tuple directly. Measured on
a 2-argument f64 function: about 0.34 us per call; indexing ``ctypes`` double arrays is
within 0.03 us of it but needs one view per type and one index per result, passing the
ctypes arrays themselves costs 0.45 us.

Argument types and memref descriptors are :mod:`isozyme.runtime.marshal`; memref
results become owning numpy arrays in :mod:`isozyme.runtime.result_arrays`.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from isozyme.runtime.marshal import (
    _SLOT_CODES,
    MemrefSpec,
    _as_array,
    _bad_layout,
    _memref_lines,
    descriptor_struct,
)
from isozyme.compiler.lowering.convert_gpu_launch_to_llvm import DRIVER_FAILURE
from isozyme.host_calls import host_failure
from isozyme.runtime.cuda_errors import driver_failure
from isozyme.runtime.deferred_signals import PENDING, deliver
from isozyme.runtime.result_arrays import make_result_wrapper

#: ``(kind, message, n_values)`` per check id (id ``k`` at index ``k - 1``), as
#: ``isozyme.compiler.lowering.convert_check_to_llvm.check_table`` reads it.
CheckTable = Sequence[tuple[str, str, int]]


def _error_class(kind: str) -> type[Exception]:
    """The isozyme error a failing check of ``kind`` raises."""
    from isozyme import errors  # noqa: PLC0415
    from isozyme.dialects.check import CHECK_KINDS  # noqa: PLC0415

    return getattr(errors, CHECK_KINDS.get(kind, "UnsupportedError"))


def status_words(checks: CheckTable) -> int:
    """8-byte words of the status record after the results: the failed check's id and
    the most values any check reports (0 without checks)."""
    return 1 + max(n for _, _, n in checks) if checks else 0


def make_check_failure(checks: CheckTable, status_slot: int) -> Callable[[Any], None]:
    """The function raising the error of the check whose id the status record of an
    out buffer (from 8-byte slot ``status_slot`` on) names, with its values."""
    size = status_words(checks)

    def fail(out_buf: ctypes.Array) -> None:
        record = (ctypes.c_int64 * size).from_buffer(out_buf, 8 * status_slot)
        code = record[0]
        if not 1 <= code <= len(checks):
            raise RuntimeError(f"isozyme runtime: bad check status {code}")
        kind, message, n = checks[code - 1]
        if message.startswith(DRIVER_FAILURE):
            raise driver_failure(message, record[1])
        if kind == "host":  # the Python function's exception, kept by the callback
            raise host_failure(message, record[1])
        raise _error_class(kind)(message.format(*record[1 : 1 + n]))

    return fail


#: ctypes signature of every entry point: ``void (*)(void *in, void *out)``.
#: ``CFUNCTYPE`` releases the GIL during the call (long loops do not block other
#: threads); ``PYFUNCTYPE`` would save about 0.03 us per call but hold the GIL.
_ENTRY_FNTYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _out_code(t: str | MemrefSpec) -> str:
    """The ``struct`` codes of one result's out slots (3 + 2r for a memref)."""
    if isinstance(t, MemrefSpec):
        return "QQq" + "q" * (2 * t.rank)
    return _SLOT_CODES[t]


def make_entry_callable(
    address: int,
    arg_types: Sequence[str | MemrefSpec],
    result_types: Sequence[str | MemrefSpec],
    keepalive: object = None,
    checks: CheckTable = (),
    result_owner: Callable[[int], object] | None = None,
    result_array: Callable[[Any], Any] | None = None,
) -> Callable[..., tuple[Any, ...]]:
    """Build the fast Python wrapper of the entry point at ``address``.

    The wrapper's source is generated for the exact arity so a call is: one
    ``pack_into``, one ctypes call with two preconverted pointers, one ``unpack_from``
    (plus, per memref argument, a few attribute reads and checks). The buffers come
    from a per-callable pool for the duration of the call, so concurrent calls from
    several threads do not share them.
    ``keepalive`` is referenced from the wrapper so the compiled code outlives it.

    The descriptors of memref arguments are ctypes structures
    (:func:`descriptor_struct`) placed in the input buffer after the slots, so the
    one ``pack_into`` fills the slots (descriptor addresses) and the descriptors.

    ``checks``: the run-time checks of the module (empty when it has none). The entry
    then writes a status record after the result slots; the wrapper tests its first
    slot after the call (one integer test) and raises the failing check's error
    before reading any result.

    ``result_owner``/``result_array``: see
    :func:`isozyme.runtime.result_arrays.make_result_wrapper` (device memory).
    """
    slots_codes = "".join(
        "Q" if isinstance(t, MemrefSpec) else _SLOT_CODES[t] for t in arg_types
    )
    slots_size = struct.calcsize("<" + slots_codes)
    desc_codes = "".join(
        "QQq" + "q" * (2 * t.rank) for t in arg_types if isinstance(t, MemrefSpec)
    )
    in_struct = struct.Struct("<" + slots_codes + desc_codes)
    out_struct = struct.Struct("<" + "".join(_out_code(t) for t in result_types))
    # At least one byte each so the buffers have an address; 8-byte aligned.
    in_words = max((in_struct.size + 7) // 8, 1)
    out_slots = (out_struct.size + 7) // 8
    status_size = status_words(checks)
    out_words = max(out_slots + status_size, 1)
    memrefs = [(k, t) for k, t in enumerate(arg_types) if isinstance(t, MemrefSpec)]

    def new_buffers() -> tuple[Any, ...]:
        """One set of call buffers: ``(in_buf, out_buf, in_ptr, out_ptr, status,
        descriptor addresses...)``. The descriptors of memref arguments are ctypes
        structures in ``in_buf`` after the slots."""
        in_buf = (ctypes.c_int64 * in_words)()
        out_buf = (ctypes.c_int64 * out_words)()
        addresses = []
        offset = slots_size
        for _, t in memrefs:
            desc = descriptor_struct(t.rank).from_buffer(in_buf, offset)
            offset += ctypes.sizeof(desc)
            addresses.append(ctypes.addressof(desc))
        status = (
            ctypes.c_int64.from_buffer(out_buf, 8 * out_slots) if checks else None
        )
        return (
            in_buf, out_buf,
            # ctypes converts a c_void_p argument fastest from a c_void_p object.
            ctypes.c_void_p(ctypes.addressof(in_buf)),
            ctypes.c_void_p(ctypes.addressof(out_buf)),
            status, *addresses,
        )

    # Buffers are taken from a pool for the duration of a call (list.pop and append
    # are atomic), so threads calling the same function at once each use their own:
    # the compiled code runs without the GIL.
    pool = [new_buffers()]
    fn = _ENTRY_FNTYPE(address)
    names = [f"a{i}" for i in range(len(arg_types))]
    params = ", ".join(names)
    namespace: dict[str, Any] = {
        "pack_into": in_struct.pack_into,
        "unpack_from": out_struct.unpack_from,
        "pop": pool.pop,
        "push": pool.append,
        "new_buffers": new_buffers,
        "fn": fn,
        "ndarray": np.ndarray,
        "as_array": _as_array,
        "bad_layout": _bad_layout,
        "from_address": ctypes.c_void_p.from_address,
    }
    desc_names = "".join(f", D{k}" for k, _ in memrefs)
    lines = [
        f"def entry({params}):",
        "    try:",
        "        B = pop()",
        "    except IndexError:",
        "        B = new_buffers()",
        f"    in_buf, out_buf, in_ptr, out_ptr, status{desc_names} = B",
    ]
    slot_values: list[str] = []
    desc_values: list[str] = []
    for k, t in enumerate(arg_types):
        if isinstance(t, MemrefSpec):
            arg_lines, fields = _memref_lines(k, t, namespace)
            lines += arg_lines
            desc_values += fields
            slot_values.append(f"D{k}")
        else:
            slot_values.append(names[k])
    if arg_types:
        values = ", ".join(slot_values + desc_values)
        lines.append(f"    pack_into(in_buf, 0, {values})")
    lines.append("    fn(in_ptr, out_ptr)")
    # a Ctrl-C the worker pool deferred while the code ran (deferred_signals)
    namespace["pending_signals"] = PENDING
    namespace["deliver_signals"] = deliver
    lines.append("    if pending_signals:")
    lines.append("        try:")
    lines.append("            deliver_signals()")
    lines.append("        except BaseException:")
    lines.append("            push(B)")
    lines.append("            raise")
    if checks:
        namespace["check_failed"] = make_check_failure(checks, out_slots)
        # read the status record before the buffers go back to the pool: another
        # thread may take them the moment they are there
        lines.append("    if status.value:")
        lines.append("        try:")
        lines.append("            check_failed(out_buf)")
        lines.append("        finally:")
        lines.append("            push(B)")
    if any(isinstance(t, MemrefSpec) for t in result_types):
        namespace["wrap"] = make_result_wrapper(result_types, result_owner, result_array)
        arg_owners = "".join(
            f"p{k}, x{k}, " for k, t in enumerate(arg_types) if isinstance(t, MemrefSpec)
        )
        lines.append("    r = unpack_from(out_buf)")
        lines.append("    push(B)")
        lines.append(f"    return wrap(r, ({arg_owners}))")
    elif result_types:
        lines.append("    r = unpack_from(out_buf)")
        lines.append("    push(B)")
        lines.append("    return r")
    else:
        lines.append("    push(B)")
        lines.append("    return ()")
    source = "\n".join(lines)
    exec(compile(source, f"<isozyme entry {address:#x}>", "exec"), namespace)
    entry = namespace["entry"]
    entry._iz_keepalive = (keepalive, fn, pool)  # type: ignore[attr-defined]
    entry._iz_source = source  # type: ignore[attr-defined]
    shown = [t.text if isinstance(t, MemrefSpec) else t for t in arg_types]
    shown_r = [t.text if isinstance(t, MemrefSpec) else t for t in result_types]
    entry.__doc__ = f"isozyme entry ({', '.join(shown)}) -> ({', '.join(shown_r)})"
    return entry
