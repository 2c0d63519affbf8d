"""The code examples of the docs, as the tests that run them read them: a page's section, its ```python blocks."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).parents[1] / "docs"


def python_blocks(page: str, title: str) -> list[str]:
    """The ```python blocks of the `## title` section of docs/<page>, in order, each without its fences."""
    text = (DOCS / page).read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start : end if end != -1 else len(text)], re.DOTALL)
