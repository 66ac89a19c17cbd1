"""Small helpers every layer may use: a "did you mean" error and a Markdown table.

They sit at the bottom of the zoo's layers and import nothing of it.

Usage::

    from zoo.util import markdown_table, unknown_choice
    raise unknown_choice("model", "lenet", ["lenet300-normal", "lenet5-normal"])
    print(markdown_table(frame))
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

__all__ = ["markdown_table", "unknown_choice"]


def unknown_choice(kind: str, name: str, choices: Sequence[str]) -> ValueError:
    """A ``ValueError`` for an unknown ``name`` of ``kind``, naming the closest ``choices``."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} Known: {', '.join(choices)}.")


def markdown_table(frame: Any) -> str:
    """A pandas ``DataFrame`` as a GitHub Markdown table, floats to four significant digits."""

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"
