"""The errors podflow expects, with messages a user can act on. Anything else is a bug."""


class PodflowError(Exception):
    """An expected failure of one feed or one episode; the message says what and why."""


class FeedError(PodflowError):
    """The feed could not be fetched or is not a feed."""


class DownloadError(PodflowError):
    """An episode's audio could not be downloaded."""


class RetryableDownloadError(DownloadError):
    """A download failure worth another try: connection errors, truncated bodies, 429 and 5xx."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AudioDecodeError(PodflowError):
    """The downloaded file is not audio PyAV can decode."""


class TranscriptionError(PodflowError):
    """The transcriber failed on decodable audio."""
