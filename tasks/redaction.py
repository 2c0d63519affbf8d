"""Credentials never leave podflow: URL passwords, token-like query values and token-like path segments are masked
in every error message and every record written to disk or shown in the UI. Private podcast feeds carry them in
just those places.

A path segment is taken for a token (and shown as ***) where it follows a '/' (not the '//' before a host), is 20 or
more characters of A-Z a-z 0-9 _ -, mixes letters and digits, and either holds a UUID or has a part (split at - and
_) that is no ordinary word. Ordinary are a word, a number, a word and a number run together (`ep12`, `1080p`), and
up to 16 characters in one case (`s01e02`, `h264`, the 16-hex hashes in podflow's own folder names). So
`/feeds/3f9a8b7c6d5e4f3a2b1c0d9e/rss` and `/private/aB3dE5gH7jK9mN1pQ3rS5tU7/feed.xml` are masked, and
`episode-2026-11-20-title`, `my-podcast-episode-12`, short ids and file names are kept.

It cannot catch a token shorter than 20 characters, one of letters only or digits only, one split by - or _ into
lowercase (or uppercase) parts of 16 characters or fewer that is not a UUID, one percent-encoded, or one in a host
name. It masks a long segment holding a camelCase word with digits inside (`iPhone15Pro-Max-Review-Episode`): less
readable, never less safe.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import PlainSerializer

MASK = "***"
# Words of a query parameter's name that make its value a credential: access_token, X-Amz-Signature, apiKey, ...
SECRET_WORDS = {
    "token",
    "secret",
    "key",
    "apikey",
    "sig",
    "signature",
    "auth",
    "authorization",
    "password",
    "pass",
    "passwd",
    "session",
    "sessionid",
    "credential",
    "credentials",
    "jwt",
}
# Run-together names end in one of these: accesstoken, jsessionid, privatekey (a bare `key` could be `monkey`).
SECRET_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "sessionid",
    "signature",
    "credential",
    "credentials",
    "privatekey",
    "accesskey",
    "secretkey",
    "authkey",
)
USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")
USERINFO_TO_LAST_AT = re.compile(r"(?<=://)[^/?#\s]*@")  # a password may hold an @ itself
# A name=value pair after ? & or #, in a whole URL or in a bare path such as urllib3 puts in its messages.
# The value stops before trailing punctuation, so "…?token=abc: 404" keeps its colon.
PARAMETER = re.compile(r"(?<=[?&#;])([^=&#\s'\"<>]+)=((?:[^&#\s'\"<>]*[^&#\s'\"<>.,:;!?)\]])?)")
NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Path tokens, by the rule in the module docstring.
PATH_SEGMENT = re.compile(r"(?<=/)(?<!//)[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])")
UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
ORDINARY_PART = re.compile(r"[A-Za-z]*[0-9]*|[0-9]*[A-Za-z]*|[a-z0-9]{1,16}|[A-Z0-9]{1,16}")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter of this name holds a credential, as podflow first decided (folder names rest on it)."""
    return any(word.lower() in SECRET_WORDS for word in NAME_WORDS.findall(name))


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter of this name holds a credential: by its words, or run together (`accesstoken`)."""
    return is_secret_name(name) or re.sub("[-_.]", "", name.lower()).endswith(SECRET_SUFFIXES)


def is_path_token(segment: str) -> bool:
    """Whether a path segment of 20+ characters looks like a credential, by the rule in the module docstring."""
    if not (re.search("[A-Za-z]", segment) and re.search("[0-9]", segment)):
        return False
    return bool(UUID.search(segment)) or not all(map(ORDINARY_PART.fullmatch, re.split("[-_]", segment)))


def _masked(text: str, userinfo: re.Pattern[str], is_secret: Callable[[str], bool]) -> str:
    text = userinfo.sub(f"{MASK}@", text)
    return PARAMETER.sub(lambda m: f"{m[1]}={MASK}" if is_secret(m[1]) and m[2] else m[0], text)


def redact_credentials(text: str) -> str:
    """`text` as podflow 0.1 masked it (passwords, query values of secret-named parameters), which older folder
    names were made of; not for anything shown or stored."""
    return _masked(text, USERINFO, is_secret_name)


def redact_urls(text: str) -> str:
    """`text` with the user:password of any URL, the values of token-like query parameters and token-like path
    segments replaced by ***; everything else, other URLs and punctuation included, is left exactly as it was."""
    masked = _masked(text, USERINFO_TO_LAST_AT, is_secret_parameter)
    return PATH_SEGMENT.sub(lambda m: MASK if is_path_token(m[0]) else m[0], masked)


redact_url = redact_urls  # one URL is a text like any other

# A URL kept in full in memory (podflow fetches it) and masked wherever it is serialised.
RedactedUrl = Annotated[str, PlainSerializer(redact_url, when_used="json")]
