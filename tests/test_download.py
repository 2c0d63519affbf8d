"""Downloads against a real HTTP server that fails, truncates and redirects on demand."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests

from tasks.download import download_episode
from tasks.errors import (
    AddressRefusedError,
    DownloadError,
    FeedError,
    PodflowError,
    RetryableDownloadError,
    TranscriptionError,
)
from tasks.http import request_error, retry_after_s
from tasks.models import Episode, Settings
from tests.conftest import DEMO_EPISODES, LOOPBACK
from tests.feedserver import FeedServer, Route

AUDIO = DEMO_EPISODES[0].audio


def episode_at(url: str) -> Episode:
    return Episode(episode_id="ep-1", title="One", enclosure_url=url, enclosure_type="audio/mpeg")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_is_verified_hashed_and_renamed_into_place(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO)
    audio = download_episode(episode_at(url), tmp_path / "ep", settings.download, settings.network, previous=None)

    assert audio.path == tmp_path / "ep" / "audio.mp3"
    assert audio.path.read_bytes() == AUDIO
    assert audio.sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert audio.bytes == len(AUDIO)
    assert audio.content_type == "audio/mpeg"
    assert files_in(tmp_path / "ep") == ["audio.mp3"]


def test_redirected_enclosure_records_where_the_bytes_came_from(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    cdn = server.add("/cdn/a.mp3", AUDIO)
    tracker = server.add("/track/a.mp3", redirect_to=cdn)
    audio = download_episode(episode_at(tracker), tmp_path, settings.download, settings.network, previous=None)
    assert audio.source_url == cdn
    assert audio.sha256 == hashlib.sha256(AUDIO).hexdigest()


@pytest.mark.parametrize("status", [503, 500, 429])
def test_server_errors_and_429_are_retried(server: FeedServer, settings: Settings, tmp_path: Path, status: int) -> None:
    url = server.add("/a.mp3", AUDIO, fail_times=2, fail_status=status)
    audio = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == 3
    assert audio.path.read_bytes() == AUDIO


@pytest.mark.parametrize("status", [404, 403, 410])
def test_other_client_errors_fail_at_once(server: FeedServer, settings: Settings, tmp_path: Path, status: int) -> None:
    url = server.add("/a.mp3", status=status)
    with pytest.raises(DownloadError, match=f"HTTP {status}"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == 1
    assert files_in(tmp_path) == []


def test_a_body_shorter_than_its_content_length_is_retried_then_given_up(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO, truncate_after=1000)
    with pytest.raises(DownloadError, match="gave up after 4 attempts"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == settings.download.download_attempts
    assert files_in(tmp_path) == []  # neither a .part nor a truncated audio file is left


def test_a_verified_download_is_not_fetched_again_but_a_damaged_one_is(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO)
    first = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    again = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=first)
    assert again == first
    assert server.count("/a.mp3") == 1

    first.path.write_bytes(AUDIO[:-1] + b"\0")
    repaired = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=first)
    assert server.count("/a.mp3") == 2
    assert repaired.path.read_bytes() == AUDIO


def test_an_enclosure_over_the_size_limit_is_refused(server: FeedServer, tmp_path: Path) -> None:
    url = server.add("/a.mp3", AUDIO)
    with pytest.raises(DownloadError, match="over the 1,000-byte limit"):
        limited = Settings.of(max_episode_bytes=1000, allowed_networks=LOOPBACK)
        download_episode(episode_at(url), tmp_path, limited.download, limited.network, previous=None)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/a.mp3", "javascript:alert(1)", "a.mp3", "http://[::1/a.mp3"]
)
def test_only_http_enclosures_are_fetched(settings: Settings, tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match="not an http|Invalid"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)


def test_a_redirect_to_another_scheme_is_a_download_error(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", redirect_to="ftp://example.org/a.mp3")
    with pytest.raises(DownloadError, match=r"redirects to a URL that is not http\(s\)"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)


def headers_with(retry_after: str) -> requests.structures.CaseInsensitiveDict[str]:
    return requests.structures.CaseInsensitiveDict({"Retry-After": retry_after})


def test_retry_after_is_read_as_seconds_or_as_an_http_date_and_capped() -> None:
    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after_s(headers_with("7")) == 7.0
    assert 25 < (retry_after_s(headers_with(in_30_s)) or 0) <= 30
    assert retry_after_s(headers_with("86400")) == 60.0
    assert retry_after_s(headers_with("soon")) is None


def test_one_translation_of_request_failures_for_downloads_and_documents() -> None:
    url = "http://host.example/ep.mp3"

    def download_error(exc: Exception) -> PodflowError:
        return request_error(exc, url, DownloadError, transient=RetryableDownloadError, redirects="too many times")

    lost = requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    assert type(download_error(lost)) is RetryableDownloadError
    assert str(download_error(lost)) == f"{url}: the connection was reset [ConnectionError ← ConnectionResetError]"
    assert type(download_error(requests.exceptions.ChunkedEncodingError())) is RetryableDownloadError
    assert type(download_error(requests.exceptions.InvalidURL())) is DownloadError
    assert str(download_error(requests.TooManyRedirects())) == f"{url} redirects too many times"
    assert str(download_error(AddressRefusedError("refused"))) == f"{url}: refused"
    document = f"{url} (published transcript)"
    assert type(request_error(lost, document, TranscriptionError)) is TranscriptionError
    assert str(request_error(lost, document, TranscriptionError)).startswith(f"{document}: the connection was reset")
    assert str(request_error(lost, document, FeedError, late="too slow")) == "too slow"
    assert str(request_error(requests.exceptions.InvalidSchema(), url, FeedError)) == (
        f"{url} redirects to a URL that is not http(s)"
    )
    assert str(request_error(requests.TooManyRedirects(), url, FeedError)) == f"{url} redirects more than 10 times"


def range_requests(server: FeedServer, path: str) -> list[tuple[str | None, str | None]]:
    return [(hit.headers.get("Range"), hit.headers.get("If-Range")) for hit in server.hits if hit.path == path]


def test_a_dropped_connection_resumes_from_the_bytes_already_received(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    cut = len(AUDIO) // 3 + 1  # every response is cut off after this many bytes
    url = server.add("/a.mp3", AUDIO, truncate_after=cut)
    audio = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)

    assert audio.sha256 == hashlib.sha256(AUDIO).hexdigest() and audio.bytes == len(AUDIO)
    etag = server.routes["/a.mp3"].etag
    assert range_requests(server, "/a.mp3") == [(None, None), (f"bytes={cut}-", etag), (f"bytes={2 * cut}-", etag)]
    assert files_in(tmp_path) == ["audio.mp3"]


def test_a_server_that_ignores_range_is_downloaded_again_from_the_start(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    def heal(route: Route) -> None:
        route.truncate_after = None

    url = server.add("/a.mp3", AUDIO, truncate_after=5000, ignore_range=True, after_response=heal)
    audio = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert audio.path.read_bytes() == AUDIO
    assert [asked for asked, _ in range_requests(server, "/a.mp3")] == [None, "bytes=5000-"]


@pytest.mark.parametrize("server_checks_if_range", [True, False])
def test_a_file_that_changed_between_attempts_is_not_spliced(
    server: FeedServer, settings: Settings, tmp_path: Path, server_checks_if_range: bool
) -> None:
    """Either the server sees that If-Range no longer matches and sends the new file whole, or it sends the asked
    range of the new file and podflow sees the new ETag on it and starts over."""
    replacement = DEMO_EPISODES[1].audio

    def republish(route: Route) -> None:
        route.body, route.truncate_after = replacement, None

    url = server.add(
        "/a.mp3", AUDIO, truncate_after=5000, after_response=republish, ignore_if_range=not server_checks_if_range
    )
    audio = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert audio.path.read_bytes() == replacement
    assert audio.sha256 == hashlib.sha256(replacement).hexdigest()
    assert server.count("/a.mp3") == (2 if server_checks_if_range else 3)


def test_a_416_on_resume_starts_over(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    shorter = AUDIO[:3000]

    def shrink(route: Route) -> None:  # same ETag, fewer bytes than were already received
        route.body, route.truncate_after = shorter, None

    url = server.add("/a.mp3", AUDIO, truncate_after=5000, headers={"ETag": '"same"'}, after_response=shrink)
    audio = download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert audio.path.read_bytes() == shorter
    assert server.count("/a.mp3") == 3  # cut off, 416, whole


def test_a_stalled_server_times_out_and_retries_are_bounded(server: FeedServer, tmp_path: Path) -> None:
    url = server.add("/a.mp3", AUDIO, delay_s=1.0)
    settings = Settings.of(
        output_dir=tmp_path, http_timeout_s=0.2, retry_backoff_s=0.01, download_attempts=3, allowed_networks=LOOPBACK
    )
    with pytest.raises(DownloadError, match="gave up after 3 attempts: .*ReadTimeout"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == 3
    assert files_in(tmp_path) == []


def test_a_redirect_loop_is_a_download_error(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    server.add("/b.mp3", redirect_to=server.url("/a.mp3"))
    url = server.add("/a.mp3", redirect_to=server.url("/b.mp3"))
    with pytest.raises(DownloadError, match="redirects too many times"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)


def test_an_html_page_instead_of_audio_fails_at_once(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    url = server.add("/a.mp3", b"<html><body>Please log in</body></html>", content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError, match="sent text/html, not audio"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == 1
    assert files_in(tmp_path) == []


FULL_DISK = """
import resource, sys
from pathlib import Path
from tasks.download import download_episode
from tasks.errors import DownloadError
from tasks.models import Episode, Settings
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # no file may grow past 20 kB: a disk that fills up
episode = Episode(episode_id="e", title="e", enclosure_url=sys.argv[1])
try:
    settings = Settings.of(retry_backoff_s=0.01, allowed_networks=['127.0.0.0/8'])
    download_episode(episode, Path(sys.argv[2]), settings.download, settings.network, previous=None)
except DownloadError as error:
    print(error)
"""


@pytest.mark.integration  # a subprocess
def test_a_full_disk_fails_the_download_cleanly_and_a_later_run_completes(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO)
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, url, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=120,
    )
    assert "could not be saved: File too large" in result.stdout, result.stderr
    assert files_in(tmp_path) == []  # nothing partial left in place

    audio = download_episode(
        episode_at(url), tmp_path, settings.download, settings.network, previous=None
    )  # space was freed
    assert audio.path.read_bytes() == AUDIO


def test_a_zero_length_file_fails_the_episode(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    url = server.add("/a.mp3", b"")
    with pytest.raises(DownloadError, match="sent an empty body"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert files_in(tmp_path) == []


def test_a_server_that_drips_bytes_forever_is_given_up_at_the_time_limit(server: FeedServer, tmp_path: Path) -> None:
    url = server.add("/a.mp3", AUDIO, drip_s=0.05)  # about 4 s for the whole file, no read ever times out
    settings = Settings.of(output_dir=tmp_path, max_download_s=0.5, allowed_networks=LOOPBACK)
    with pytest.raises(DownloadError, match="still downloading after the 0.5-second max_download_s limit"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == 1 and files_in(tmp_path) == []


def test_retries_stop_when_the_next_wait_would_pass_the_time_limit(server: FeedServer, tmp_path: Path) -> None:
    url = server.add("/a.mp3", AUDIO, fail_times=5, fail_status=503, retry_after="30")
    settings = Settings.of(output_dir=tmp_path, max_download_s=5, download_attempts=10, allowed_networks=LOOPBACK)
    with pytest.raises(DownloadError, match="gave up after 1 attempts at the max_download_s limit: .*HTTP 503"):
        download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    assert server.count("/a.mp3") == 1


def test_retry_after_is_honoured_before_the_next_attempt(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO, fail_times=1, fail_status=429, retry_after="1")
    download_episode(episode_at(url), tmp_path, settings.download, settings.network, previous=None)
    first, second = (hit.at for hit in server.hits if hit.path == "/a.mp3")
    assert second - first >= 1.0  # the backoff alone (settings: 0.01 s) would have come back at once
