"""docs/supported.md is what docs/generate_support_tables.py generates from the
frontend's registries (numpy functions, Python constructs): it cannot drift."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_supported_page_is_up_to_date():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import generate_support_tables as gen  # noqa: PLC0415
    finally:
        sys.path.remove(str(ROOT / "docs"))
    assert (ROOT / "docs" / "supported.md").read_text() == gen.render(), (
        "docs/supported.md is out of date: run python docs/generate_support_tables.py")


def test_page_lists_the_registries():
    from isozyme.frontends.python.constructs import CONSTRUCTS  # noqa: PLC0415
    from isozyme.frontends.python.whole_array.registration import (  # noqa: PLC0415
        supported_numpy_functions,
    )

    text = (ROOT / "docs" / "supported.md").read_text()
    for name, _ in supported_numpy_functions():
        assert f"`{name}`" in text
    for c in CONSTRUCTS:
        assert c.example in text
    assert "`numpy.cumsum`" in text and "`numpy.linalg.norm`" in text


def test_check_mode_exits_zero():
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_support_tables.py"),
                          "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
