"""Download an episode's audio: streamed to a .part file, verified, hashed, renamed into place."""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import requests

from tasks import stopping
from tasks.audio import AUDIO_EXTENSIONS
from tasks.errors import DownloadError, RetryableDownloadError
from tasks.feed_run import FeedEpisode
from tasks.files import no_link, open_no_link, sha256_of
from tasks.http import REQUEST_ERRORS, GuardedSession, request_error, retry_after_s, status_line
from tasks.models import AudioFile, DownloadSettings, Episode, NetworkSettings
from tasks.prefect_glue import stage_task
from tasks.retrying import GaveUp, retrying
from tasks.store import StageRecording

CHUNK_BYTES = 256 * 1024


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


def is_verified(audio: AudioFile | None) -> bool:
    """True when a previous download's file is still in place with its recorded size and hash."""
    return (
        audio is not None
        and no_link(audio.path).is_file()
        and audio.path.stat().st_size == audio.bytes
        and sha256_of(audio.path) == audio.sha256
    )


# A server that answers these instead of audio is serving an error page or a login wall.
NOT_AUDIO_TYPES = (
    "text/html",
    "application/xhtml+xml",
    "application/json",
    "text/xml",
    "application/xml",
    "text/plain",
)
ENCODING_NAME = re.compile(r"[a-z0-9.+-]{1,32}(?:, ?[a-z0-9.+-]{1,32}){0,3}")
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")


@dataclass
class PartFile:
    """The `.part` file one download keeps across its attempts, and the validator of the response that began it,
    so that a later attempt resumes with `Range` only if the file on the server is still the same one."""

    path: Path
    validator: str | None = None

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.validator = None


def _validator(response: requests.Response) -> str | None:
    """A strong ETag, else Last-Modified: what If-Range may carry (a weak ETag may not)."""
    etag = response.headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")


def _arriving(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. Unlike `iter_content`, a connection that drops mid-chunk still yields the bytes
    that came before the drop, so a resume loses nothing."""
    while chunk := response.raw.read1(CHUNK_BYTES):
        yield chunk


def _fetch_once(
    session: GuardedSession, episode: Episode, target: Path, part: PartFile, limits: DownloadSettings, timeout_s: float
) -> AudioFile:
    """One attempt. A retryable failure keeps the bytes received in `part` for the next attempt to resume from."""
    url = episode.enclosure_url or ""
    have = part.size()
    if have and part.validator is None:  # nothing proves the server's file is the one begun: start over
        part.discard()
        have = 0
    # Ranges count the bytes as sent; asking for them unencoded keeps those the bytes written to the .part file.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers |= {"Range": f"bytes={have}-", "If-Range": part.validator or ""}
    try:
        with session.get(url, stream=True, timeout=timeout_s, headers=headers) as response:
            status = status_line(response.status_code)
            if response.status_code == 416:
                part.discard()
                raise RetryableDownloadError(f"{url} refused to resume at byte {have:,} ({status}); starting over")
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableDownloadError(f"{url} returned {status}", retry_after_s(response.headers))
            if response.status_code >= 400:
                raise DownloadError(f"{url} returned {status}")
            # Asked for identity: a compressed body would be decompressed (a 314-byte gzip made 90 MiB) and its
            # ranges would not be ours to resume.
            encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                named = encoding if ENCODING_NAME.fullmatch(encoding) else "an unknown encoding"  # the server's text
                raise DownloadError(f"{url} sent audio in {named} where podflow asked for it unencoded")
            content_type = response.headers.get("Content-Type")
            if (media_type := (content_type or "").split(";")[0].strip().lower()) in NOT_AUDIO_TYPES:
                raise DownloadError(f"{url} sent {media_type}, not audio")
            declared = response.headers.get("Content-Length")
            length = int(declared) if declared and declared.isdigit() else None
            resumed = response.status_code == 206
            if resumed:
                span = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if span is None or int(span[1]) != have or _validator(response) not in (None, part.validator):
                    part.discard()
                    raise RetryableDownloadError(f"{url} answered the resume with another range or file; starting over")
                expected: int | None = int(span[3])
            else:  # the whole file: a server that ignores Range, or one whose file changed since the part began
                have, part.validator = 0, _validator(response)
                expected = length
            if expected is not None and expected > limits.max_episode_bytes:
                raise DownloadError(f"{url} is {expected:,} bytes, over the {limits.max_episode_bytes:,}-byte limit")
            written = have
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resumed else os.O_TRUNC)
            with os.fdopen(open_no_link(part.path, flags), "ab" if resumed else "wb") as file:
                for chunk in _arriving(response):
                    stopping.check(url)
                    written += len(chunk)
                    if written > limits.max_episode_bytes:
                        raise DownloadError(f"{url} is over the {limits.max_episode_bytes:,}-byte limit")
                    file.write(chunk)
                file.flush()
                os.fsync(file.fileno())
            if session.deadline.expired:  # cut off: what arrived may look complete, but is not
                raise DownloadError(
                    f"{url} was still downloading after the {limits.max_download_s:g}-second max_download_s limit"
                )
            if expected is not None and written != expected:
                raise RetryableDownloadError(f"{url} sent {written:,} of {expected:,} bytes")
            if written == 0:
                raise DownloadError(f"{url} sent an empty body")
            os.replace(part.path, target)
            return AudioFile(
                episode_id=episode.episode_id,
                path=target,
                source_url=response.url,
                content_type=content_type,
                bytes=written,
                sha256=sha256_of(target),
            )
    except REQUEST_ERRORS as exc:  # a lost connection or a cut-off body is retried; a malformed URL is not
        raise request_error(
            exc, url, DownloadError, transient=RetryableDownloadError, timeout_s=timeout_s, redirects="too many times"
        ) from exc
    except OSError as exc:  # the disk is full, or the folder is not writable
        raise DownloadError(f"{url} could not be saved: {exc.strerror or exc}") from exc


def download_episode(
    episode: Episode,
    episode_dir: Path,
    download: DownloadSettings,
    network: NetworkSettings,
    previous: AudioFile | None,
) -> AudioFile:
    """The episode's verified audio file: the one already on disk if it still checks out, else a fresh download.

    Connection errors, cut-off bodies, 429 and 5xx are retried with exponential backoff and jitter (Retry-After
    is honoured, up to a minute); a retry resumes with a Range request where the server allows it. Any other 4xx
    fails at once. No `.part` file outlives the download, whatever its outcome, so a run that was killed starts
    its unfinished downloads over.
    """
    if previous is not None and is_verified(previous):
        return previous
    url = episode.enclosure_url or ""
    if _scheme(url) not in ("http", "https"):
        raise DownloadError(f"enclosure {url!r} is not an http(s) URL")
    episode_dir.mkdir(parents=True, exist_ok=True)
    target = episode_dir / audio_file_name(episode)
    part = PartFile(target.with_name(target.name + ".part"))
    part.discard()  # left by a run that was killed: its validator is gone with it
    try:
        with GuardedSession(network, download.max_download_s) as session:
            try:
                return retrying(
                    lambda: _fetch_once(session, episode, target, part, download, network.http_timeout_s),
                    attempts=download.download_attempts,
                    backoff_base_s=download.retry_backoff_s,
                    retry_on=RetryableDownloadError,
                    remaining_s=session.deadline.remaining_s,
                )
            except GaveUp as gave_up:
                exc, limit = gave_up.last, " at the max_download_s limit" if gave_up.at_deadline else ""
                if session.deadline.expired:
                    raise DownloadError(
                        f"{url} was still downloading after the {download.max_download_s:g}-second max_download_s limit"
                    ) from exc
                raise DownloadError(f"gave up after {gave_up.attempts} attempts{limit}: {exc}") from exc
    finally:
        part.discard()


def stored_audio(job: FeedEpisode) -> AudioFile | None:
    """The audio an earlier run downloaded, where it is still in the episode folder."""
    return job.folder.audio


@stage_task("download")
def download(
    job: FeedEpisode, download: DownloadSettings, network: NetworkSettings, recording: StageRecording
) -> AudioFile:
    recording.audio = download_episode(job.episode, job.folder.path, download, network, job.folder.audio)
    return recording.audio
