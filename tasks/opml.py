"""Read the feed URLs out of an OPML subscription list, from a local file or an http(s) URL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

from tasks.errors import FeedError
from tasks.http import fetch_document
from tasks.isolation import parse_isolated
from tasks.models import Settings


def _local_name(name: str) -> str:
    """An element or attribute name without its namespace, lowercased: exporters disagree on `xmlUrl`'s case."""
    return name.rsplit("}", 1)[-1].lower()


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # unparseable (e.g. "http://[::1"): no fetch could succeed, so skip it like a file: URL
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def parse_opml(body: bytes, source: str, max_feeds: int) -> tuple[list[str], bool]:
    """The http(s) feed URLs of every `<outline xmlUrl=...>` at any depth, in document order, each once, up to
    `max_feeds` of them; and whether more were left out."""
    try:
        # expat (2.4+) refuses entity amplification, so a billion-laughs document fails here instead of expanding.
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise FeedError(f"{source} is not an OPML document: malformed XML ({exc})") from exc
    body_element = next((child for child in root if _local_name(child.tag) == "body"), None)
    if _local_name(root.tag) != "opml" or body_element is None:
        raise FeedError(f"{source} is not an OPML document: no <opml> root with a <body>")
    urls: dict[str, None] = {}  # insertion-ordered set: the first of any duplicates keeps its place
    for outline in body_element.iter():
        if _local_name(outline.tag) != "outline":
            continue
        url = next((value.strip() for key, value in outline.attrib.items() if _local_name(key) == "xmlurl"), "")
        if _is_web_url(url) and url not in urls:
            if len(urls) == max_feeds:
                return list(urls), True
            urls[url] = None
    if not urls:
        raise FeedError(f"{source} is an OPML document with no feeds: no <outline> has an http(s) xmlUrl")
    return list(urls), False


def _read_file(path: Path, settings: Settings) -> bytes:
    """The file's bytes, refused past `max_feed_bytes`; read bounded, since a FIFO or device has no size."""
    try:
        with path.open("rb") as file:
            body = file.read(settings.documents.max_feed_bytes + 1)
    except FileNotFoundError as exc:
        raise FeedError(f"{path} (OPML) does not exist") from exc
    except OSError as exc:
        raise FeedError(f"{path} (OPML) could not be read: {exc}") from exc
    if len(body) > settings.documents.max_feed_bytes:
        raise FeedError(f"{path} (OPML) is larger than the {settings.documents.max_feed_bytes:,}-byte document limit")
    return body


def read_opml(source: str, settings: Settings) -> tuple[list[str], str | None]:
    """The feed URLs of the OPML at `source` (an http(s) URL, or else a local file's path), parsed in a child
    process under the parse limits; and why some were left out, if any were."""
    if source.strip().lower().startswith(("http://", "https://")):
        if not _is_web_url(source.strip()):
            raise FeedError(f"{source} (OPML) is not a valid URL")
        body = fetch_document(source.strip(), settings, FeedError, "OPML", operator_url=True).body
    else:
        body = _read_file(Path(source), settings)
    urls, left_out = parse_isolated(
        parse_opml, (body, source, settings.documents.max_opml_feeds), settings, source, FeedError
    )
    if left_out:
        return urls, (
            f"{source} (OPML) lists more than max_opml_feeds={settings.documents.max_opml_feeds:,} feeds: only the "
            f"first {len(urls):,} are read"
        )
    return urls, None
