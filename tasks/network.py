"""Where podflow may connect, and for how long: every connection to a host a feed names is resolved once, checked
against the address rules, made to the address that was checked, and cut off at a wall-clock deadline.

A worker often sits inside a private network, so a feed, its media host or a transcript link could otherwise make
podflow fetch (and store, and show) an internal service's answer. By default podflow connects only to public
addresses; `allowed_networks` opens chosen ranges. A request for a URL the operator gave (a feed or OPML URL) may
also reach that URL's own host:port wherever its first lookup resolves it, and only there: every hop of the request
back to that host connects to the addresses of that lookup, so a resolver that answers again with another address
cannot rebind a same-host redirect onto an internal service. Every other URL, and any redirect to another host, obeys
the rules.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tasks.errors import AddressRefusedError, DeadlineExceededError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Checked in order; the first that holds names the rule in the refusal.
REFUSED_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    ("fe80::/10", "link-local"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("fc00::/7", "unique local (ULA)"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("fec0::/10", "site-local"),
    ("::/96", "IPv4-compatible"),
)
_REFUSED = tuple((ipaddress.ip_network(cidr), rule) for cidr, rule in REFUSED_NETWORKS)
# IPv6 forms that carry an IPv4 address: the address inside is the one the packets reach.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def host_port(url: str) -> str | None:
    """`host:port` of an http(s) URL, lowercased, the port filled in from the scheme; None when there is none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return join_host_port(parts.hostname, port)


def join_host_port(host: str, port: int) -> str:
    host = host.lower().strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def refusal(address: IPAddress) -> str | None:
    """The rule that forbids connecting to `address` (its kind and range), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        )
        if embedded is not None:
            return refusal(embedded)
    for network, rule in _REFUSED:
        if address.version == network.version and address in network:
            return f"{rule}, {network}"
    if not address.is_global:
        return "reserved or special-purpose"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a connection may reach: public ones, those in `allowed_networks`, and any address of the
    `trusted_host` (host:port) of a request the operator asked for."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    trusted_host: str | None = None
    trusted_addresses: list[str] = field(default_factory=list, compare=False)  # its first lookup's, pinned

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses of `host` that podflow may connect to, from one DNS lookup, in the resolver's order (for
        the trusted host, from its first lookup).

        AddressRefusedError, naming the host and the rule, when there are none."""
        trusted = join_host_port(host, port) == self.trusted_host
        if trusted and self.trusted_addresses:
            return list(self.trusted_addresses)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        resolved = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
        if trusted:
            self.trusted_addresses.extend(resolved)
            return resolved
        permitted, refused = [], []
        for text in resolved:
            address = ipaddress.ip_address(text)
            rule = refusal(address)
            if rule is None or any(
                address in network for network in self.allowed_networks if network.version == address.version
            ):
                permitted.append(text)
            else:
                refused.append(f"{text}: {rule}")
        if not permitted:
            raise AddressRefusedError(
                f"refused to connect to {host} ({'; '.join(refused)}): not a public address, and "
                "allowed_networks does not permit it"
            )
        return permitted


@dataclass
class Deadline:
    """Shuts every connection registered with it down when `seconds` have passed, so that no server can hold a
    request open: not by slow headers, endless `100 Continue` lines or a body dripping a byte at a time.

    It keeps a duplicate of each socket: shutting the duplicate down ends the connection under every descriptor,
    TLS included, whatever the HTTP library has wrapped it in."""

    seconds: float
    ends_at: float = field(init=False)
    expired: bool = field(default=False, init=False)
    _watched: list[socket.socket] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _timer: threading.Timer = field(init=False)

    def __post_init__(self) -> None:
        self.ends_at = time.monotonic() + self.seconds
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining_s(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                sock.close()
                raise DeadlineExceededError(f"the {self.seconds:g}-second limit has passed")
            self._watched.append(sock.dup())

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._watched:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # closed by the server already
                    pass

    def close(self) -> None:
        """Stop the timer and release the duplicates (the connections themselves are their owners' to close)."""
        self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


@dataclass(frozen=True)
class Guard:
    """What one HTTP session's connections obey: the address policy and the session's deadline."""

    policy: AddressPolicy
    deadline: Deadline

    def connect(
        self, host: str, port: int, timeout: float | None, socket_options: Sequence[tuple[int, int, int]] | None
    ) -> socket.socket:
        """A connected socket to a permitted address of `host`, watched by the deadline."""
        connect_s = timeout if isinstance(timeout, (int, float)) else None  # urllib3 may pass a "default" sentinel
        last_error: OSError | None = None
        for address in self.policy.addresses(host, port):
            if (remaining_s := self.deadline.remaining_s()) <= 0:
                raise DeadlineExceededError(f"the {self.deadline.seconds:g}-second limit has passed")
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(min(connect_s, remaining_s) if connect_s else remaining_s)
                sock.connect((address, port))
                sock.settimeout(connect_s)
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            self.deadline.watch(sock)
            return sock
        assert last_error is not None
        raise last_error
