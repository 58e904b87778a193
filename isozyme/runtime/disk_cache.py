"""The disk cache of compiled CPU code: a second process skips the pipeline and LLVM.

An entry is looked up *before* the pipeline runs, by a **front key**: the sha256 of
the traced module's text after the derivative request was added, the target's name,
the settings of :func:`isozyme.config`, the ``ISOZYME_*`` environment variables, and
the :func:`environment_key` (isozyme's version and a hash of its own source files, so
an edited checkout never runs stale code; xDSL, llvmlite and LLVM versions; host CPU
name, features and triple; this file format's version).  The pipeline's spelling is
covered by the source hash and the settings (the stage pipelines are isozyme code,
the target's pass list depends only on ``config``).  Not cached, since user code that
runs after tracing is part of no key: a compilation with active custom passes
(:func:`isozyme.compiler.pipeline.extra_passes`), and a module calling a function with
a user rule (``isozyme.rules``: AD calls the rule's Python code to build it).

An entry holds the object code of the optimized LLVM module (``emit_object``), the
sha256 of the translated LLVM IR (the code's content address: entry symbols are
named after it, ``_iz_entry_f.<hash>``, so two processes' objects never clash), the
entry symbols and the run-time check table.  File layout: ``MAGIC``, a 4-byte
little-endian header length, a JSON header (format version, key, payload length and
sha256, metadata), then the payload (the object's bytes); no pickle.  Loading checks
all of it; any mismatch, truncation or malformed header deletes the entry and the
caller rebuilds it (a corrupt entry is never run).  Writes go to a temporary file in
the same directory and ``os.replace`` it, so two processes writing the same entry
both succeed and a reader sees a whole file or none.

Location: ``$ISOZYME_CACHE_DIR/cpu``, else ``$XDG_CACHE_HOME/isozyme/cpu``, else
``~/.cache/isozyme/cpu``.  ``isozyme.config(disk_cache=False)`` or
``ISOZYME_DISK_CACHE=0`` turns it off.  Only the ``cpu`` target uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isozyme.compiler.ad_rules.registry import RULE_ATTR
from isozyme.timings import phase

#: Bumped whenever the layout or the meaning of an entry changes.
FORMAT_VERSION = 1
MAGIC = b"ISOZYME-CPU-OBJ\x00"
_SUFFIX = ".izo"
#: Environment variables that change nothing in the compiled code.
_ENV_IGNORED = frozenset(
    {"ISOZYME_CACHE_DIR", "ISOZYME_DISK_CACHE", "ISOZYME_TIMINGS", "ISOZYME_TRACEBACK"}
)

#: Counters for tests and benchmarks: lookups that hit, missed, entries written and
#: entries rejected on load (corrupt, truncated, another key or format).
stats: dict[str, int] = {"hits": 0, "misses": 0, "stores": 0, "rejected": 0}

_ENV_KEY: str | None = None
_ENV_LOCK = threading.Lock()


@dataclass(frozen=True)
class CachedCode:
    """What one entry holds: the object code and what is needed to call it."""

    #: sha256 (hex) of the translated LLVM IR: the code's content address.
    ir_hash: str
    #: Relocatable object code of the optimized module for the host CPU.
    obj: bytes
    #: Entry point name in the source (``_iz_entry_f``) -> symbol in ``obj``.
    entries: dict[str, str]
    #: The run-time checks' ``(kind, message, n_values)`` (``check_table``).
    checks: tuple[tuple[str, str, int], ...]


@dataclass(frozen=True)
class CacheHit:
    """A front-key hit, standing in for the pipeline's artefact (``load_artefact``
    loads it without compiling)."""

    key: str
    code: CachedCode


def enabled() -> bool:
    """Whether compiled CPU code is looked up and stored on disk (see module doc)."""
    from isozyme.config import disk_cache  # noqa: PLC0415

    return disk_cache()


def cache_dir() -> Path:
    """The directory holding the CPU entries."""
    root = os.environ.get("ISOZYME_CACHE_DIR")
    if root:
        return Path(root) / "cpu"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) / "isozyme" if xdg else Path.home() / ".cache" / "isozyme"
    return base / "cpu"


def _package_files() -> tuple[str, list[str]]:
    """isozyme's package directory and its files (relative paths, sorted; no caches)."""
    import isozyme  # noqa: PLC0415

    root = os.path.dirname(os.path.abspath(isozyme.__file__))
    found: list[str] = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        found += [os.path.relpath(os.path.join(d, f), root)
                  for f in files if not f.endswith((".pyc", ".pyo"))]
    return root, sorted(found)


def _source_hash() -> str:
    """sha256 over isozyme's own files (paths and contents), so that any edit of the
    package, pipeline or runtime gives new keys.  Hashing the contents costs 5-20 ms,
    so it is remembered on disk under a fingerprint of the files' paths, sizes and
    modification times (nanoseconds; under 1 ms to take): an edit changes the
    fingerprint, and a new fingerprint hashes the contents again."""
    root, files = _package_files()
    fp = hashlib.sha256()
    for rel in files:
        st = os.stat(os.path.join(root, rel))
        fp.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    memo = cache_dir() / "source-hashes" / fp.hexdigest()
    try:
        known = memo.read_text().strip()
        if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
            return known
    except OSError:
        pass
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode())
        h.update(b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    digest = h.hexdigest()
    _write_atomic(memo, digest.encode())
    return digest


def _xdsl_version(xdsl: Any) -> str:
    """xDSL's version from its ``.dist-info`` directory's name; ``xdsl.__version__``
    (which imports ``importlib.metadata``: 10 ms of a cache hit) only without one."""
    site = os.path.dirname(os.path.dirname(os.path.abspath(xdsl.__file__)))
    try:
        names = [n for n in os.listdir(site)
                 if n.startswith("xdsl-") and n.endswith(".dist-info")]
    except OSError:
        names = []
    if len(names) == 1:
        return names[0][len("xdsl-"):-len(".dist-info")]
    return str(getattr(xdsl, "__version__", "?"))


def environment_key() -> str:
    """What every key of this process shares (computed once): format version,
    isozyme's version and source hash, xDSL, llvmlite and LLVM versions, Python's
    version, host CPU name and features, process triple."""
    global _ENV_KEY
    if _ENV_KEY is not None:
        return _ENV_KEY
    with _ENV_LOCK:
        if _ENV_KEY is None:
            import xdsl  # noqa: PLC0415

            import llvmlite  # noqa: PLC0415
            import llvmlite.binding as llb  # noqa: PLC0415

            import isozyme  # noqa: PLC0415

            parts = {
                "format": FORMAT_VERSION,
                "isozyme": isozyme.__version__,
                "source": _source_hash(),
                "xdsl": _xdsl_version(xdsl),
                "llvmlite": llvmlite.__version__,
                "llvm": ".".join(map(str, llb.llvm_version_info)),
                "python": sys.version.split()[0],
                "cpu": llb.get_host_cpu_name(),
                "features": llb.get_host_cpu_features().flatten(),
                "triple": llb.get_process_triple(),
            }
            _ENV_KEY = json.dumps(parts, sort_keys=True)
    return _ENV_KEY


def front_key(module: Any, target: str) -> str | None:
    """The key of a traced module (after ``add_request``) for ``target``; None when
    the disk cache does not apply (off, a target other than ``cpu``, custom passes)."""
    if target != "cpu" or not enabled():
        return None
    from isozyme.compiler.pipeline import custom_passes_key  # noqa: PLC0415

    if custom_passes_key():
        return None  # a user's pass code is part of no key
    try:
        cache_dir()
    except RuntimeError:  # no home directory and no ISOZYME_CACHE_DIR: no disk cache
        return None
    with phase("disk-cache/key", "runtime"):  # (no step in the report when off)
        return _hash_module(module, target)


def _hash_module(module: Any, target: str) -> str | None:
    """:func:`front_key`'s hash (None: the module calls a user rule)."""
    from isozyme.config import _SETTINGS  # noqa: PLC0415

    text = str(module)
    if RULE_ATTR in text:
        return None  # nor is a user rule's, which AD runs (conservative: any mention)
    settings = {k: v for k, v in _SETTINGS.items() if k != "disk_cache"}
    env = {k: v for k, v in os.environ.items()
           if k.startswith("ISOZYME_") and k not in _ENV_IGNORED}
    h = hashlib.sha256()
    for part in (environment_key(), target, json.dumps(settings, sort_keys=True),
                 json.dumps(env, sort_keys=True), text):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / key[:2] / (key + _SUFFIX)


def encode(key: str, code: CachedCode) -> bytes:
    """An entry's bytes (see the module doc for the layout)."""
    header = {
        "format": FORMAT_VERSION,
        "key": key,
        "payload_size": len(code.obj),
        "payload_sha256": hashlib.sha256(code.obj).hexdigest(),
        "ir_hash": code.ir_hash,
        "entries": code.entries,
        "checks": [list(c) for c in code.checks],
    }
    raw = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(raw)) + raw + code.obj


def decode(key: str, data: bytes) -> CachedCode:
    """The entry in ``data`` for ``key``; ``ValueError`` naming what is wrong when
    it is not a whole, intact entry of this format and key."""
    n = len(MAGIC)
    if data[:n] != MAGIC:
        raise ValueError("bad magic")
    if len(data) < n + 4:
        raise ValueError("truncated header length")
    (size,) = struct.unpack("<I", data[n:n + 4])
    start = n + 4 + size
    if len(data) < start:
        raise ValueError("truncated header")
    try:
        header = json.loads(data[n + 4:start])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"malformed header: {e}") from None
    if not isinstance(header, dict):
        raise ValueError("malformed header")
    if header.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {header.get('format')!r}, expected {FORMAT_VERSION}")
    if header.get("key") != key:
        raise ValueError("another key")
    obj = data[start:]
    if len(obj) != header.get("payload_size"):
        raise ValueError("truncated payload")
    if hashlib.sha256(obj).hexdigest() != header.get("payload_sha256"):
        raise ValueError("payload checksum mismatch")
    try:
        entries = {str(k): str(v) for k, v in header["entries"].items()}
        checks = tuple((str(k), str(m), int(c)) for k, m, c in header["checks"])
        ir_hash = str(header["ir_hash"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"malformed header: {e!r}") from None
    if not all(v.endswith("." + ir_hash) for v in entries.values()):
        raise ValueError("entry symbols are not named after the IR hash")
    return CachedCode(ir_hash, obj, entries, checks)


def lookup(key: str | None) -> CacheHit | None:
    """The intact entry of ``key``, or None (no key, no entry, or a rejected entry,
    which is deleted so that the rebuilt one replaces it)."""
    if key is None:
        return None
    with phase("disk-cache/lookup", "runtime"):
        return _lookup(key)


def _lookup(key: str) -> CacheHit | None:
    """:func:`lookup` of a key."""
    path = _path(key)
    try:
        data = path.read_bytes()
    except OSError:
        stats["misses"] += 1
        return None
    try:
        code = decode(key, data)
    except ValueError:
        stats["rejected"] += 1
        stats["misses"] += 1
        try:
            path.unlink()
        except OSError:
            pass  # another process removed or replaced it
        return None
    stats["hits"] += 1
    return CacheHit(key, code)


def _write_atomic(path: Path, data: bytes) -> bool:
    """Write ``path`` through a temporary file in its directory and ``os.replace``, so
    that readers see the old file or the whole new one and concurrent writers both
    succeed; False when it could not be written (read-only or full disk)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide it from others
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        return False
    return True


def store(key: str, code: CachedCode) -> None:
    """Write the entry of ``key`` atomically; a failure to write only costs the next
    process a compile."""
    if _write_atomic(_path(key), encode(key, code)):
        stats["stores"] += 1


__all__ = [
    "FORMAT_VERSION",
    "CacheHit",
    "CachedCode",
    "cache_dir",
    "decode",
    "encode",
    "enabled",
    "environment_key",
    "front_key",
    "lookup",
    "stats",
    "store",
]
