"""The README's promises: two commands first, a short page, and links that lead somewhere.

Its Python examples, with those of the docs pages, are run by tests/test_docs.py.
"""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_LINES = 250


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_commands():
    first, second = _blocks("bash")[:2]
    assert "pip install torch==2.13.0" in first and first.strip().endswith("zoo compare")
    assert 'pip install -e ".[dev]"' in second and second.strip().endswith("python -m pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert "test-command" in ci and "test-command" in README.read_text()


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines (> {MAX_LINES}); move text to docs/"


def test_readme_links_to_every_docs_page_that_exists():
    linked = set(re.findall(r"\]\((docs/[^)#]+)", README.read_text()))
    assert linked, "the README links to no docs page"
    missing = [p for p in linked if not (README.parent / p).is_file()]
    assert not missing, f"the README links to pages that do not exist: {missing}"
    pages = {
        f"docs/{p.name}" for p in (README.parent / "docs").glob("*.md") if p.name != "index.md"
    }
    assert pages <= linked, f"docs pages the README does not link to: {sorted(pages - linked)}"
