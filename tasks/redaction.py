"""Credentials never leave podflow: URL passwords, secret query values and token-like path segments are masked in
every error message and every record written to disk or shown in the UI. Private podcast feeds carry them in just
those places.

A query (or fragment) value is masked when its parameter's name says it is a credential (`token`, `api_key`,
`X-Amz-Signature`, `private`, `hash`, ...), or when the value itself looks random, whatever the name (`?k=`, `?p=`).
A path segment is masked when it looks random. A value looks random when it holds a UUID, or it is made of
A-Z a-z 0-9 and `-_.~+/=` only, mixes letters and digits, and either
- is 20 or more hex digits in one case (hex is judged by this rule alone), except a MongoDB ObjectId (24 hex
  digits whose first 8 are a time between 2009 and 2038: a database's id, as in
  `/article/54e703933058540300000069`), or
- is 16 (query values) or 20 (path segments) characters or more with a part (split at `-_.~+/=`) that is no ordinary
  word. Ordinary are a word, a number, a word and a number run together (`ep12`, `1080p`), and up to 16 characters
  in one case (`s01e02`, `h264`, the 16-hex hashes in podflow's own folder names).
So `/feeds/3f9a8b7c6d5e4f3a2b1c0d9e/rss`, `/private/aB3dE5gH7jK9mN1pQ3rS5tU7/feed.xml` and `?id=` with a SHA-1 are
masked, and `episode-2026-11-20-title`, `?p=123`, short ids and file names are kept.

It cannot catch a token shorter than that, one of letters only or digits only, one split into ordinary parts that is
not a UUID, an ObjectId-shaped one, or one in a host name. It masks a long value holding a camelCase word with digits
inside (`iPhone15Pro-Max-Review-Episode`): less readable, never less safe. Every pattern here runs in time linear in
its text (no pattern can backtrack over more than one run of its own characters), since a stranger writes the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import unquote

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
# Names whose value is private whatever it looks like, beyond SECRET_WORDS (which older folder names rest on).
PRIVATE_WORDS = {"private", "access", "hash", "code", "nonce", "otp"}
USERINFO = re.compile(r"(?<=://)[^/?#@\s]+@")
USERINFO_TO_LAST_AT = re.compile(r"(?<=://)[^/?#\s]*@")  # a password may hold an @ itself
# A name=value pair after ? & or #, in a whole URL or in a bare path such as urllib3 puts in its messages.
# The value stops before trailing punctuation, so "…?token=abc: 404" keeps its colon. A name holds none of the
# characters that may start one, so no run of them is scanned twice (`x?;;;;…` is linear).
PARAMETER = re.compile(r"(?<=[?&#;])([^=&#;?\s'\"<>]+)=((?:[^&#\s'\"<>]*[^&#\s'\"<>.,:;!?)\]])?)")
NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# Path tokens, by the rule in the module docstring.
PATH_SEGMENT = re.compile(r"(?<=/)(?<!//)[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])")
UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
ORDINARY_PART = re.compile(r"[A-Za-z]*[0-9]*|[0-9]*[A-Za-z]*|[a-z0-9]{1,16}|[A-Z0-9]{1,16}")
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9_.~+/=-]+")
HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
OBJECT_ID_TIMES = (int(datetime(2009, 1, 1, tzinfo=UTC).timestamp()), 2**31)  # MongoDB's first year, to 2038
MIN_RANDOM_VALUE, MIN_RANDOM_SEGMENT = 16, 20


def is_secret_name(name: str) -> bool:
    """Whether a query parameter of this name holds a credential, as podflow first decided (folder names rest on it)."""
    return any(word.lower() in SECRET_WORDS for word in NAME_WORDS.findall(name))


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter of this name holds a credential: by its words, or run together (`accesstoken`)."""
    return is_secret_name(name) or re.sub("[-_.]", "", name.lower()).endswith(SECRET_SUFFIXES)


def is_object_id(value: str) -> bool:
    """24 hex digits that start with a plausible creation time, as every MongoDB ObjectId does."""
    return len(value) == 24 and OBJECT_ID_TIMES[0] <= int(value[:8], 16) < OBJECT_ID_TIMES[1]


def looks_random(value: str, min_length: int) -> bool:
    """Whether a value looks like a credential, by the rule in the module docstring."""
    if UUID.search(value):
        return True
    if not (TOKEN_CHARACTERS.fullmatch(value) and re.search("[A-Za-z]", value) and re.search("[0-9]", value)):
        return False
    if HEX.fullmatch(value):
        return len(value) >= MIN_RANDOM_SEGMENT and not is_object_id(value)
    return len(value) >= min_length and not all(map(ORDINARY_PART.fullmatch, re.split("[-_.~+/=]", value)))


def is_path_token(segment: str) -> bool:
    """Whether a path segment of 20+ characters looks like a credential, by the rule in the module docstring."""
    return looks_random(segment, MIN_RANDOM_SEGMENT)


def is_secret_value(name: str, value: str) -> bool:
    private_name = bool({word.lower() for word in NAME_WORDS.findall(name)} & PRIVATE_WORDS)
    return is_secret_parameter(name) or private_name or looks_random(unquote(value), MIN_RANDOM_VALUE)


def was_path_token(segment: str) -> bool:
    """A path token as podflow 0.2 told one (20+ characters mixing letters and digits, with a UUID or a part that is
    no ordinary word), which its folder names and GUID ids were made of."""
    if not (re.search("[A-Za-z]", segment) and re.search("[0-9]", segment)):
        return False
    return bool(UUID.search(segment)) or not all(map(ORDINARY_PART.fullmatch, re.split("[-_]", segment)))


def _masked(text: str, userinfo: re.Pattern[str], is_secret: Callable[[str, str], bool]) -> str:
    text = userinfo.sub(f"{MASK}@", text)
    return PARAMETER.sub(lambda m: f"{m[1]}={MASK}" if m[2] and is_secret(m[1], m[2]) else m[0], text)


def redact_credentials(text: str) -> str:
    """`text` as podflow 0.1 masked it (passwords, query values of secret-named parameters), which older folder
    names were made of; not for anything shown or stored."""
    return _masked(text, USERINFO, lambda name, value: is_secret_name(name))


def redact_urls_0_2(text: str) -> str:
    """`text` as podflow 0.2 masked it (by parameter names only, path tokens by `was_path_token`), which its folder
    names and GUID ids were made of: runs today take those over; not for anything shown or stored."""
    masked = _masked(text, USERINFO_TO_LAST_AT, lambda name, value: is_secret_parameter(name))
    return PATH_SEGMENT.sub(lambda m: MASK if was_path_token(m[0]) else m[0], masked)


def redact_urls(text: str) -> str:
    """`text` with the user:password of any URL, secret query values and token-like path segments replaced by ***;
    everything else, other URLs and punctuation included, is left exactly as it was."""
    masked = _masked(text, USERINFO_TO_LAST_AT, is_secret_value)
    return PATH_SEGMENT.sub(lambda m: MASK if is_path_token(m[0]) else m[0], masked)


redact_url = redact_urls  # one URL is a text like any other

# A URL kept in full in memory (podflow fetches it) and masked wherever it is serialised.
RedactedUrl = Annotated[str, PlainSerializer(redact_url, when_used="json")]
