"""A failed request in a user's words: each way a request fails, against real servers on 127.0.0.1, said first as
a plain reason, the chain of errors after it; and the words of a report's failures with and without that chain."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import urllib3

from flows.summary import episode_failure, plain_error
from tasks.errors import FeedError
from tasks.http import failure_detail, fetch_document, without_chain
from tasks.models import EpisodeOutcome, Settings
from tests.conftest import LOOPBACK
from tests.feedserver import FeedServer
from tests.test_network import tls_feed_server


def fetch_failure(url: str, **settings: object) -> str:
    with pytest.raises(FeedError) as raised:
        fetch_document(url, Settings.of(allowed_networks=LOOPBACK, **settings), FeedError)
    return str(raised.value)


@contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server on 127.0.0.1 that reads each request, then `answer`s it on the bare socket; its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.recv(65536)
                answer(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_refused_connection_names_the_host_and_port_then_the_chain() -> None:
    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"http://127.0.0.1:{port}/feed.xml"
        said = fetch_failure(url)
    assert said == (
        f"{url}: could not connect to 127.0.0.1:{port}: connection refused "
        "[ConnectionError ← MaxRetryError ← NewConnectionError ← ConnectionRefusedError]"
    )
    assert without_chain(said) == f"{url}: could not connect to 127.0.0.1:{port}: connection refused"


def test_a_server_that_sends_nothing_times_out_after_the_timeout(server: FeedServer) -> None:
    url = server.add("/slow.xml", b"<rss/>", delay_s=2)
    assert (
        without_chain(fetch_failure(url, http_timeout_s=0.2)) == f"{url}: timed out after 0.2 s with nothing arriving"
    )


def test_a_body_cut_short_is_said_to_be_cut_off(server: FeedServer) -> None:
    url = server.add("/cut.xml", b"<rss>" + b" " * 10_000 + b"</rss>", truncate_after=100)
    assert without_chain(fetch_failure(url)) == f"{url}: the answer was cut off"


def test_a_connection_closed_before_any_answer_and_an_answer_that_is_not_http() -> None:
    with raw_server(lambda connection: None) as base:
        assert (
            without_chain(fetch_failure(f"{base}/a")) == f"{base}/a: the server closed the connection without answering"
        )
    with raw_server(lambda connection: connection.sendall(b"garbage\r\n\r\n")) as base:
        said = fetch_failure(f"{base}/a")
    assert without_chain(said) == f"{base}/a: the answer is not valid HTTP" and "garbage" not in said


def test_a_certificate_that_is_not_trusted_is_a_tls_failure(tmp_path: Path) -> None:
    with tls_feed_server(tmp_path) as (tls_server, _):
        url = tls_server.url("/feed.xml").replace("127.0.0.1", "localhost").replace("http:", "https:")
        said = fetch_failure(url)
    assert without_chain(said) == f"{url}: TLS certificate not accepted: self-signed certificate"
    assert said.endswith("[SSLError ← MaxRetryError ← SSLCertVerificationError]")


def test_a_name_that_does_not_resolve() -> None:
    # Built from the libraries' own errors, linked as they raise them: a real lookup would depend on this machine's
    # DNS.
    url = "https://feeds.example.invalid/feed.xml"
    unresolved = urllib3.exceptions.NameResolutionError(
        "feeds.example.invalid",
        None,  # type: ignore[arg-type]  # the connection: not needed to say what failed
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    )
    unresolved.__cause__ = unresolved._reason  # as urllib3 raises it: `from` the lookup's error
    exc = requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, "/feed.xml", unresolved),  # type: ignore[arg-type]  # no pool either
        request=requests.Request("GET", url).prepare(),
    )
    assert failure_detail(exc) == (
        "could not connect to feeds.example.invalid:443: name not resolved "
        "[ConnectionError ← MaxRetryError ← NameResolutionError ← gaierror]"
    )


@pytest.mark.parametrize(
    ("recorded", "plain", "verbose"),
    [
        (
            "FeedError: http://h/f.xml: could not connect to h:80: connection refused [ConnectionError ← OSError]",
            "http://h/f.xml: could not connect to h:80: connection refused",
            "http://h/f.xml: could not connect to h:80: connection refused [FeedError ← ConnectionError ← OSError]",
        ),
        (
            "DownloadError: http://h/a.mp3 returned HTTP 404 Not Found",
            "http://h/a.mp3 returned HTTP 404 Not Found",
            "http://h/a.mp3 returned HTTP 404 Not Found [DownloadError]",
        ),
        ("ValueError: no speech found", "ValueError: no speech found", "ValueError: no speech found"),  # a bug's kind
        (
            "TranscriptionError: failed 3 times; the last: the connection was reset [ConnectError ← OSError]; stop",
            "failed 3 times; the last: the connection was reset; stop",
            "failed 3 times; the last: the connection was reset [ConnectError ← OSError]; stop [TranscriptionError]",
        ),
    ],
)
def test_a_recorded_failure_in_plain_words_and_with_its_chain(recorded: str, plain: str, verbose: str) -> None:
    assert plain_error(recorded) == plain
    assert plain_error(recorded, verbose=True) == verbose


def test_a_failed_episode_in_one_line_names_its_title_and_stage() -> None:
    episode = EpisodeOutcome(
        episode_id="e",
        title="Gone Episode",
        folder="f",
        status="failed",
        stages={"download": "failed"},
        error="DownloadError: http://h/a.mp3 returned HTTP 404 Not Found",
    )
    assert episode_failure(episode) == "Gone Episode — download: http://h/a.mp3 returned HTTP 404 Not Found"
