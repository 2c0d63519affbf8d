"""Fetch a podcast feed over HTTP and parse it into a Feed and its Episodes."""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urldefrag, urlencode, urljoin, urlsplit, urlunsplit
from xml.sax import SAXParseException

import feedparser
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.audio import AUDIO_EXTENSIONS
from tasks.errors import FeedError
from tasks.http import fetch_document
from tasks.models import Episode, Feed, FeedValidators, Settings, TranscriptLink, utc_now
from tasks.prefect_glue import fail_quietly, fetch_feed_run_name
from tasks.redaction import redact_url, redact_urls

# Every URI the Podcasting 2.0 project has published for its namespace; the GitHub one is in most feeds.
PODCAST_NAMESPACES = (
    "https://podcastindex.org/namespace/1.0",
    "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md",
    "http://podcastindex.org/namespace/1.0",
)
TRANSCRIPT_TAGS = {f"{{{namespace}}}transcript" for namespace in PODCAST_NAMESPACES}
ATOM = "http://www.w3.org/2005/Atom"
RSS_1 = "http://purl.org/rss/1.0/"
ITEM_TAGS = {"item", f"{{{RSS_1}}}item", f"{{{ATOM}}}entry"}  # what feedparser makes entries of
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# `scheme://` anywhere, or a bare `host.tld/` at the start: how redirect services carry their target in a query.
EMBEDDED_URL = re.compile(r"://|^(?:[a-z0-9-]+\.)+[a-z]{2,}/", re.IGNORECASE)
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
TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "igshid", "ref", "source"}


def normalise_url(url: str) -> str:
    """Lowercase scheme and host, no fragment, no tracking parameters, remaining parameters sorted."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith("utm_") and key.lower() not in TRACKING_PARAMS
    )
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, urlencode(query), ""))


def enclosure_identity(url: str) -> str:
    """What names a GUID-less episode: its enclosure's host and path. The query string is left out where the path
    names an audio file, since hosts and ad networks add and rotate parameters there (`?aid=rss&ts=…`), unless it
    holds a URL: a redirect service's target (`podtrac.com/pts/redirect.mp3?http://host/ep1.mp3`) is the episode.
    Elsewhere (`download.php?id=7`) the query may be the identity, so only tracking parameters are left out."""
    normalised = urlsplit(normalise_url(url))
    names_audio = any(normalised.path.lower().endswith(extension) for extension in AUDIO_EXTENSIONS)
    query = "" if names_audio and not _holds_url(normalised.query) else normalised.query
    host = normalised.netloc.rsplit("@", 1)[-1]  # a rotated credential is the same episode
    return urlunsplit(("", host, normalised.path, query, ""))


def _holds_url(query: str) -> bool:
    """Whether a query string is, or has a value that is, a URL (with a scheme, or as `host.tld/path`)."""
    parts = (part for pair in parse_qsl(query, keep_blank_values=True) for part in pair)
    return any(EMBEDDED_URL.search(part) for part in parts)


def legacy_episode_id(episode: Episode) -> str | None:
    """The id podflow 0.1 gave this GUID-less episode (its whole normalised enclosure URL), where it differs from
    today's: ledgers written then are re-keyed to today's id, so nothing done then is done again."""
    if not episode.enclosure_url or episode.episode_id != _hash_id(enclosure_identity(episode.enclosure_url)):
        return None
    legacy = _hash_id(normalise_url(episode.enclosure_url))
    return legacy if legacy != episode.episode_id else None


def guid_episode_id(guid: str) -> str:
    """The GUID as the episode's id; where it holds a credential (`…?token=…`), masked, with a hash of the whole
    GUID so that GUIDs differing only there stay apart: the id is written to the ledger and every episode file."""
    masked = redact_url(guid)
    if masked == guid:
        return guid
    return f"{masked} sha256:{hashlib.sha256(guid.encode('utf-8')).hexdigest()[:16]}"


def renamed_episode_ids(episodes: list[Episode], ledger_ids: Iterable[str]) -> dict[str, str]:
    """The ids an older podflow gave, mapped to today's, for re-keying its ledger: GUID-less episodes' (see
    `legacy_episode_id`), and GUIDs holding a credential, which were stored unmasked. The latter come from the
    ledger itself, since an Episode keeps no unmasked GUID; today's ids map to themselves and are left out."""
    renamed = {old: episode.episode_id for episode in episodes if (old := legacy_episode_id(episode))}
    renamed.update({old: new for old in ledger_ids if (new := guid_episode_id(old)) != old})
    return renamed


def _hash_id(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


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
    """Every item's `<podcast:transcript>` links, in item order.

    feedparser keeps only the last such element per item, without its language or rel.
    """
    return [
        tuple(
            _transcript_link(base_url, link.attrib)
            for link in item.iter()
            if link.tag in TRANSCRIPT_TAGS and link.get("url")
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
        episode_id = _hash_id(enclosure_identity(enclosure_url))
    else:
        episode_id = _hash_id(f"{title}\n{published}\n{entry.get('link', '')}")
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
        transcripts=transcripts,
    )


@dataclass(frozen=True)
class FeedPage:
    """One document of a feed: the show, its episodes, and where the feed continues (RFC 5005), if it does."""

    feed: Feed
    episodes: list[Episode]
    next_url: str | None


def parse_feed(body: bytes, url: str, final_url: str, headers: dict[str, str]) -> tuple[Feed, list[Episode]]:
    """Parse feed XML already fetched from `url` (found at `final_url`)."""
    page = parse_page(body, url, final_url, headers)
    return page.feed, page.episodes


def parse_page(body: bytes, url: str, final_url: str, headers: dict[str, str]) -> FeedPage:
    """Parse one page of a feed, already fetched from `url` (found at `final_url`)."""
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
    return FeedPage(feed, episodes, urldefrag(resolve_url(final_url, next_href)).url if next_href else None)


def _why_not_a_feed(error: Exception | None) -> str:
    """feedparser's reason in words that quote nothing of the document: its own messages may (a declared encoding,
    a namespace prefix)."""
    if isinstance(error, SAXParseException):
        return f"not well-formed XML ({error.getMessage()})"  # expat's fixed wording: 'mismatched tag', ...
    return "no RSS or Atom document found"


def conditional_headers(validators: FeedValidators | None) -> dict[str, str]:
    if validators is None:
        return {}
    headers = {"If-None-Match": validators.etag, "If-Modified-Since": validators.last_modified}
    return {name: value for name, value in headers.items() if value}


def fetch_feed(
    url: str, settings: Settings, validators: FeedValidators | None = None, operator_url: bool = False
) -> tuple[Feed, list[Episode]] | None:
    """GET the feed (following redirects, within the size limit) and each next page it links (RFC 5005), and parse
    them; None when the server answers the conditional GET of the first page with 304 Not Modified.

    `operator_url`: the operator gave `url` (not an OPML list), so its host is trusted for the first page's GET."""
    fetched = fetch_document(
        url, settings, FeedError, headers=conditional_headers(validators), operator_url=operator_url
    )
    if fetched.not_modified:
        return None
    first = parse_page(fetched.body, url, fetched.final_url, fetched.headers)
    pages, paging_error = _read_pages(first, {url, fetched.final_url}, settings)
    episodes: dict[str, Episode] = {}
    for episode in (episode for page in pages for episode in page.episodes):
        episodes.setdefault(episode.episode_id, episode)  # the first of repeats: pages may overlap as they shift
    return first.feed.model_copy(update={"paging_error": paging_error}), list(episodes.values())


def _read_pages(first: FeedPage, read: set[str], settings: Settings) -> tuple[list[FeedPage], str | None]:
    """`first` and the pages after it, in order; and why pages were left unread, if any were.

    At most `settings.max_feed_pages` pages, none twice (a page may link back to an earlier one). Each is fetched
    like the first, so the same size, time and address rules apply, but unconditionally: validators name the first.
    """
    pages = [first]
    while (next_url := pages[-1].next_url) is not None and next_url not in read:
        if len(pages) == settings.max_feed_pages:
            return pages, (
                f"{redact_url(next_url)} and any pages after it were not read: the feed has more than "
                f"max_feed_pages={settings.max_feed_pages} pages"
            )
        try:
            fetched = fetch_document(next_url, settings, FeedError, what=f"page {len(pages) + 1} of the feed")
            pages.append(parse_page(fetched.body, next_url, fetched.final_url, fetched.headers))
        except FeedError as exc:
            return pages, redact_urls(str(exc))
        read |= {next_url, fetched.final_url}
    return pages, None


# Prefect's protocol for a name callback has a classmethod no function has: mypy cannot match any function to it.
@task(name="fetch-feed", cache_policy=NO_CACHE, task_run_name=fetch_feed_run_name)  # type: ignore[arg-type]
@fail_quietly
def fetch_feed_task(
    url: str, settings: Settings, validators: FeedValidators | None = None, operator_url: bool = False
) -> tuple[Feed, list[Episode]] | None:
    return fetch_feed(url, settings, validators, operator_url)
