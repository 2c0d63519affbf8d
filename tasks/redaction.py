"""Credentials never leave podflow: URL passwords and token-like query values are masked in every error message
and every record written to disk or shown in the UI. Private podcast feeds carry them in just those places."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import PlainSerializer

MASK = "***"
# Query parameters whose values are credentials (matched as substrings: `access_token`, `X-Amz-Signature`, ...).
SECRET_PARAMETERS = ("token", "secret", "key", "sig", "auth", "pass", "session", "credential", "jwt")
URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """The URL with any user:password and the values of token-like query parameters replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
        query = urlencode(
            [(name, MASK if any(word in name.lower() for word in SECRET_PARAMETERS) else value)
             for name, value in parse_qsl(parts.query, keep_blank_values=True)],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not parseable as a URL: nothing in it can be trusted to be safe to show
        return MASK


def redact_urls(text: str) -> str:
    return URL_IN_TEXT.sub(lambda match: redact_url(match[0]), text)


# A URL kept in full in memory (podflow fetches it) and masked wherever it is serialised.
RedactedUrl = Annotated[str, PlainSerializer(redact_url, when_used="json")]
