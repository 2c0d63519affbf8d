"""The names of feed and episode folders: what a person browsing the output folder reads, with an id only where two
would otherwise share a name.

A feed's folder is named by a slug of the show's title (of its host where it has none), an episode's by its date and
a slug of its title. Each name is lowercase ASCII words and '-', so no file system (Linux, macOS, Windows) refuses
it or folds two into one, none is a name Windows reserves, and each is bounded in length.

Names the previous releases gave (hashes of the URL and of episode ids) are made here too, so that a run today finds
those folders and renames them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable
from urllib.parse import urlsplit, urlunsplit

from tasks.errors import StorageError
from tasks.models import Episode, Feed, LedgerEntry
from tasks.redaction import redact_credentials, redact_url, redact_urls, redact_urls_0_2

SLUG_MAX_CHARS = 60
FEED_SLUG_MAX_CHARS = 50
# The names Windows gives devices, whatever their case or extension: a folder may not take one.
WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{port}{n}" for port in ("com", "lpt") for n in range(10)}
ID_CHARS = (6, 16, 64)  # an id where a name is taken, lengthened where that is taken too
# What the previous releases put after an episode folder's slug: 8, 16 or 64 hex digits of its id.
HASHED_EPISODE_NAME = re.compile(r"^(.+)-(?:[0-9a-f]{8}|[0-9a-f]{16}|[0-9a-f]{64})$")


def slugify(text: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """Lowercase ASCII words joined by '-': safe as a file name on every OS, never empty."""
    return _words(text, max_chars) or "untitled"


def _words(text: str, max_chars: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))[:max_chars].strip("-")


def short_hash(text: str, chars: int = 16) -> str:
    """The first `chars` hex digits of the text's SHA-256; 16 (64 bits) leave no chance collision to fear."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def feed_identity(feed_url: str) -> str:
    """What makes a feed the same feed from run to run: 16 hex of the URL podflow was given, which (unlike its
    title) a publisher cannot change under us.

    The hash covers the whole URL, credentials included: feeds that differ only in a token are different feeds, so
    a rotated token starts a new folder (and does its episodes again). Only blanks around the URL and the case of
    scheme and host make no difference."""
    parts = urlsplit(feed_url.strip())
    userinfo, at, host = parts.netloc.rpartition("@")
    identity = urlunsplit((parts.scheme.lower(), userinfo + at + host.lower(), parts.path, parts.query, parts.fragment))
    return short_hash(identity)


def feed_folder_names(feed: Feed, identity: str) -> list[str]:
    """The names a feed's folder may take, the first free one to be used: the slug of its title, then the same with
    more and more of its identity after it. A feed without a title of its own (feed_parse gives it the URL's) or
    with none in letters or digits is named by its host."""
    own_title = "" if feed.title in {redact_url(feed.url), redact_url(feed.final_url)} else feed.title
    base = _words(own_title, FEED_SLUG_MAX_CHARS) or slugify(urlsplit(feed.url).hostname or "", FEED_SLUG_MAX_CHARS)
    names = _names(base, identity)
    return names[1:] if base in WINDOWS_RESERVED else names


def previous_feed_folder_name(feed_url: str, redact: Callable[[str], str] = redact_urls) -> str:
    """The folder the previous release gave the feed: a slug of its masked host and path, its identity after it."""
    parts = urlsplit(feed_url.strip())
    host = parts.netloc.rpartition("@")[2]
    return f"{slugify(host + ' ' + redact(parts.path), 40)}-{feed_identity(feed_url)}"


def feed_folder_name_0_2(feed_url: str) -> str:
    """The folder podflow 0.2 gave the feed: the previous release's name, its path masked by 0.2's rule."""
    return previous_feed_folder_name(feed_url, redact_urls_0_2)


def old_feed_folder_name(feed_url: str) -> str:
    """The folder an older podflow gave the feed: the slug of its unmasked path, 32 bits of its masked URL."""
    parts = urlsplit(feed_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{slugify(host + ' ' + parts.path, 40)}-{short_hash(redact_credentials(feed_url), 8)}"


def episode_folder_base(episode: Episode) -> str:
    """The episode's folder name where no other episode of the feed has it: its date and a slug of its title."""
    date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated"
    return f"{date}-{slugify(episode.title)}"


def free_episode_folder_name(episode: Episode, taken: Collection[str]) -> str:
    """The episode's folder name, with an id of it after the date and title where another entry of the ledger has
    that name already: two episodes never share a folder."""
    return _free(_names(episode_folder_base(episode), short_hash(episode.episode_id, 64)), taken, episode.episode_id)


def renamed_episode_folders(entries: Iterable[LedgerEntry]) -> dict[str, str]:
    """Today's names for the folders of a ledger the previous releases named (each `<date>-<slug>-<hash>`), old
    name -> new: each less its hash, with an id where two would share a name. The same ledger always gives the same
    names, so a renaming cut short is finished by the next run."""
    entries = list(entries)
    taken = {entry.folder for entry in entries}
    renamed: dict[str, str] = {}
    for entry in entries:
        if (hashed := HASHED_EPISODE_NAME.match(entry.folder)) is not None:
            renamed[entry.folder] = _free(_names(hashed[1], short_hash(entry.episode_id, 64)), taken, entry.episode_id)
            taken.add(renamed[entry.folder])
    return renamed


def _names(base: str, identity: str) -> list[str]:
    return [base] + [f"{base}-{identity[:chars]}" for chars in ID_CHARS if chars <= len(identity)]


def _free(names: list[str], taken: Collection[str], whose: str) -> str:
    for name in names:
        if name not in taken:
            return name
    raise StorageError(f"every folder name for episode {whose} is taken in the ledger, {names[-1]} included")
