"""The errors podflow expects, with messages a user can act on. Anything else is a bug."""

from __future__ import annotations

from tasks.redaction import redact_urls


class PodflowError(Exception):
    """An expected failure of one feed or one episode; the message says what and why, with credentials in any
    URL it names masked."""

    def __init__(self, message: str):
        super().__init__(redact_urls(message))


class FeedError(PodflowError):
    """The feed could not be fetched or is not a feed."""


class FeedBusyError(PodflowError):
    """Another run holds the feed's folder."""


class DownloadError(PodflowError):
    """An episode's audio could not be downloaded."""


class RetryableDownloadError(DownloadError):
    """A download failure worth another try: connection errors, truncated bodies, 429 and 5xx."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StorageError(PodflowError):
    """A file could not be written: the disk is full, or the folder is not writable."""


class AudioDecodeError(PodflowError):
    """The downloaded file is not audio PyAV can decode."""


class AudioTooLongError(PodflowError):
    """The audio runs past the settings' maximum duration."""


class StoppedError(PodflowError):
    """The run is stopping (SIGTERM, Ctrl-C): the work in hand is left, to be done by the next run."""


class TranscriptionError(PodflowError):
    """The transcriber failed on decodable audio."""


class EnrichmentError(PodflowError):
    """The chat model behind enrich=openai refused the request or gave no valid answer."""
