"""Parse one RSS or Atom document into a Feed and its Episodes: pure, no network.

feedparser reads the document; the XML tree fills in what it loses (the channel's own title, its next-page link,
every `<podcast:transcript>` with its language and rel). Of an item's enclosures and Media RSS contents, the best
ranked media file is its audio.
"""

from __future__ import annotations

import calendar
import io
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import urldefrag, urljoin
from xml.sax import SAXParseException

import feedparser

from tasks.episode_id import enclosure_identity, guid_episode_id, hash_id
from tasks.errors import FeedError
from tasks.feed_cut import first_items
from tasks.models import Episode, Feed, TranscriptLink, utc_now
from tasks.redaction import redact_url
from tasks.transcribe.languages import spoken_language

# Every URI the Podcasting 2.0 project has published for its namespace; the GitHub one is in most feeds.
PODCAST_NAMESPACES = (
    "https://podcastindex.org/namespace/1.0",
    "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md",
    "http://podcastindex.org/namespace/1.0",
)
# Real items link one to four transcripts; a hostile one could link a million, each kept in the ledger.
MAX_TRANSCRIPT_LINKS = 16
TRANSCRIPT_TAGS = {f"{{{namespace}}}transcript" for namespace in PODCAST_NAMESPACES}
ATOM = "http://www.w3.org/2005/Atom"
RSS_1 = "http://purl.org/rss/1.0/"
ITEM_TAGS = {"item", f"{{{RSS_1}}}item", f"{{{ATOM}}}entry"}  # what feedparser makes entries of
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Never an episode's audio, whatever else an item offers: covers, show notes, documents, Flash players.
NOT_MEDIA_PREFIXES = (
    "image/",
    "text/",
    "font/",
    "model/",
    "application/x-shockwave-flash",
    "application/pdf",
    "application/msword",
    "application/rtf",
    "application/epub",
    "application/javascript",
)
NOT_MEDIA_SUFFIXES = ("/html", "/xml", "+xml", "/json", "+json")
MEDIUM_TYPES = {"audio": "audio/*", "video": "video/*", "image": "image/*"}  # a media:content's medium, untyped


def _parse_duration(value: str | None) -> float | None:
    """iTunes durations come as seconds ('3723') or clock time ('1:02:03', '62:03')."""
    if not value:
        return None
    try:
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
        return seconds
    except ValueError:
        return None


def _parse_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _timestamp(parsed: time.struct_time | None) -> datetime | None:
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None


def resolve_url(base_url: str, href: str) -> str:
    """`href` resolved against the feed's URL; left as written where it is too malformed to resolve, so the
    episode that uses it fails alone with that URL in its error."""
    try:
        return urljoin(base_url, href.strip())
    except ValueError:
        return href.strip()


def clean_text(text: str) -> str:
    """Without control characters and bidirectional overrides, which could rewrite a terminal or disguise a name."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc" and ch not in BIDI_CONTROLS).strip()


def _image(node: Any, base_url: str) -> str | None:
    href = (node.get("image") or {}).get("href")
    return resolve_url(base_url, href) if href else None


def _read_xml(body: bytes) -> ET.Element | None:
    """The document as an element tree, for what feedparser loses; None where it is not well-formed XML."""
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        return None


def _channel(root: ET.Element) -> ET.Element | None:
    """The element whose own children describe the show: RSS's `<channel>`, or Atom's `<feed>` itself."""
    if root.tag == f"{{{ATOM}}}feed":
        return root
    return next((child for child in root if child.tag in ("channel", f"{{{RSS_1}}}channel")), None)


def _channel_title(channel: ET.Element) -> str:
    """The channel's own `<title>`, "" where it has none: feedparser may take a `<podcast:liveItem>`'s for it."""
    namespace = channel.tag[: channel.tag.find("}") + 1]  # the title is in the channel's namespace, if any
    title = channel.find(f"{namespace}title")
    return "".join(title.itertext()) if title is not None else ""


def _next_page_href(links: Iterable[Mapping[str, str]]) -> str | None:
    """The href of the channel's `<atom:link rel="next">` (RFC 5005: the feed continues on another page)."""
    return next((link["href"] for link in links if link.get("rel") == "next" and link.get("href")), None)


def _transcript_links(root: ET.Element, base_url: str) -> list[tuple[TranscriptLink, ...]]:
    """Every item's `<podcast:transcript>` links, in item order, the first MAX_TRANSCRIPT_LINKS of each.

    feedparser keeps only the last such element per item, without its language or rel.
    """
    return [
        tuple(
            islice(
                (
                    _transcript_link(base_url, link.attrib)
                    for link in item.iter()
                    if link.tag in TRANSCRIPT_TAGS and link.get("url")
                ),
                MAX_TRANSCRIPT_LINKS,
            )
        )
        for item in root.iter()
        if item.tag in ITEM_TAGS
    ]


def _transcript_link(base_url: str, attributes: Mapping[str, str]) -> TranscriptLink:
    return TranscriptLink(
        url=resolve_url(base_url, attributes["url"]),
        type=attributes.get("type"),
        language=attributes.get("language"),
        rel=attributes.get("rel"),
    )


def media_rank(media_type: str | None) -> int | None:
    """How a file of this media type ranks as an episode's audio, best first: 0 audio, 1 video, 2 untyped or other
    (application/octet-stream); None for what is never the audio: images, text, documents, Flash."""
    kind = (media_type or "").split(";", 1)[0].strip().lower()
    if kind.startswith(("audio/", "x-audio/")):
        return 0
    if kind.startswith("video/"):
        return 1
    if kind.startswith(NOT_MEDIA_PREFIXES) or kind.endswith(NOT_MEDIA_SUFFIXES):
        return None
    return 2


@dataclass(frozen=True)
class MediaFile:
    """An `<enclosure>` or Media RSS `<media:content>`, as the item states it."""

    url: str
    type: str | None
    length: str | None
    rank: int | None  # media_rank of its type, or of its `medium` where it states no type
    preference: int  # among equal ranks, lowest first: enclosures, then a media:group's default, then the rest


def _media_files(entry: Any) -> list[MediaFile]:
    enclosures = [
        MediaFile(link["href"], link.get("type"), link.get("length"), media_rank(link.get("type")), 0)
        for link in entry.get("links", [])
        if link.get("rel") == "enclosure" and link.get("href")
    ]
    # feedparser lists the contents of <media:group>s here too.
    contents = [
        MediaFile(
            content["url"],
            content.get("type"),
            content.get("filesize"),
            media_rank(content.get("type") or MEDIUM_TYPES.get(content.get("medium", ""))),
            1 if content.get("isdefault") == "true" else 2,
        )
        for content in entry.get("media_content", [])
        if content.get("url")
    ]
    return enclosures + contents


def _audio_file(entry: Any) -> MediaFile | None:
    """The item's file to take as its audio: the best ranked, the first of equals; None where none may be."""
    files = [file for file in _media_files(entry) if file.rank is not None]
    return min(files, key=lambda file: (file.rank, file.preference), default=None)


def episode_from_entry(entry: Any, base_url: str, transcripts: tuple[TranscriptLink, ...]) -> Episode:
    """One feedparser entry as an Episode, with every URL resolved against the feed's final URL."""
    enclosure = _audio_file(entry)
    enclosure_url = resolve_url(base_url, enclosure.url) if enclosure else None
    title = clean_text(entry.get("title") or "")
    published = _timestamp(entry.get("published_parsed") or entry.get("updated_parsed"))
    guid = (entry.get("id") or "").strip()
    if guid:
        episode_id = guid_episode_id(guid)
    elif enclosure_url:
        episode_id = hash_id(enclosure_identity(enclosure_url))
    else:
        episode_id = hash_id(f"{title}\n{published}\n{entry.get('link', '')}")
    if not transcripts and entry.get("podcast_transcript", {}).get("url"):
        transcripts = (_transcript_link(base_url, entry["podcast_transcript"]),)
    return Episode(
        episode_id=episode_id,
        title=title or "untitled",
        published=published,
        description=entry.get("summary", ""),
        link=resolve_url(base_url, entry["link"]) if entry.get("link") else None,
        image=_image(entry, base_url),
        enclosure_url=enclosure_url,
        enclosure_type=enclosure.type if enclosure else None,
        enclosure_length=_parse_int(enclosure.length) if enclosure else None,
        itunes_duration_s=_parse_duration(entry.get("itunes_duration")),
        season=_parse_int(entry.get("itunes_season")),
        episode_number=_parse_int(entry.get("itunes_episode")),
        language=spoken_language(entry.get("language")),  # the item's <dc:language>: feedparser's `language`
        transcripts=transcripts,
    )


@dataclass(frozen=True)
class FeedPage:
    """One document of a feed: the show, its episodes, where the feed continues (RFC 5005), if it does, and
    whether items were left out past the limit."""

    feed: Feed
    episodes: list[Episode]
    next_url: str | None
    items_left_out: bool = False


def parse_page(body: bytes, url: str, final_url: str, headers: dict[str, str], max_items: int) -> FeedPage:
    """Parse one page of a feed, already fetched from `url` (found at `final_url`), up to its first `max_items`
    items."""
    body, items_left_out = first_items(body, max_items)
    # A stream, never the bytes: feedparser opens a str or bytes argument as a file name (or fetches it as a URL)
    # first, and a body of `/dev/zero` would be read forever. From a stream it reads and fetches nothing else.
    parsed = feedparser.parse(io.BytesIO(body))
    if not parsed.get("version") and not parsed.entries:
        raise FeedError(f"{url} is not a podcast feed: {_why_not_a_feed(parsed.get('bozo_exception'))}")
    channel, root = parsed.feed, _read_xml(body)
    # The channel as the XML has it, where it reads as XML; feedparser's view of it otherwise.
    own = _channel(root) if root is not None else None
    title = _channel_title(own) if own is not None else channel.get("title") or ""
    links = [link.attrib for link in own.iterfind(f"{{{ATOM}}}link")] if own is not None else channel.get("links", [])
    next_href = _next_page_href(links)
    feed = Feed(
        url=url,
        final_url=final_url,
        title=clean_text(title) or redact_url(final_url),
        link=resolve_url(final_url, channel["link"]) if channel.get("link") else None,
        description=channel.get("subtitle", "") or channel.get("summary", ""),
        image=_image(channel, final_url),
        language=channel.get("language"),
        author=channel.get("author") or channel.get("itunes_author"),
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        fetched_at=utc_now(),
    )
    transcripts = _transcript_links(root, final_url) if root is not None else None
    if transcripts is None or len(transcripts) != len(parsed.entries):
        transcripts = [()] * len(parsed.entries)
    episodes = [episode_from_entry(entry, final_url, found) for entry, found in zip(parsed.entries, transcripts)]
    next_url = urldefrag(resolve_url(final_url, next_href)).url if next_href else None
    return FeedPage(feed, episodes[:max_items], next_url, items_left_out or len(episodes) > max_items)


def _why_not_a_feed(error: Exception | None) -> str:
    """feedparser's reason in words that quote nothing of the document: its own messages may (a declared encoding,
    a namespace prefix)."""
    if isinstance(error, SAXParseException):
        return f"not well-formed XML ({error.getMessage()})"  # expat's fixed wording: 'mismatched tag', ...
    return "no RSS or Atom document found"
