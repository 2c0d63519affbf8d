"""Where podflow connects and for how long: address rules on every hop, trusted operator hosts, no DNS rebinding,
wall-clock deadlines, no encodings it did not ask for. Servers are real, on 127.0.0.1 and 127.0.0.2 (both loopback,
which the rules refuse unless allowed)."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import pytest
import requests

from flows.ingest import ingest_feed, ingest_feeds
from tasks.download import download_episode
from tasks.errors import DownloadError, FeedError
from tasks.http import GuardedSession, fetch_document
from tasks.models import Episode, IngestReport, RunReport, Settings
from tasks.network import host_port, refusal
from tests.conftest import DEMO_EPISODES, LOOPBACK
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "RFC 1918"),
        ("172.16.0.1", "RFC 1918"),
        ("192.168.1.1", "RFC 1918"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("fd12:3456::1", "unique local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("64:ff9b::a00:1", "RFC 1918"),
        ("2002:a00:1::", "RFC 1918"),  # NAT64 and 6to4 forms of 10.0.0.1
        ("192.0.2.1", "reserved or special-purpose"),  # documentation range
        ("64:ff9b:1::a00:1", "local-use NAT64"),
        ("fec0::1", "site-local"),
        ("::7f00:1", "IPv4-compatible"),
    ],
)
def test_non_public_addresses_are_refused_by_name(address: str, rule: str) -> None:
    assert rule in (refusal(ipaddress.ip_address(address)) or "")


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_host_port_fills_in_the_scheme_port() -> None:
    assert host_port("https://Feeds.Example.com/rss") == "feeds.example.com:443"
    assert host_port("http://[::1]:8080/x") == "[::1]:8080"
    assert host_port("file:///etc/passwd") is None


@pytest.fixture
def second_host() -> Iterator[FeedServer]:
    """A server on another loopback address: "somewhere else on the worker's network"."""
    with FeedServer(host="127.0.0.2") as other:
        yield other


def test_a_loopback_feed_is_refused_by_default_and_allowed_by_allowed_networks(server: FeedServer) -> None:
    url = server.add("/feed.xml", rss([]))
    with pytest.raises(FeedError, match=r"refused to connect to 127\.0\.0\.1 .*loopback"):
        fetch_document(url, Settings(), FeedError)
    assert server.count("/feed.xml") == 0
    assert fetch_document(url, Settings.of(allowed_networks=LOOPBACK), FeedError).body == rss([])


def test_a_url_the_operator_gave_trusts_its_own_host_for_that_request_alone(
    server: FeedServer, second_host: FeedServer
) -> None:
    ours = server.add("/a", b"ours")
    assert fetch_document(ours, Settings(), FeedError, operator_url=True).body == b"ours"
    server.add("/moved", redirect_to=ours)
    assert fetch_document(server.url("/moved"), Settings(), FeedError, operator_url=True).body == b"ours"
    with pytest.raises(FeedError, match="refused"):  # the same URL, found in a document
        fetch_document(ours, Settings(), FeedError)
    with FeedServer() as same_address_other_port, pytest.raises(FeedError, match="refused"):
        server.add("/elsewhere", redirect_to=same_address_other_port.add("/b", b"x"))
        fetch_document(server.url("/elsewhere"), Settings(), FeedError, operator_url=True)


def test_every_redirect_hop_obeys_the_rules(server: FeedServer, second_host: FeedServer) -> None:
    internal = second_host.add("/metadata", b"SECRET-INTERNAL-ANSWER", content_type="text/plain")
    hop = server.add("/hop", redirect_to=internal)
    with pytest.raises(FeedError, match=r"refused to connect to 127\.0\.0\.2") as refused:
        fetch_document(hop, Settings(), FeedError, operator_url=True)
    assert "SECRET-INTERNAL-ANSWER" not in str(refused.value)
    assert second_host.count("/metadata") == 0
    allowed = Settings.of(allowed_networks=("127.0.0.2/32",))
    assert fetch_document(hop, allowed, FeedError, operator_url=True).body == b"SECRET-INTERNAL-ANSWER"


def rebinding_resolver(monkeypatch: pytest.MonkeyPatch, port: int, first: str, then: str) -> list[str]:
    """No DNS server can run here, so the resolver is replaced: `rebind.test` resolves to `first` on its first
    lookup and to `then` on every later one. The lookups made, to inspect or to edit."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str, *args: object, **kwargs: object) -> list:
        if host != "rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (first if len(lookups) == 1 else then, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    return lookups


def test_a_host_is_resolved_once_and_connected_to_at_the_address_checked(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A forbidden address (127.0.0.2, where nothing listens) on any lookup after the first.
    port = int(server.url("/").rsplit(":", 1)[1].strip("/"))
    lookups = rebinding_resolver(monkeypatch, port, first="127.0.0.1", then="127.0.0.2")
    server.add("/feed.xml", b"<rss/>")
    fetched = fetch_document(
        f"http://rebind.test:{port}/feed.xml", Settings.of(allowed_networks=("127.0.0.1/32",)), FeedError
    )
    assert fetched.body == b"<rss/>" and lookups == ["rebind.test"]
    lookups.clear()
    lookups.append("pretend the first answer was given")  # now every answer is the forbidden one
    with pytest.raises(FeedError, match=r"127\.0\.0\.2: loopback"):
        fetch_document(
            f"http://rebind.test:{port}/feed.xml", Settings.of(allowed_networks=("127.0.0.1/32",)), FeedError
        )


def test_the_operators_host_is_pinned_to_its_first_lookup_for_every_hop(
    monkeypatch: pytest.MonkeyPatch, second_host: FeedServer
) -> None:
    # The feed's host (the attacker's, at 127.0.0.2) redirects to itself; a rebinding resolver answers the second
    # lookup with 127.0.0.1, where an internal service listens on the same port.
    port = int(second_host.url("/").rsplit(":", 1)[1].strip("/"))
    with FeedServer(port=port) as internal:
        internal.add("/feed.xml", b"SECRET-INTERNAL-ANSWER", content_type="text/plain")
        second_host.add("/start.xml", redirect_to=f"http://rebind.test:{port}/feed.xml")
        second_host.add("/feed.xml", b"<rss/>")
        lookups = rebinding_resolver(monkeypatch, port, first="127.0.0.2", then="127.0.0.1")
        fetched = fetch_document(f"http://rebind.test:{port}/start.xml", Settings(), FeedError, operator_url=True)

    assert fetched.body == b"<rss/>" and [hit.path for hit in second_host.hits] == ["/start.xml", "/feed.xml"]
    assert internal.count("/feed.xml") == 0 and lookups == ["rebind.test"]


class StallingServer:
    """A raw TCP server that never finishes its answer: it sends `prefix`, then `repeat` every 0.1 s, until the
    client hangs up or 30 s pass."""

    def __init__(self, prefix: bytes, repeat: bytes) -> None:
        self.prefix, self.repeat = prefix, repeat
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.hung_up = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/slow"

    def __enter__(self) -> StallingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(65536)
            try:
                connection.sendall(self.prefix)
                for _ in range(300):
                    if self.hung_up.wait(0.1):
                        break
                    connection.sendall(self.repeat)
            except OSError:
                self.hung_up.set()


ENDLESS_CONTINUE = (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n")
DRIPPING_HEADERS = (b"HTTP/1.1 200 OK\r\n", b"X-Drip: 1\r\n")
DRIPPING_BODY = (b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n", b"x")


@pytest.mark.parametrize(
    "script",
    [ENDLESS_CONTINUE, DRIPPING_HEADERS, DRIPPING_BODY],
    ids=["endless-100-continue", "dripping-headers", "dripping-body-without-length"],
)
def test_a_document_request_ends_at_its_deadline_headers_included(script: tuple[bytes, bytes]) -> None:
    settings = Settings.of(allowed_networks=LOOPBACK, max_document_s=1.0, http_timeout_s=5.0)
    with StallingServer(*script) as stalling, pytest.raises(FeedError, match="1-second max_document_s limit"):
        fetch_document(stalling.url, settings, FeedError)


@pytest.mark.parametrize(
    "script",
    [ENDLESS_CONTINUE, DRIPPING_HEADERS, DRIPPING_BODY],
    ids=["endless-100-continue", "dripping-headers", "dripping-body-without-length"],
)
def test_a_download_ends_at_its_deadline_headers_included(script: tuple[bytes, bytes], tmp_path: Path) -> None:
    settings = Settings.of(allowed_networks=LOOPBACK, max_download_s=1.0, http_timeout_s=5.0, download_attempts=1)
    with StallingServer(*script) as stalling:
        episode = Episode(episode_id="slow", title="slow", enclosure_url=stalling.url)
        with pytest.raises(DownloadError, match="1-second max_download_s limit"):
            download_episode(episode, tmp_path, settings.download, settings.network, previous=None)
    assert list(tmp_path.iterdir()) == []  # nothing half-downloaded is kept as the audio


def test_audio_sent_gzip_encoded_is_refused_not_inflated(server: FeedServer, tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (8 * 2**20))  # 8 MiB of zeros in a few KiB
    url = server.add("/ep.mp3", bomb, headers={"Content-Encoding": "gzip"})
    episode = Episode(episode_id="bomb", title="bomb", enclosure_url=url)
    with pytest.raises(DownloadError, match="sent audio in gzip where podflow asked for it unencoded"):
        download_episode(
            episode, tmp_path, Settings().download, Settings.of(allowed_networks=LOOPBACK).network, previous=None
        )
    assert list(tmp_path.iterdir()) == []


def test_an_enclosure_on_a_refused_address_fails_at_once_without_retries(
    second_host: FeedServer, tmp_path: Path
) -> None:
    url = second_host.add("/ep.mp3", b"ID3audio")
    episode = Episode(episode_id="lan", title="lan", enclosure_url=url)
    with pytest.raises(DownloadError, match=r"refused to connect to 127\.0\.0\.2") as refused:
        quick = Settings.of(download_attempts=4, retry_backoff_s=0.01)
        download_episode(episode, tmp_path, quick.download, quick.network, previous=None)
    assert "attempts" not in str(refused.value)
    assert second_host.count("/ep.mp3") == 0


@pytest.mark.usefixtures("prefect_api")
def test_in_a_run_the_feed_given_is_fetched_and_every_url_in_it_obeys_the_rules(
    server: FeedServer, second_host: FeedServer, tmp_path: Path
) -> None:
    demo = DEMO_EPISODES[0]
    server.add("/ours.mp3", demo.audio)
    server.add("/ours.vtt", f"WEBVTT\n\n00:00.000 --> 00:05.000\n{demo.script}\n".encode())
    second_host.add("/lan.mp3", demo.audio)
    second_host.add("/internal.txt", b"SECRET-INTERNAL-ANSWER", content_type="text/plain")
    link = '<podcast:transcript url="{}" type="{}"/>'
    feed_url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("Ours", guid="ours", enclosure="ours.mp3", extra=link.format("ours.vtt", "text/vtt")),
                rss_item(
                    "On the LAN",
                    guid="lan",
                    enclosure=second_host.url("/lan.mp3"),
                    extra=link.format("ours.vtt", "text/vtt"),
                ),
                rss_item(
                    "Internal transcript",
                    guid="internal",
                    enclosure="ours.mp3",
                    extra=link.format(second_host.url("/internal.txt"), "text/plain"),
                ),
            ]
        ),
    )
    nothing_allowed = Settings.of(output_dir=tmp_path / "strict", transcriber="published")
    strict = ingest_feed(feed_url, nothing_allowed, return_state=True).result(raise_on_failure=False)
    assert isinstance(strict, IngestReport), strict
    assert strict.status == "fetched"  # the feed's own host, for the GET of the URL the operator gave
    assert [e.status for e in strict.episodes] == ["failed"] * 3  # but not for the URLs in the feed
    assert all("refused to connect to 127.0.0.1" in (e.error or "") for e in strict.episodes[::2])
    assert server.count("/ours.mp3") == 0

    # The operator allows the worker's own address (where the feed's audio is), not its neighbour's.
    settings = Settings.of(output_dir=tmp_path / "allowed", transcriber="published", allowed_networks=("127.0.0.1/32",))
    report = ingest_feed(feed_url, settings, return_state=True).result(raise_on_failure=False)

    assert isinstance(report, IngestReport), report
    outcomes = {e.episode_id: e for e in report.episodes}
    assert outcomes["ours"].status == "complete"
    assert outcomes["lan"].status == "failed" and "refused to connect to 127.0.0.2" in (outcomes["lan"].error or "")
    assert outcomes["internal"].status == "failed"
    assert "refused to connect to 127.0.0.2" in (outcomes["internal"].error or "")
    assert second_host.hits == []
    written = b"".join(path.read_bytes() for path in report.feed_dir.rglob("*") if path.is_file())
    assert b"SECRET-INTERNAL-ANSWER" not in written


@pytest.mark.usefixtures("prefect_api")
def test_feeds_an_opml_list_names_are_not_trusted(server: FeedServer, second_host: FeedServer, tmp_path: Path) -> None:
    listed = [second_host.add("/feed.xml", rss([])), server.add("/feed.xml", rss([]))]
    opml_url = server.add(
        "/subscriptions.opml",
        (
            '<opml version="2.0"><body>'
            + "".join(f'<outline text="{n}" type="rss" xmlUrl="{url}"/>' for n, url in enumerate(listed))
            + "</body></opml>"
        ).encode(),
    )

    state = ingest_feeds(opml=opml_url, settings=Settings.of(output_dir=tmp_path), return_state=True)
    report = state.result(raise_on_failure=False)

    assert isinstance(report, RunReport), report
    assert [feed.status for feed in report.feeds] == ["failed", "failed"]
    assert "refused to connect to 127.0.0.2" in (report.feeds[0].error or "")
    assert "refused to connect to 127.0.0.1" in (report.feeds[1].error or "")  # the OPML's own host, all the same
    assert server.count("/subscriptions.opml") == 1 and server.count("/feed.xml") == 0 and second_host.hits == []


def self_signed_localhost(folder: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` and its key, made here: no CA, no network."""
    from datetime import datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@contextmanager
def tls_feed_server(folder: Path) -> Iterator[tuple[FeedServer, Path]]:
    """A feed server on 127.0.0.1 that speaks TLS with a self-signed certificate for `localhost`, and that
    certificate's file."""
    cert_path, key_path = self_signed_localhost(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    with FeedServer() as tls_server:
        tls_server._server.socket = context.wrap_socket(tls_server._server.socket, server_side=True)
        yield tls_server, cert_path


def test_tls_connections_verify_the_host_name_and_end_at_the_deadline_too(tmp_path: Path) -> None:
    with tls_feed_server(tmp_path) as (tls_server, cert_path):
        port = tls_server.url("/").rsplit(":", 1)[1].strip("/")
        tls_server.add("/a", b"over TLS")
        tls_server.add("/drip", b"x" * 100_000, drip_s=0.05)
        settings = Settings.of(allowed_networks=LOOPBACK, user_agent="podflow-test")
        # The connection goes to the address checked (127.0.0.1); the certificate is still checked for the name.
        with GuardedSession(settings.network, deadline_s=30) as session:
            assert session.get(f"https://localhost:{port}/a", verify=str(cert_path), timeout=5).content == b"over TLS"
        with GuardedSession(settings.network, deadline_s=30) as session, pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://127.0.0.1:{port}/a", verify=str(cert_path), timeout=5)  # not the name signed
        with GuardedSession(settings.network, deadline_s=1) as session:
            with pytest.raises(requests.RequestException):
                _ = session.get(f"https://localhost:{port}/drip", verify=str(cert_path), timeout=5).content
            assert session.deadline.expired


@pytest.mark.parametrize(
    "answer",
    [
        b"SECRET-BODY-MARKER garbage\r\n\r\n",  # not HTTP at all: the status-line parser quotes it
        # a chunk length that is not one
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nSECRET-BODY-MARKER\r\n",
        b"HTTP/1.1 404 SECRET-BODY-MARKER\r\nContent-Length: 0\r\n\r\n",  # a reason phrase of its own
    ],
    ids=["bad-status-line", "bad-chunk-length", "own-reason-phrase"],
)
def test_no_request_failure_quotes_what_the_server_sent(answer: bytes, tmp_path: Path) -> None:
    settings = Settings.of(allowed_networks=LOOPBACK, download_attempts=1, max_document_s=5, max_download_s=5)
    with StallingServer(answer, b"") as document_server, pytest.raises(FeedError) as failed:
        fetch_document(document_server.url, settings, FeedError)
    assert "SECRET-BODY-MARKER" not in str(failed.value)
    with StallingServer(answer, b"") as audio_server, pytest.raises(DownloadError) as failed_download:
        download_episode(
            Episode(episode_id="e", title="e", enclosure_url=audio_server.url),
            tmp_path,
            settings.download,
            settings.network,
            None,
        )
    assert "SECRET-BODY-MARKER" not in str(failed_download.value)


def test_a_redirects_body_is_never_read(server: FeedServer) -> None:
    target = server.add("/feed.xml", b"<rss/>")
    # 100 MB announced, dripped forever: read before following (as requests does), it would take it all or time out.
    redirect = f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 100000000\r\n\r\n".encode()
    with StallingServer(redirect, b"x" * 1024) as redirecting:
        fetched = fetch_document(redirecting.url, Settings.of(allowed_networks=LOOPBACK, max_document_s=10), FeedError)
    assert fetched.body == b"<rss/>"
