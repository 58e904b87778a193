"""The disk cache of compiled CPU code (:mod:`isozyme.runtime.disk_cache`, issue 12
item 4): hits in a later process skip the pipeline, corrupt entries are rebuilt and
never run, concurrent writers both succeed, ``ISOZYME_CACHE_DIR`` and
``config(disk_cache=False)`` are honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import isozyme
from isozyme import Active, Duplicated, OutOfBoundsError, Reverse, autodiff
from isozyme.runtime import disk_cache

ROOT = Path(__file__).resolve().parents[1]


def entries(root: Path) -> list[Path]:
    return sorted((root / "cpu").rglob("*.izo"))


def make(k: float):
    def f(x):
        s = 0.0
        for i in range(x.shape[0] - 1):
            s += k * (x[i + 1] - x[i] * x[i]) ** 2 + (1.0 - x[i]) ** 2
        return s

    return f


def exact_grad(k: float, x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    t = x[1:] - x[:-1] ** 2
    g[:-1] += -4.0 * k * x[:-1] * t - 2.0 * (1.0 - x[:-1])
    g[1:] += 2.0 * k * t
    return g


X = np.array([0.3, -1.2, 0.8, 1.5, 0.1])


def grad(f) -> np.ndarray:
    dx = np.zeros_like(X)
    autodiff(Reverse, f, Active, Duplicated(X, dx))
    return dx


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory for this test, with the disk cache on."""
    monkeypatch.setenv("ISOZYME_CACHE_DIR", str(tmp_path))
    old = isozyme.config(disk_cache=True)
    isozyme.clear_cache()
    yield tmp_path
    isozyme.config(**old)
    isozyme.clear_cache()


@pytest.fixture
def pipeline_runs(monkeypatch):
    """How many times the xDSL pipeline ran (a disk hit runs none)."""
    from isozyme import calls

    runs = [0]
    real = calls.run_pipeline

    def counting(*args, **kwargs):
        runs[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(calls, "run_pipeline", counting)
    return runs


def test_hit_in_the_same_process_after_clear_cache(cache, pipeline_runs):
    f = make(3.0)
    np.testing.assert_allclose(grad(f), exact_grad(3.0, X), rtol=1e-12)
    assert pipeline_runs[0] == 1 and len(entries(cache)) == 1  # under ISOZYME_CACHE_DIR
    hits = disk_cache.stats["hits"]
    isozyme.clear_cache()
    np.testing.assert_allclose(grad(f), exact_grad(3.0, X), rtol=1e-12)
    assert pipeline_runs[0] == 1 and disk_cache.stats["hits"] == hits + 1
    g = make(4.0)  # another function: another key
    np.testing.assert_allclose(grad(g), exact_grad(4.0, X), rtol=1e-12)
    assert pipeline_runs[0] == 2 and len(entries(cache)) == 2


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "payload-byte":
        data[-100] ^= 0x40
    elif how == "header-byte":
        i = data.index(b'"key"') + 9  # a character of the key
        data[i] = ord("0") if data[i] != ord("0") else ord("1")
    elif how == "truncated":
        del data[len(data) // 2:]
    elif how == "magic":
        data[0] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["payload-byte", "header-byte", "truncated", "magic"])
def test_a_corrupt_entry_is_rebuilt_never_run(cache, pipeline_runs, how):
    f = make(2.0)
    grad(f)
    (path,) = entries(cache)
    _corrupt(path, how)
    rejected = disk_cache.stats["rejected"]
    isozyme.clear_cache()
    np.testing.assert_allclose(grad(f), exact_grad(2.0, X), rtol=1e-12)
    assert disk_cache.stats["rejected"] == rejected + 1
    assert pipeline_runs[0] == 2  # compiled again
    key = path.name[: -len(".izo")]
    disk_cache.decode(key, path.read_bytes())  # rewritten whole
    isozyme.clear_cache()
    np.testing.assert_allclose(grad(f), exact_grad(2.0, X), rtol=1e-12)
    assert pipeline_runs[0] == 2  # and loaded from disk


def test_decode_rejects_what_is_not_the_entry_of_its_key():
    h = "ab" * 16
    code = disk_cache.CachedCode(h, b"\x7fELF-object", {"_iz_entry_f": "_iz_entry_f." + h},
                                 (("bounds", "x[i]: index out of range", 2),))
    data = disk_cache.encode("k1", code)
    assert disk_cache.decode("k1", data) == code
    with pytest.raises(ValueError, match="another key"):
        disk_cache.decode("k2", data)
    with pytest.raises(ValueError, match="truncated"):
        disk_cache.decode("k1", data[:-1])
    with pytest.raises(ValueError, match="checksum"):
        disk_cache.decode("k1", data[:-1] + b"X")
    other_format = data.replace(b'"format": 1', b'"format": 9')
    with pytest.raises(ValueError, match="format 9"):
        disk_cache.decode("k1", other_format)
    renamed = disk_cache.CachedCode("cd" * 16, code.obj, code.entries, code.checks)
    with pytest.raises(ValueError, match="named after the IR hash"):
        disk_cache.decode("k1", disk_cache.encode("k1", renamed))


def test_disk_cache_off_writes_nothing_and_keeps_the_compile_cache(cache, pipeline_runs):
    f = make(5.0)
    grad(f)
    from isozyme.calls import stats

    traces = stats["traces"]
    old = isozyme.config(disk_cache=False)
    try:
        assert old["disk_cache"] is True and isozyme.config()["disk_cache"] is False
        grad(f)  # still in the compile cache: no trace
        assert stats["traces"] == traces
        g = make(6.0)
        np.testing.assert_allclose(grad(g), exact_grad(6.0, X), rtol=1e-12)
        assert len(entries(cache)) == 1  # only f's, from before
        isozyme.clear_cache()
        grad(f)  # not looked up either
        assert pipeline_runs[0] == 3
    finally:
        isozyme.config(**old)
    with pytest.raises(TypeError, match="disk_cache must be a bool"):
        isozyme.config(disk_cache="no")


def test_checks_come_back_from_the_entry(cache, pipeline_runs):
    def f(x, i):
        return x[i] * x[0]

    dx = np.zeros_like(X)
    with pytest.raises(OutOfBoundsError) as first:
        autodiff(Reverse, f, Active, Duplicated(X, dx), 7)
    isozyme.clear_cache()
    with pytest.raises(OutOfBoundsError) as again:
        autodiff(Reverse, f, Active, Duplicated(X, dx), 7)
    assert pipeline_runs[0] == 1  # the second from disk, with the same check table
    assert str(again.value) == str(first.value) and "7" in str(first.value)


SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import numpy as np
    import isozyme
    from isozyme import calls
    from isozyme.runtime import disk_cache

    runs = [0]
    real = calls.run_pipeline
    def counting(*a, **k):
        runs[0] += 1
        return real(*a, **k)
    calls.run_pipeline = counting

    barrier = os.environ.get("BARRIER")
    if barrier:  # both writers hold a whole temporary file before either replaces
        real_encode = disk_cache.encode
        def encode(key, code):
            Path(barrier, str(os.getpid())).touch()
            deadline = time.time() + 60
            while len(os.listdir(barrier)) < 2 and time.time() < deadline:
                time.sleep(0.005)
            return real_encode(key, code)
        disk_cache.encode = encode

    def other(x):  # compiled first, so its code shares the engine with a cached one
        return x[0] * x[1] * 7.0

    def f(x):
        s = 0.0
        for i in range(x.shape[0] - 1):
            s += 3.0 * (x[i + 1] - x[i] * x[i]) ** 2 + (1.0 - x[i]) ** 2
        return s

    x = np.array([0.3, -1.2, 0.8, 1.5, 0.1])
    out = {}
    if os.environ.get("OTHER_FIRST"):
        dx = np.zeros_like(x)
        isozyme.autodiff(isozyme.Reverse, other, isozyme.Active, isozyme.Duplicated(x, dx))
        out["other"] = dx.tolist()
    dx = np.zeros_like(x)
    isozyme.autodiff(isozyme.Reverse, f, isozyme.Active, isozyme.Duplicated(x, dx))
    out.update(grad=dx.tolist(), runs=runs[0], stats=disk_cache.stats)
    print(json.dumps(out))
""")


def _start(cache_dir: Path, **env: str) -> subprocess.Popen:
    script = cache_dir.parent / "script.py"  # a file: the frontend reads its source
    if not script.exists():
        script.write_text(SCRIPT)
    full = {**os.environ, "ISOZYME_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT),
            **env}
    full.pop("ISOZYME_DISK_CACHE", None)
    return subprocess.Popen([sys.executable, str(script)], env=full, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_two_writers_at_once_then_a_second_process_hits(tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    root = tmp_path / "cache"
    writers = [_start(root, BARRIER=str(barrier)) for _ in range(2)]
    first = [_result(p) for p in writers]
    expected = exact_grad(3.0, X)
    for r in first:  # both compiled and both stored the same entry
        assert r["runs"] == 1 and r["stats"]["stores"] == 1
        np.testing.assert_allclose(r["grad"], expected, rtol=1e-12)
    assert len(os.listdir(barrier)) == 2
    (path,) = entries(root)
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]
    disk_cache.decode(path.name[: -len(".izo")], path.read_bytes())
    second = _result(_start(root, OTHER_FIRST="1"))
    assert second["runs"] == 1  # only `other`: f came from disk, no pipeline
    assert second["stats"]["hits"] == 1 and second["stats"]["rejected"] == 0
    assert second["grad"] == first[0]["grad"]  # the same code, the same numbers
    np.testing.assert_allclose(second["other"], [X[1] * 7.0, X[0] * 7.0, 0, 0, 0])


def test_user_rules_and_custom_passes_are_not_cached(cache, pipeline_runs):
    """Their Python code runs after tracing and is part of no key."""
    import math

    from isozyme import rules
    from isozyme.compiler.pipeline import extra_passes

    def h(x):
        return math.sin(x)

    rules.easy_rule(h, lambda x: (3.0 * math.cos(x),))  # three times the true derivative

    def f(x):
        return h(x) * 2.0

    ((d1,),) = autodiff(Reverse, f, Active(0.4))
    assert d1 == pytest.approx(6.0 * math.cos(0.4), rel=1e-12)
    assert entries(cache) == []

    def g(x):
        return x * x

    with extra_passes("dce", after="simplified"):
        autodiff(Reverse, g, Active(1.5))
    assert entries(cache) == []
    autodiff(Reverse, make(1.0), Active, Duplicated(X, np.zeros_like(X)))
    assert len(entries(cache)) == 1  # (and cached otherwise)


def test_source_hash_follows_edits_of_the_package(tmp_path, monkeypatch):
    """The hash of isozyme's files is remembered under their paths, sizes and mtimes:
    an edit (new mtime) hashes the contents again."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    monkeypatch.setenv("ISOZYME_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(disk_cache, "_package_files", lambda: (str(pkg), ["a.py"]))
    first = disk_cache._source_hash()
    assert disk_cache._source_hash() == first  # from the memo
    st = os.stat(pkg / "a.py")
    (pkg / "a.py").write_text("x = 2\n")  # same size
    os.utime(pkg / "a.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    second = disk_cache._source_hash()
    assert second != first
    memo = tmp_path / "cache" / "cpu" / "source-hashes"
    assert sorted(p.read_text() for p in memo.iterdir()) == sorted([first, second])


def test_an_unusable_cache_directory_only_costs_compiles(tmp_path, monkeypatch, pipeline_runs):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ISOZYME_CACHE_DIR", str(blocker))
    isozyme.clear_cache()
    try:
        f = make(7.0)
        np.testing.assert_allclose(grad(f), exact_grad(7.0, X), rtol=1e-12)
        isozyme.clear_cache()
        np.testing.assert_allclose(grad(f), exact_grad(7.0, X), rtol=1e-12)
        assert pipeline_runs[0] == 2  # nothing stored, nothing loaded, no error
    finally:
        isozyme.clear_cache()
