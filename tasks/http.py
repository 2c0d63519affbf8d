"""The one HTTP session, guarded (tasks/network.py), the one translation of its failures into PodflowErrors, and
the bounded GET for small documents (feeds, OPML lists, published transcripts)."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from tasks.errors import AddressRefusedError, DeadlineExceededError, PodflowError
from tasks.models import NetworkSettings, Settings
from tasks.network import AddressPolicy, Deadline, Guard, host_port

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


def status_line(status: int) -> str:
    """`HTTP 404 Not Found`, in the standard's words: a server's own reason phrase is its text, of any length."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def failure_detail(exc: BaseException, timeout_s: float | None = None) -> str:
    """What went wrong with a request, in words that hold nothing the server sent: a plain reason first (`could
    not connect to 127.0.0.1:9: connection refused`), then, in brackets, the kinds of error along the chain
    (`[ConnectionError ← MaxRetryError ← NewConnectionError ← ConnectionRefusedError]`), which without_chain
    leaves out. The libraries' own messages may quote the bytes received (a status line, a chunk length).
    `timeout_s`: the request's timeout, which a timeout's reason names."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(errors) < 8:
        error = pending.pop(0)
        if all(error is not seen for seen in errors):
            errors.append(error)
            inner = [error.__cause__, error.__context__, getattr(error, "reason", None), *error.args]
            pending += [found for found in inner if isinstance(found, BaseException)]
    kinds = list(dict.fromkeys(type(error).__name__ for error in errors))
    return f"{plain_reason(errors, timeout_s)} [{' ← '.join(kinds)}]"


def plain_reason(errors: list[BaseException], timeout_s: float | None = None) -> str:
    """The reason a request failed, from the errors along its chain (outermost first), in a user's words."""

    def found(*kinds: type[BaseException]) -> BaseException | None:
        return next((error for error in errors if isinstance(error, kinds)), None)

    def connecting(why: str) -> str:
        target = next(filter(None, map(_requested_host_port, errors)), None)
        return f"could not connect{f' to {target}' if target else ''}: {why}"

    after = f" after {timeout_s:g} s" if timeout_s else ""
    if isinstance(cert := found(ssl.SSLCertVerificationError), ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {(cert.verify_message or 'verify failed').rstrip('.')}"
    if isinstance(tls := found(ssl.SSLError), ssl.SSLError):
        return "TLS handshake failed" + (f": {tls.reason.lower().replace('_', ' ')}" if tls.reason else "")
    if found(ConnectionRefusedError):
        return connecting("connection refused")
    if found(socket.gaierror):
        return connecting("name not resolved")
    if found(http.client.IncompleteRead, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut off"
    if found(http.client.RemoteDisconnected):  # before ConnectionResetError, which it is too
        return "the server closed the connection without answering"
    if found(ConnectionResetError):
        return "the connection was reset"
    if found(requests.ConnectTimeout) or any(
        type(error) is urllib3.exceptions.ConnectTimeoutError for error in errors
    ):  # not its subclass NewConnectionError, which any failed connection raises
        return connecting(f"timed out{after}")
    if found(requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        return f"timed out{after} with nothing arriving"
    if found(requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError):
        return "the answer could not be decompressed"
    if found(requests.exceptions.InvalidURL, urllib3.exceptions.LocationParseError):
        return "the URL is not valid"
    if system := next((error for error in errors if isinstance(error, OSError) and error.strerror), None):
        why = str(system.strerror)[:1].lower() + str(system.strerror)[1:]  # the system's: `network is unreachable`
        return connecting(why) if found(urllib3.exceptions.NewConnectionError) else why
    # http.client's and h11's (under httpx) errors for an answer that is not HTTP
    if found(http.client.HTTPException) or any(type(error).__name__ == "RemoteProtocolError" for error in errors):
        return "the answer is not valid HTTP"
    if found(urllib3.exceptions.ProtocolError):
        return "the connection broke off"
    return "the request failed"


def _requested_host_port(error: BaseException) -> str | None:
    """`host:port` of the request an error is about (requests' and httpx's errors carry it), or None."""
    try:
        request = getattr(error, "request", None)  # httpx's raises RuntimeError where none was set
    except RuntimeError:
        return None
    url = getattr(request, "url", None)
    return host_port(str(url)) if url else None


# A failure's chain of kinds in brackets, as failure_detail writes it: class names only, so nothing else matches.
CHAIN = re.compile(r" \[(\w+(?: ← \w+)*)\]")


def without_chain(text: str) -> str:
    """`text` with each chain of kinds failure_detail wrote left out: the plain reasons alone."""
    return CHAIN.sub("", text)


# What a request through a GuardedSession raises when it fails; the transient ones are worth another try.
REQUEST_ERRORS = (AddressRefusedError, DeadlineExceededError, requests.RequestException, urllib3.exceptions.HTTPError)
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
)


def request_error(
    exc: Exception,
    named: str,
    error: type[PodflowError],
    *,
    transient: type[PodflowError] | None = None,
    late: str | None = None,
    timeout_s: float | None = None,
    redirects: str = f"more than {MAX_REDIRECTS} times",
) -> PodflowError:
    """The error a request for `named` (its URL, and what it was meant to be) fails with, for `exc`, one of
    REQUEST_ERRORS, in words that quote nothing the server sent. A refused address or a passed deadline names its
    rule, and too many redirects or a redirect to a URL that is not http(s) says so; any other failure is `late`
    where given (the caller's deadline has passed), else `named` and failure_detail's words (`timeout_s`: the
    request's timeout): a `transient` error for TRANSIENT_ERRORS where given (connection errors, timeouts, cut-off
    bodies), an `error` for the rest (a malformed URL)."""
    if isinstance(exc, (AddressRefusedError, DeadlineExceededError)):
        return error(f"{named}: {exc}")
    if isinstance(exc, requests.TooManyRedirects):
        return error(f"{named} redirects {redirects}")
    if isinstance(exc, requests.exceptions.InvalidSchema):  # the first URL's scheme is checked: a redirect's is not
        return error(f"{named} redirects to a URL that is not http(s)")
    if late is not None:
        return error(late)
    kind = transient if transient is not None and isinstance(exc, TRANSIENT_ERRORS) else error
    return kind(f"{named}: {failure_detail(exc, timeout_s)}")


class _GuardedConnectionMixin:
    """urllib3's own connection step, made through the guard; its errors translated as urllib3 translates them."""

    host: str
    port: int
    timeout: Any
    socket_options: Any
    _dns_host: str

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        conn: Any = self  # urllib3's exceptions want the connection object itself
        try:
            return self.guard.connect(self._dns_host, self.port, self.timeout, self.socket_options)
        except socket.gaierror as exc:
            raise urllib3.exceptions.NameResolutionError(self.host, conn, exc) from exc
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(conn, f"Connection to {self.host} timed out") from exc
        except OSError as exc:
            raise urllib3.exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc


class _GuardedHTTPConnection(_GuardedConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _GuardedPoolManager(urllib3.PoolManager):
    def __init__(self, guard: Guard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(**kwargs)

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> urllib3.HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _GuardedHTTPSConnection if scheme == "https" else _GuardedHTTPConnection
        pool.conn_kw["guard"] = self.guard
        return pool


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self.poolmanager = _GuardedPoolManager(
            self.guard, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


def _unread_if_redirect(response: requests.Response, **kwargs: Any) -> requests.Response:
    """A redirect's body is never read: requests would read it whole (and inflate it) before following, with no
    size limit."""
    if response.is_redirect:
        response.raw.close()  # the connection too: its unread body would be the next response's start
        response.raw.release_conn()
        response._content, response._content_consumed = b"", True  # type: ignore[attr-defined]
    return response


class GuardedSession(requests.Session):
    """A requests session whose every connection, every redirect hop included, obeys the network settings' address rules
    and ends when `deadline` does; `operator_url`'s own host:port (a URL the operator gave, not one from a document)
    may be reached wherever it resolves. Proxies and .netrc from the environment are not used: podflow could not
    check where a proxy connects, and a stranger's host must never receive a stored password."""

    def __init__(self, network: NetworkSettings, deadline_s: float, operator_url: str | None = None) -> None:
        super().__init__()
        self.trust_env = False
        self.headers["User-Agent"] = network.user_agent
        self.max_redirects = MAX_REDIRECTS
        self.deadline = Deadline(deadline_s)
        self.hooks["response"].append(_unread_if_redirect)
        policy = AddressPolicy(tuple(network.allowed_networks), host_port(operator_url) if operator_url else None)
        adapter = _GuardedAdapter(Guard(policy, self.deadline))
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def close(self) -> None:
        super().close()
        self.deadline.close()


@dataclass(frozen=True)
class Fetched:
    body: bytes
    final_url: str
    headers: dict[str, str]
    not_modified: bool = False  # a 304 to a conditional GET: no body


def fetch_document(
    url: str,
    settings: Settings,
    error: type[PodflowError],
    what: str = "",
    headers: dict[str, str] | None = None,
    operator_url: bool = False,
) -> Fetched:
    """GET a document whole, following redirects, refusing it while streaming past `settings.documents.max_feed_bytes`
    (counted after decompression) or `settings.documents.max_document_s` (headers and redirects included).

    `headers` are sent with it (If-None-Match, If-Modified-Since); a 304 answer comes back as `not_modified`.
    `operator_url`: the URL is one the operator gave (not one from a document), so its own host is trusted.
    Every failure raises `error` with a message naming the URL (and `what` it was meant to be), never quoting the
    body.
    """
    named = f"{url}{f' ({what})' if what else ''}"
    if urlsplit(url).scheme not in ("http", "https"):
        raise error(f"{named} is not an http(s) URL")
    too_slow = f"{named} was still arriving after the {settings.documents.max_document_s:g}-second max_document_s limit"
    with GuardedSession(settings.network, settings.documents.max_document_s, url if operator_url else None) as session:
        try:
            with session.get(url, headers=headers, timeout=settings.network.http_timeout_s, stream=True) as response:
                if response.status_code == 304:
                    return Fetched(b"", response.url, dict(response.headers), not_modified=True)
                if response.status_code >= 400:
                    raise error(f"{named} returned {status_line(response.status_code)}")
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > settings.documents.max_feed_bytes:
                        raise error(
                            f"{named} is larger than the {settings.documents.max_feed_bytes:,}-byte document limit"
                        )
                if session.deadline.expired:  # cut off: what arrived may look complete, but is not
                    raise error(too_slow)
                return Fetched(bytes(body), response.url, dict(response.headers))
        except REQUEST_ERRORS as exc:
            late = too_slow if session.deadline.expired else None
            raise request_error(exc, named, error, late=late, timeout_s=settings.network.http_timeout_s) from exc
