"""Build RSS documents for tests, item by item and page by page; serve paged feeds; one feed that is slow to
parse."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from tests.feedserver import FeedServer

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


def page(items: list[str], next_href: str | None = None) -> bytes:
    """One page of a paged feed (RFC 5005), linking the next."""
    link = [f'<atom:link rel="next" href="{next_href}"/>'] if next_href else []
    body = rss(link + items)
    return body.replace(b'<rss version="2.0" ', b'<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" ')


def serve_pages(server: FeedServer, pages: list[tuple[str, bytes]]) -> str:
    for path, body in pages:
        server.add(path, body)
    return server.url(pages[0][0])


# Took minutes in the parser podflow calls (measured on 2 cores, Python 3.11.7).
ATTRIBUTES_ON_ONE_ELEMENT = rss(
    ["<item><title " + " ".join(f'a{n}="x"' for n in range(100_000)) + ">t</title><guid>1</guid></item>"]
)  # feedparser: 1 MB of attributes, about 2 minutes
