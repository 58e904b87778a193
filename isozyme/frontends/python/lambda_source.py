"""Finding a lambda's AST in the source lines ``inspect`` gives for its code object."""

from __future__ import annotations

import ast
import types


def find_lambda(source: str, code: types.CodeType,
                 first: str = "") -> tuple[ast.Lambda | None, int]:
    """Find the lambda of ``code`` in the source lines inspect returned for it
    (``first``: the first of those lines as in the file).  Of several lambdas with the
    same parameters on that line, the one whose span holds the columns of ``code``'s
    instructions."""
    arg_names = list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
    stripped = source.strip()
    first = first.rstrip("\r\n") or source.splitlines()[0]
    indent = len(first) - len(first.lstrip())
    dedented = source.splitlines()[0] if source else ""
    # (text, line offset, characters of the first line cut off before the text's)
    attempts = [(source, 0, len(first) - len(dedented)),
                ("(\n" + stripped.rstrip(",;") + "\n)", 1, indent)]
    # A lambda in the middle of a larger expression: try cutting at its start.
    at = stripped.find("lambda")
    if at > 0:
        attempts.append(("(\n" + stripped[at:].rstrip(",;)") + "\n)", 1, indent + at))
    if at >= 0:
        # A one-line lambda followed by the rest of its statement (a call's closing
        # parentheses on a continuation line, `for fn in (lambda x: ...,):`): its
        # first line from "lambda", cut after each closing bracket or comma in turn.
        line = stripped[at:].splitlines()[0]
        ends = [k for k in range(len(line), 0, -1) if line[k - 1] in ")]},:"]
        attempts += [("(\n" + line[:k].rstrip(",:") + "\n)", 1, indent + at)
                     for k in ends[:40]]
    columns = [c for line, _, c, end in code.co_positions()  # RESUME: an empty span
               if line == code.co_firstlineno and c is not None and end and end > c]
    column = min(columns) if columns else None
    for text, offset, cut in attempts:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        found = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Lambda)
            and n.lineno - offset == 1
            and [a.arg for a in (*n.args.posonlyargs, *n.args.args, *n.args.kwonlyargs)]
            == arg_names
        ]
        if len({ast.dump(n) for n in found}) > 1 and column is not None:
            shift = len(first[:cut].encode())  # code columns are UTF-8 byte offsets
            found = [n for n in found if n.col_offset + shift <= column
                     and (n.end_lineno != n.lineno or column < n.end_col_offset + shift)]
            found = found[-1:]  # the innermost of nested lambdas holding the column
        if found and len({ast.dump(n) for n in found}) == 1:
            return found[0], offset
    return None, 0
