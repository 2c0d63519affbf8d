"""A feed document cut to its first items, before feedparser reads it: what a feed may yield is bounded by
`max_feed_episodes`, not by how many tiny items fit in `max_feed_bytes` (20 MiB of `<item/>` is 800,000 episodes)."""

from __future__ import annotations

import xml.parsers.expat

ITEMS = {"item", "entry"}  # RSS items and Atom entries, whatever their namespace prefix


class _Cut(Exception):
    """The item past the limit starts here."""


def first_items(body: bytes, max_items: int) -> tuple[bytes, bool]:
    """The document up to its first `max_items` items, with the elements still open there closed, and whether
    anything was cut. A document expat cannot read that far is returned whole: feedparser's lenient parser has it."""
    parser = xml.parsers.expat.ParserCreate()  # no namespace processing: names as written, to close them as written
    open_elements: list[str] = []
    items, cut_at = 0, 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal items, cut_at
        if name.rpartition(":")[2].lower() in ITEMS:
            items += 1
            if items > max_items:
                cut_at = parser.CurrentByteIndex  # here, at its `<`: once Parse unwinds, expat has moved on
                raise _Cut
        open_elements.append(name)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: open_elements.pop()
    try:
        parser.Parse(body, True)
    except _Cut:
        closing = "".join(f"</{name}>" for name in reversed(open_elements))
        return body[:cut_at] + closing.encode(), True
    except (xml.parsers.expat.ExpatError, LookupError):  # malformed, or in an encoding Python has no codec for
        pass
    return body, False
