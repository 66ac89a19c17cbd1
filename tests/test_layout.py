"""The house rules of DESIGN.md, checked on the source: small functions, small modules.

No function or method in ``zoo/`` or ``guides/`` is longer than 80 lines, its docstring not
counted (from its ``def`` line, decorators excluded, to its last line, as :mod:`ast` reports
them); no module is longer than 600 lines.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for pkg in ("zoo", "guides") for p in (ROOT / pkg).rglob("*.py"))
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """``(qualified name, first line, length without the docstring)`` of every function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                length = child.end_lineno - child.lineno + 1
                body = child.body
                if (
                    body
                    and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)
                ):
                    length -= body[0].end_lineno - body[0].lineno + 1
                out.append((prefix + child.name, child.lineno, length))
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return out


def test_the_measure_counts_what_it_says(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('def f():\n    """Doc\n    string."""\n    a = 1\n    return a\n')
    assert function_lengths(src) == [("f", 1, 3)]


def test_there_are_sources_to_check():
    assert len(SOURCES) > 20


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_small_functions_and_modules(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines (> {MAX_MODULE_LINES})"
    long = [
        f"{n} (line {at}): {k}" for n, at, k in function_lengths(path) if k > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"
