"""docs/passes.md and docs/enzyme-dialect.md are what docs/generate_reference.py
generates from the pass registry and the enzyme dialect: they cannot drift. Also the
pieces the generator relies on (docstring conversion, constraint text), and the
checker of the docs' examples (console sessions, files, ``...``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(ROOT / "docs"))


gen = _load("generate_reference")
check = _load("check_examples")


@pytest.mark.parametrize("page", ["passes.md", "enzyme-dialect.md"])
def test_reference_pages_are_up_to_date(page: str) -> None:
    texts = {p.name: t for p, t in gen.pages().items()}
    assert (ROOT / "docs" / page).read_text() == texts[page], (
        f"docs/{page} is out of date: run python docs/generate_reference.py")


def test_passes_page_lists_every_registered_pass_with_its_options() -> None:
    from isozyme.compiler.passes.registry import registered_passes  # noqa: PLC0415

    text = (ROOT / "docs" / "passes.md").read_text()
    infos = registered_passes()
    assert {"enzyme", "enzyme-differentiate", "lift-cf-to-scf", "inline"} <= {
        i.name for i in infos}
    for info in infos:
        assert f"\n### {info.name}\n" in text, info.name
        for opt in info.options:
            assert f"| `{opt.name}` | `{opt.type.replace('|', chr(92) + '|')}` |" in text
    # where autodiff runs a pass, from the pipeline's stage lists and the targets
    assert "| [`enzyme-differentiate`](#enzyme-differentiate) | differentiated |" in text
    assert "| `keep-ruled` | `bool` | `false` |" in text


def test_dialect_page_lists_every_op_type_and_attribute() -> None:
    from isozyme.dialects import enzyme  # noqa: PLC0415

    text = (ROOT / "docs" / "enzyme-dialect.md").read_text()
    for op in [*enzyme.Enzyme.operations, enzyme.GradientInitOp]:
        assert f"### `{op.name}` ({op.__name__})" in text
    for attr in enzyme.Enzyme.attributes:
        assert f"({attr.__name__})" in text
    assert "| property | `width` | optional `IntegerAttr` |" in text
    assert "| operand | `gradient` | `!enzyme.Gradient` |" in text
    assert "`enzyme_dupnoneed`" in text


def test_check_mode_fails_on_a_stale_page(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "passes.md"
    stale.write_text("old\n")
    monkeypatch.setattr(gen, "PASSES_PAGE", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "DIALECT_PAGE", tmp_path / "enzyme-dialect.md")
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and stale.read_text() == gen.render_passes()
    assert gen.main(["--check"]) == 0


def test_doc_markdown_converts_docstrings() -> None:
    doc = textwrap.dedent('''\
        Summary with ``code`` and :class:`~a.b.C`.

        Example::

            %r = op %x,
                     %y

        ``term``
            its body, on
            two lines.

        * a bullet
          continued
        ''')
    assert gen.doc_markdown(doc) == (
        "Summary with `code` and `a.b.C`.\n\nExample:\n\n"
        "```mlir\n%r = op %x,\n         %y\n```\n\n"
        "* `term`: its body, on two lines.\n\n* a bullet continued"
    )


def test_constraint_text() -> None:
    from isozyme.dialects.enzyme import ForwardDiffOp, PushOp  # noqa: PLC0415

    d = ForwardDiffOp.get_irdl_definition()
    props = dict(d.properties)
    assert gen.constraint_text(props["activity"].constr) == "array of `#enzyme.activity`"
    assert gen.constraint_text(d.operands[0][1].constr) == "any"
    push = dict(PushOp.get_irdl_definition().operands)
    assert gen.constraint_text(push["cache"].constr) == "`!enzyme.Cache`"


# -- docs/check_examples.py: console sessions, files, elision --------------------------
def test_matches_with_ellipsis() -> None:
    assert check.matches("a\n...\nd\n", "a\nb\nc\nd\n")
    assert check.matches("a\n...\nd\n", "a\nd")
    assert not check.matches("a\n...\nd\n", "a\nb")
    assert check.matches("...\n", "")
    assert not check.matches("", "x")
    assert not check.matches("x\n", "x\ny")


def test_checker_runs_console_blocks_and_files(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        ```text file=data.txt
        one
        two
        ```

        ```console run
        $ wc -l < data.txt
        2
        $ printf 'a\\nb\\nc\\n'; echo err >&2
        a
        ...
        err
        ```

        ```python
        print(open("data.txt").read().split())
        ```

        ```output
        ['one', 'two']
        ```

        ```console run requires=no-such-tool-here
        $ no-such-tool-here
        ```
        """))
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "check_examples.py"), str(page)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed, 0 failed, 1 skipped" in proc.stdout
    page.write_text(page.read_text().replace("$ wc -l < data.txt\n2", "$ wc -l < data.txt\n3"))
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "check_examples.py"), str(page)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "output differs" in proc.stdout and "1 failed" in proc.stdout
