"""The one HTTP session factory, and the bounded GET for small documents (feeds, published transcripts)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from tasks.errors import PodflowError
from tasks.models import Settings

MAX_REDIRECTS = 10
MAX_RETRY_AFTER_S = 60.0  # a longer Retry-After is waited for a minute, then tried again


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds (given as seconds or as an HTTP date), capped at MAX_RETRY_AFTER_S; None when absent.

    `headers` must look names up case-insensitively, as requests' and httpx's do."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def new_session(settings: Settings) -> requests.Session:
    """A requests session with podflow's user agent and a bounded redirect chain."""
    session = requests.Session()
    session.headers["User-Agent"] = settings.user_agent
    session.max_redirects = MAX_REDIRECTS
    return session


@dataclass(frozen=True)
class Fetched:
    body: bytes
    final_url: str
    headers: dict[str, str]
    not_modified: bool = False  # a 304 to a conditional GET: no body


def fetch_document(
    url: str, settings: Settings, error: type[PodflowError], what: str = "", headers: dict[str, str] | None = None
) -> Fetched:
    """GET a document whole, following redirects, refusing it while streaming past `settings.max_feed_bytes`.

    `headers` are sent with it (If-None-Match, If-Modified-Since); a 304 answer comes back as `not_modified`.
    Every failure raises `error` with a message naming the URL (and `what` it was meant to be).
    """
    named = f"{url}{f' ({what})' if what else ''}"
    if urlsplit(url).scheme not in ("http", "https"):
        raise error(f"{named} is not an http(s) URL")
    try:
        with new_session(settings) as session, session.get(
            url, headers=headers, timeout=settings.http_timeout_s, stream=True
        ) as response:
            if response.status_code == 304:
                return Fetched(b"", response.url, dict(response.headers), not_modified=True)
            if response.status_code >= 400:
                raise error(f"{named} returned HTTP {response.status_code} {response.reason}")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > settings.max_feed_bytes:
                    raise error(f"{named} is larger than the {settings.max_feed_bytes:,}-byte document limit")
            return Fetched(bytes(body), response.url, dict(response.headers))
    except requests.TooManyRedirects as exc:
        raise error(f"{named} redirects too many times: {exc}") from exc
    except requests.RequestException as exc:
        raise error(f"{named} could not be fetched: {exc}") from exc
