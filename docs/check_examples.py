"""Run every ```python example of README.md and docs/*.md; check the printed output.

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
* anything not meant to run is tagged ``text``, ``console``, ``bash``, ``mlir``, ``llvm``
  or ``pycon-skip``.

Exit status: 0 when every example runs and prints what its ``output`` block says.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass
class Example:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    expected: str | None = None


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


def examples(path: Path) -> list[Example]:
    found: list[Example] = []
    prev: Example | None = None
    for line, info, body in blocks(path.read_text()):
        lang = info.split()[0] if info else ""
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


def run(ex: Example, workdir: Path, timeout: float) -> tuple[bool, str]:
    rel = ex.path.relative_to(ROOT) if ex.path.is_relative_to(ROOT) else ex.path
    stem = re.sub(r"\W", "_", f"{rel.stem}_L{ex.line}")
    src = workdir / f"example_{stem}.py"
    src.write_text(ex.code)
    env = dict(os.environ, PYTHONHASHSEED="0")
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
    failed = total = 0
    with tempfile.TemporaryDirectory(prefix="isozyme-doc-examples-") as tmp:
        for path in files:
            for ex in examples(path):
                total += 1
                ok, out = run(ex, Path(tmp), args.timeout)
                rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                checked = " (output checked)" if ex.expected is not None else ""
                print(f"{'PASS' if ok else 'FAIL'} {rel}:{ex.line}{checked}")
                if not ok:
                    failed += 1
                    print("    " + out.replace("\n", "\n    ").rstrip())
                elif args.verbose and out.strip():
                    print("    " + out.rstrip().replace("\n", "\n    "))
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
