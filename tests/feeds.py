"""Build RSS documents for tests, item by item."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

NAMESPACES = (
    'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" xmlns:podcast="https://podcastindex.org/namespace/1.0"'
)


def rss_item(
    title: str,
    guid: str | None = None,
    enclosure: str | None = None,
    enclosure_type: str = "audio/mpeg",
    published: str = "Mon, 02 Nov 2026 08:00:00 GMT",
    extra: str = "",
) -> str:
    parts = [f"<title>{escape(title)}</title>", f"<pubDate>{published}</pubDate>"]
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{escape(guid)}</guid>')
    if enclosure is not None:
        parts.append(f'<enclosure url={quoteattr(enclosure)} type={quoteattr(enclosure_type)} length="1"/>')
    return "<item>" + "".join(parts) + extra + "</item>"


def rss(items: list[str], title: str = "Test Show") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" {NAMESPACES}><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/show</link>" + "".join(items) + "</channel></rss>"
    ).encode()
