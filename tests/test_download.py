"""Downloads against a real HTTP server that fails, truncates and redirects on demand."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests

from flows.feedserver import FeedServer
from tasks.download import _retry_after, download_episode
from tasks.errors import DownloadError
from tasks.models import Episode, Settings
from tests.conftest import DEMO_EPISODES

AUDIO = DEMO_EPISODES[0].audio


def episode_at(url: str) -> Episode:
    return Episode(episode_id="ep-1", title="One", enclosure_url=url, enclosure_type="audio/mpeg")


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_is_verified_hashed_and_renamed_into_place(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    url = server.add("/a.mp3", AUDIO)
    audio = download_episode(episode_at(url), tmp_path / "ep", settings, previous=None)

    assert audio.path == tmp_path / "ep" / "audio.mp3"
    assert audio.path.read_bytes() == AUDIO
    assert audio.sha256 == hashlib.sha256(AUDIO).hexdigest()
    assert audio.bytes == len(AUDIO)
    assert audio.content_type == "audio/mpeg"
    assert files_in(tmp_path / "ep") == ["audio.mp3"]


def test_redirected_enclosure_records_where_the_bytes_came_from(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    cdn = server.add("/cdn/a.mp3", AUDIO)
    tracker = server.add("/track/a.mp3", redirect_to=cdn)
    audio = download_episode(episode_at(tracker), tmp_path, settings, previous=None)
    assert audio.source_url == cdn
    assert audio.sha256 == hashlib.sha256(AUDIO).hexdigest()


@pytest.mark.parametrize("status", [503, 500, 429])
def test_server_errors_and_429_are_retried(server: FeedServer, settings: Settings, tmp_path: Path, status: int) -> None:
    url = server.add("/a.mp3", AUDIO, fail_times=2, fail_status=status)
    audio = download_episode(episode_at(url), tmp_path, settings, previous=None)
    assert server.count("/a.mp3") == 3
    assert audio.path.read_bytes() == AUDIO


@pytest.mark.parametrize("status", [404, 403, 410])
def test_other_client_errors_fail_at_once(server: FeedServer, settings: Settings, tmp_path: Path, status: int) -> None:
    url = server.add("/a.mp3", status=status)
    with pytest.raises(DownloadError, match=f"HTTP {status}"):
        download_episode(episode_at(url), tmp_path, settings, previous=None)
    assert server.count("/a.mp3") == 1
    assert files_in(tmp_path) == []


def test_a_body_shorter_than_its_content_length_is_retried_then_given_up(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO, truncate_after=1000)
    with pytest.raises(DownloadError, match="gave up after 4 attempts"):
        download_episode(episode_at(url), tmp_path, settings, previous=None)
    assert server.count("/a.mp3") == settings.download_attempts
    assert files_in(tmp_path) == []  # neither a .part nor a truncated audio file is left


def test_a_verified_download_is_not_fetched_again_but_a_damaged_one_is(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    url = server.add("/a.mp3", AUDIO)
    first = download_episode(episode_at(url), tmp_path, settings, previous=None)
    again = download_episode(episode_at(url), tmp_path, settings, previous=first)
    assert again == first
    assert server.count("/a.mp3") == 1

    first.path.write_bytes(AUDIO[:-1] + b"\0")
    repaired = download_episode(episode_at(url), tmp_path, settings, previous=first)
    assert server.count("/a.mp3") == 2
    assert repaired.path.read_bytes() == AUDIO


def test_an_enclosure_over_the_size_limit_is_refused(server: FeedServer, tmp_path: Path) -> None:
    url = server.add("/a.mp3", AUDIO)
    with pytest.raises(DownloadError, match="over the 1,000-byte limit"):
        download_episode(episode_at(url), tmp_path, Settings(max_episode_bytes=1000), previous=None)
    assert files_in(tmp_path) == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.org/a.mp3", "javascript:alert(1)", "a.mp3", "http://[::1/a.mp3"]
)
def test_only_http_enclosures_are_fetched(settings: Settings, tmp_path: Path, url: str) -> None:
    with pytest.raises(DownloadError, match="not an http|Invalid"):
        download_episode(episode_at(url), tmp_path, settings, previous=None)


def test_a_redirect_to_another_scheme_is_a_download_error(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    url = server.add("/a.mp3", redirect_to="ftp://example.org/a.mp3")
    with pytest.raises(DownloadError, match="ftp://example.org/a.mp3"):
        download_episode(episode_at(url), tmp_path, settings, previous=None)


def response_with(retry_after: str) -> requests.Response:
    response = requests.Response()
    response.headers["Retry-After"] = retry_after
    return response


def test_retry_after_is_read_as_seconds_or_as_an_http_date_and_capped() -> None:
    in_30_s = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert _retry_after(response_with("7")) == 7.0
    assert 25 < (_retry_after(response_with(in_30_s)) or 0) <= 30
    assert _retry_after(response_with("86400")) == 60.0
    assert _retry_after(response_with("soon")) is None
