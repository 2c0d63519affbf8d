"""Download an episode's audio: streamed to a .part file, verified, hashed, renamed into place."""

from __future__ import annotations

import hashlib
import mimetypes
import os
import random
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import requests
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.errors import DownloadError, RetryableDownloadError, fail_quietly
from tasks.http import new_session
from tasks.models import AudioFile, Episode, Settings
from tasks.store import FeedStore

CHUNK_BYTES = 256 * 1024
AUDIO_EXTENSIONS = {".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus", ".wav", ".flac", ".webm"}
MAX_RETRY_AFTER_S = 60.0


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def audio_file_name(episode: Episode) -> str:
    """`audio.<ext>`, the extension taken from the enclosure URL, else from its MIME type."""
    try:
        suffix = PurePosixPath(urlsplit(episode.enclosure_url or "").path).suffix.lower()
    except ValueError:
        suffix = ""
    if suffix not in AUDIO_EXTENSIONS:
        suffix = mimetypes.guess_extension(episode.enclosure_type or "") or ".audio"
    return f"audio{suffix}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def is_verified(audio: AudioFile | None) -> bool:
    """True when a previous download's file is still in place with its recorded size and hash."""
    return (
        audio is not None
        and audio.path.is_file()
        and audio.path.stat().st_size == audio.bytes
        and sha256_of(audio.path) == audio.sha256
    )


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (given as seconds or as an HTTP date), capped at a minute."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _fetch_once(session: requests.Session, episode: Episode, target: Path, settings: Settings) -> AudioFile:
    url = episode.enclosure_url or ""
    part = target.with_name(target.name + ".part")
    try:
        with session.get(url, stream=True, timeout=settings.http_timeout_s) as response:
            status = f"HTTP {response.status_code} {response.reason}"
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableDownloadError(f"{url} returned {status}", _retry_after(response))
            if response.status_code >= 400:
                raise DownloadError(f"{url} returned {status}")
            declared = response.headers.get("Content-Length")
            expected = int(declared) if declared and declared.isdigit() else None
            if expected is not None and expected > settings.max_episode_bytes:
                raise DownloadError(f"{url} is {expected:,} bytes, over the {settings.max_episode_bytes:,}-byte limit")
            digest, written = hashlib.sha256(), 0
            with open(part, "wb") as file:
                for chunk in response.iter_content(CHUNK_BYTES):
                    written += len(chunk)
                    if written > settings.max_episode_bytes:
                        raise DownloadError(f"{url} is over the {settings.max_episode_bytes:,}-byte limit")
                    digest.update(chunk)
                    file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            # A compressed body's Content-Length counts compressed bytes, so it cannot be checked against ours.
            if expected is not None and written != expected and "Content-Encoding" not in response.headers:
                raise RetryableDownloadError(f"{url} sent {written:,} of {expected:,} bytes")
            if written == 0:
                raise DownloadError(f"{url} sent an empty body")
            os.replace(part, target)
            return AudioFile(
                episode_id=episode.episode_id,
                path=target,
                source_url=response.url,
                content_type=response.headers.get("Content-Type"),
                bytes=written,
                sha256=digest.hexdigest(),
            )
    except requests.TooManyRedirects as exc:
        raise DownloadError(f"{url} redirects too many times") from exc
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise RetryableDownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:  # a malformed URL, a redirect to another scheme, a broken encoding
        raise DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)


def download_episode(episode: Episode, episode_dir: Path, settings: Settings, previous: AudioFile | None) -> AudioFile:
    """The episode's verified audio file: the one already on disk if it still checks out, else a fresh download.

    Connection errors, short bodies, 429 and 5xx are retried with exponential backoff and jitter (429's
    Retry-After is honoured, up to a minute); any other 4xx fails at once.
    """
    if previous is not None and is_verified(previous):
        return previous
    url = episode.enclosure_url or ""
    if _scheme(url) not in ("http", "https"):
        raise DownloadError(f"enclosure {url!r} is not an http(s) URL")
    episode_dir.mkdir(parents=True, exist_ok=True)
    target = episode_dir / audio_file_name(episode)
    with new_session(settings) as session:
        for attempt in range(1, settings.download_attempts):
            try:
                return _fetch_once(session, episode, target, settings)
            except RetryableDownloadError as exc:
                backoff = settings.retry_backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                time.sleep(max(backoff, exc.retry_after_s or 0.0))
        try:
            return _fetch_once(session, episode, target, settings)
        except RetryableDownloadError as exc:
            raise DownloadError(f"gave up after {settings.download_attempts} attempts: {exc}") from exc


@task(name="download", cache_policy=NO_CACHE, task_run_name="download · {episode.title}")
@fail_quietly
def download(episode: Episode, store: FeedStore, settings: Settings) -> AudioFile:
    entry = store.read_ledger().episodes[episode.episode_id]
    episode_dir = store.episode_dir(entry)
    # The recorded path is re-based on today's episode folder, so a moved output folder is still recognised.
    previous = entry.audio.model_copy(update={"path": episode_dir / entry.audio.path.name}) if entry.audio else None
    with store.recording(episode.episode_id, "download") as recording:
        recording.audio = download_episode(episode, episode_dir, settings, previous)
    return recording.audio
