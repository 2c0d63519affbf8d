"""The names of feed and episode folders: readable slugs, and hashes of what a publisher cannot change under us.

Names an older podflow gave are made here too, so that runs today take those folders over.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from tasks.errors import StorageError
from tasks.models import Episode
from tasks.redaction import redact_credentials, redact_urls, redact_urls_0_2

SLUG_MAX_CHARS = 60


def slugify(text: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """Lowercase ASCII words joined by '-': safe as a file name on every OS, never empty."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = "-".join(words)[:max_chars].strip("-")
    return slug or "untitled"


def short_hash(text: str, chars: int = 16) -> str:
    """The first `chars` hex digits of the text's SHA-256; 16 (64 bits) leave no chance collision to fear."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def feed_folder_name(feed_url: str, redact: Callable[[str], str] = redact_urls) -> str:
    """Named from the URL podflow was given, which (unlike a feed's title) a publisher cannot change under us.

    The hash covers the whole URL, credentials included: feeds that differ only in a token are different feeds, so
    a rotated token starts a new folder (and does its episodes again). Only blanks around the URL and the case of
    scheme and host make no difference. The name shows no credential: its slug is of the masked host and path."""
    parts = urlsplit(feed_url.strip())
    userinfo, at, host = parts.netloc.rpartition("@")
    identity = urlunsplit((parts.scheme.lower(), userinfo + at + host.lower(), parts.path, parts.query, parts.fragment))
    return f"{slugify(host + ' ' + redact(parts.path), 40)}-{short_hash(identity)}"


def feed_folder_name_0_2(feed_url: str) -> str:
    """The folder podflow 0.2 gave the feed: today's name, its path masked by that release's rule."""
    return feed_folder_name(feed_url, redact_urls_0_2)


def old_feed_folder_name(feed_url: str) -> str:
    """The folder an older podflow gave the feed: the slug of its unmasked path, 32 bits of its masked URL."""
    parts = urlsplit(feed_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{slugify(host + ' ' + parts.path, 40)}-{short_hash(redact_credentials(feed_url), 8)}"


def episode_folder_name(episode: Episode, hash_chars: int = 16) -> str:
    date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated"
    return f"{date}-{slugify(episode.title)}-{short_hash(episode.episode_id, hash_chars)}"


def free_episode_folder_name(episode: Episode, taken: set[str]) -> str:
    """The episode's folder name, its hash lengthened where another entry has that name already (a 64-bit
    collision, or a name an older podflow gave): two episodes never share a folder."""
    for hash_chars in (16, 64):
        if (name := episode_folder_name(episode, hash_chars)) not in taken:
            return name
    raise StorageError(f"every folder name for episode {episode.episode_id} is taken in the ledger, {name} included")
