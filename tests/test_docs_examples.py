"""Every ```python example and every ``console run`` shell session of README.md and
docs/*.md runs and prints what it shows (docs/check_examples.py; its own behaviour is
tested in tests/test_docs_reference.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_documentation_examples_run():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "check_examples.py")],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert " 0 failed" in proc.stdout
