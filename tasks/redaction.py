"""Credentials never leave podflow: URL passwords and token-like query values are masked in every error message
and every record written to disk or shown in the UI. Private podcast feeds carry them in just those places.

A token inside a URL's path (`/feeds/3f9a…/rss`) cannot be told from an ordinary path and is left as it is.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import PlainSerializer

MASK = "***"
# Words of a query parameter's name that make its value a credential: access_token, X-Amz-Signature, apiKey, ...
SECRET_WORDS = {"token", "secret", "key", "apikey", "sig", "signature", "auth", "authorization", "password", "pass",
                "passwd", "session", "sessionid", "credential", "credentials", "jwt"}
USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")
# A name=value pair after ? & or #, in a whole URL or in a bare path such as urllib3 puts in its messages.
# The value stops before trailing punctuation, so "…?token=abc: 404" keeps its colon.
PARAMETER = re.compile(r"(?<=[?&#;])([^=&#\s'\"<>]+)=((?:[^&#\s'\"<>]*[^&#\s'\"<>.,:;!?)\]])?)")
NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_secret_name(name: str) -> bool:
    return any(word.lower() in SECRET_WORDS for word in NAME_WORDS.findall(name))


def redact_urls(text: str) -> str:
    """`text` with the user:password of any URL and the values of token-like query parameters replaced by ***;
    everything else, other URLs and punctuation included, is left exactly as it was."""
    text = USERINFO.sub(f"{MASK}@", text)
    return PARAMETER.sub(lambda m: f"{m[1]}={MASK}" if is_secret_name(m[1]) and m[2] else m[0], text)


redact_url = redact_urls  # one URL is a text like any other

# A URL kept in full in memory (podflow fetches it) and masked wherever it is serialised.
RedactedUrl = Annotated[str, PlainSerializer(redact_url, when_used="json")]
