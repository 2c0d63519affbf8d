"""Fetch a podcast feed over HTTP and parse it into a Feed and its Episodes."""

from __future__ import annotations

import calendar
import hashlib
import time
import unicodedata
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import feedparser
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.audio import AUDIO_EXTENSIONS
from tasks.errors import FeedError, fail_quietly
from tasks.http import fetch_document
from tasks.models import Episode, Feed, FeedValidators, Settings, TranscriptLink, utc_now
from tasks.redaction import redact_url

PODCAST_NAMESPACE = "https://podcastindex.org/namespace/1.0"
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
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
    names an audio file, since hosts and ad networks add and rotate parameters there (`?aid=rss&ts=…`); elsewhere
    (`download.php?id=7`) the query may be the identity, so only tracking parameters are left out."""
    normalised = urlsplit(normalise_url(url))
    names_audio = any(normalised.path.lower().endswith(extension) for extension in AUDIO_EXTENSIONS)
    query = "" if names_audio else normalised.query
    host = normalised.netloc.rsplit("@", 1)[-1]  # a rotated credential is the same episode
    return urlunsplit(("", host, normalised.path, query, ""))


def legacy_episode_id(episode: Episode) -> str | None:
    """The id podflow 0.1 gave this GUID-less episode (its whole normalised enclosure URL), where it differs from
    today's: ledgers written then are re-keyed to today's id, so nothing done then is done again."""
    if not episode.enclosure_url or episode.episode_id != _hash_id(enclosure_identity(episode.enclosure_url)):
        return None
    legacy = _hash_id(normalise_url(episode.enclosure_url))
    return legacy if legacy != episode.episode_id else None


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
    return datetime.fromtimestamp(calendar.timegm(parsed), timezone.utc) if parsed else None


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


def _transcript_links(body: bytes, base_url: str) -> list[tuple[TranscriptLink, ...]] | None:
    """Every item's `<podcast:transcript>` links, in item order; None where the XML cannot be read that way.

    feedparser keeps only the last such element per item, so the XML is read a second time for them.
    """
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    return [
        tuple(
            TranscriptLink(
                url=resolve_url(base_url, link.get("url", "")),
                type=link.get("type"),
                language=link.get("language"),
                rel=link.get("rel"),
            )
            for link in item.iter(f"{{{PODCAST_NAMESPACE}}}transcript")
            if link.get("url")
        )
        for item in root.iter("item")
    ]


def episode_from_entry(entry: Any, base_url: str, transcripts: tuple[TranscriptLink, ...]) -> Episode:
    """One feedparser entry as an Episode, with every URL resolved against the feed's final URL."""
    enclosures = [link for link in entry.get("links", []) if link.get("rel") == "enclosure" and link.get("href")]
    audio = next((link for link in enclosures if str(link.get("type", "")).startswith("audio/")), None)
    enclosure = audio or (enclosures[0] if enclosures else None)
    enclosure_url = resolve_url(base_url, enclosure["href"]) if enclosure else None
    title = clean_text(entry.get("title") or "")
    published = _timestamp(entry.get("published_parsed") or entry.get("updated_parsed"))
    guid = (entry.get("id") or "").strip()
    if guid:
        episode_id = guid
    elif enclosure_url:
        episode_id = _hash_id(enclosure_identity(enclosure_url))
    else:
        episode_id = _hash_id(f"{title}\n{published}\n{entry.get('link', '')}")
    if not transcripts and entry.get("podcast_transcript", {}).get("url"):
        found = entry["podcast_transcript"]
        transcripts = (TranscriptLink(url=resolve_url(base_url, found["url"]), type=found.get("type")),)
    return Episode(
        episode_id=episode_id,
        title=title or "untitled",
        published=published,
        description=entry.get("summary", ""),
        link=resolve_url(base_url, entry["link"]) if entry.get("link") else None,
        image=_image(entry, base_url),
        enclosure_url=enclosure_url,
        enclosure_type=enclosure.get("type") if enclosure else None,
        enclosure_length=_parse_int(enclosure.get("length")) if enclosure else None,
        itunes_duration_s=_parse_duration(entry.get("itunes_duration")),
        season=_parse_int(entry.get("itunes_season")),
        episode_number=_parse_int(entry.get("itunes_episode")),
        transcripts=transcripts,
    )


def parse_feed(body: bytes, url: str, final_url: str, headers: dict[str, str]) -> tuple[Feed, list[Episode]]:
    """Parse feed XML already fetched from `url` (found at `final_url`)."""
    parsed = feedparser.parse(body)
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception") or "no RSS or Atom document found"
        raise FeedError(f"{url} is not a podcast feed: {reason}")
    channel = parsed.feed
    feed = Feed(
        url=url,
        final_url=final_url,
        title=clean_text(channel.get("title") or "") or redact_url(final_url),
        link=resolve_url(final_url, channel["link"]) if channel.get("link") else None,
        description=channel.get("subtitle", "") or channel.get("summary", ""),
        image=_image(channel, final_url),
        language=channel.get("language"),
        author=channel.get("author") or channel.get("itunes_author"),
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        fetched_at=utc_now(),
    )
    links = _transcript_links(body, final_url) if PODCAST_NAMESPACE.encode() in body else None
    if links is None or len(links) != len(parsed.entries):
        links = [()] * len(parsed.entries)
    return feed, [episode_from_entry(entry, final_url, found) for entry, found in zip(parsed.entries, links)]


def conditional_headers(validators: FeedValidators | None) -> dict[str, str]:
    if validators is None:
        return {}
    headers = {"If-None-Match": validators.etag, "If-Modified-Since": validators.last_modified}
    return {name: value for name, value in headers.items() if value}


def fetch_feed(
    url: str, settings: Settings, validators: FeedValidators | None = None
) -> tuple[Feed, list[Episode]] | None:
    """GET the feed (following redirects, within the size limit) and parse it; None when the server answers a
    conditional GET with 304 Not Modified."""
    fetched = fetch_document(url, settings, FeedError, headers=conditional_headers(validators))
    if fetched.not_modified:
        return None
    return parse_feed(fetched.body, url, fetched.final_url, fetched.headers)


def _fetch_feed_run_name(parameters: dict[str, Any]) -> str:
    return f"fetch-feed · {redact_url(parameters['url'])}"


@task(name="fetch-feed", cache_policy=NO_CACHE, task_run_name=_fetch_feed_run_name)
@fail_quietly
def fetch_feed_task(
    url: str, settings: Settings, validators: FeedValidators | None = None
) -> tuple[Feed, list[Episode]] | None:
    return fetch_feed(url, settings, validators)
