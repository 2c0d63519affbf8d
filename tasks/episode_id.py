"""What names an episode: its GUID (masked where it holds a credential), else its enclosure's identity; and the ids
older podflows gave, so their ledgers are re-keyed rather than their episodes processed again.

URL normalisation is our own: no library drops ad-network and tracking parameters while keeping a query that is
the identity (`download.php?id=7`) or carries the file's URL (Podtrac)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tasks.audio import AUDIO_EXTENSIONS
from tasks.models import Episode
from tasks.redaction import redact_url, redact_urls_0_2

# `scheme://` anywhere, or a bare `host.tld/` at the start: how redirect services carry their target in a query.
EMBEDDED_URL = re.compile(r"://|^(?:[a-z0-9-]+\.)+[a-z]{2,}/", re.IGNORECASE)
TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "igshid", "ref", "source"}

MASKED_HASH = " sha256:"  # between a masked GUID and the hash of the whole GUID, in its id


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
    if not episode.enclosure_url or episode.episode_id != hash_id(enclosure_identity(episode.enclosure_url)):
        return None
    legacy = hash_id(normalise_url(episode.enclosure_url))
    return legacy if legacy != episode.episode_id else None


def guid_episode_id(guid: str, redact: Callable[[str], str] = redact_url) -> str:
    """The GUID as the episode's id; where it holds a credential (`…?token=…`), masked, with a hash of the whole
    GUID so that GUIDs differing only there stay apart: the id is written to the ledger and every episode file."""
    masked = redact(guid)
    if masked == guid:
        return guid
    return f"{masked}{MASKED_HASH}{hashlib.sha256(guid.encode('utf-8')).hexdigest()[:16]}"


def renamed_episode_ids(episodes: list[Episode], ledger_ids: Iterable[str]) -> dict[str, str]:
    """The ids an older podflow gave, mapped to today's, for re-keying its ledger: GUID-less episodes' (see
    `legacy_episode_id`), and GUIDs holding a credential, which were stored unmasked. The latter come from the
    ledger itself, since an Episode keeps no unmasked GUID; today's ids map to themselves and are left out."""
    ledger_ids = list(ledger_ids)
    renamed = {old: episode.episode_id for episode in episodes if (old := legacy_episode_id(episode))}
    renamed.update({old: new for old in ledger_ids if (new := guid_episode_id(old)) != old})
    # GUIDs podflow 0.2 masked otherwise: found by the whole GUID where today's id is it, else by its hash.
    masked_by_hash = {old.rpartition(MASKED_HASH)[2]: old for old in ledger_ids if MASKED_HASH in old}
    for new in (episode.episode_id for episode in episodes):
        if MASKED_HASH in new:
            old = masked_by_hash.get(new.rpartition(MASKED_HASH)[2], new)
        else:
            old = guid_episode_id(new, redact_urls_0_2)
        if old != new:
            renamed[old] = new
    return renamed


def hash_id(text: str) -> str:
    """A short, stable id for text that has no id of its own."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
