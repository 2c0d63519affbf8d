"""The errors podflow expects, with messages a user can act on. Anything else is a bug. Control-flow exceptions
private to a module stay there, as does tasks.retrying's GaveUp, which only hands its caller the last try's error."""

from __future__ import annotations

from tasks.redaction import redact_urls

KEY_REFUSED_STATUSES = (401, 403)
OUT_OF_QUOTA_CODE = "insufficient_quota"  # a 429 with this code: retrying cannot help until someone pays


class PodflowError(Exception):
    """An expected failure of one feed or one episode; the message says what and why, with credentials in any
    URL it names masked."""

    def __init__(self, message: str):
        super().__init__(redact_urls(message))


class AddressRefusedError(PodflowError):
    """A host resolved to an address podflow may not connect to."""


class DeadlineExceededError(PodflowError):
    """A request (or a whole download) ran past its wall-clock limit."""


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
    """The transcriber could not be loaded, or failed on decodable audio."""


class UnknownBundledModel(TranscriptionError):
    """The `model` setting names a bundled model podflow does not ship (`bundled:large`)."""


class ModelFormatError(TranscriptionError):
    """A bundled model's file is not a CTranslate2 Whisper model the converter to openai-whisper understands."""


class ClusterError(TranscriptionError):
    """The transcribe cluster cannot be reached, or has no worker to take the transcription."""


class ModelMismatchError(TranscriptionError):
    """The worker that took the transcription loaded another model than the flow asks for."""


class EnglishOnlyModelError(TranscriptionError):
    """The model setting names a model that hears only English, and the episode is declared in another language."""


class AudioNotVisibleError(PodflowError):
    """The worker does not see the flow's audio file at its path: the audio must travel as bytes."""


class RequestFailed(PodflowError):
    """An OpenAI API request the API refused (`refused`: a 4xx not worth repeating), or that failed `attempts`
    times; `detail` says how the last try failed, the key masked; `code` is the error code the server gave, if any.
    transcriber=openai and enrich=openai each report it as their own error."""

    def __init__(
        self, detail: str, attempts: int, status: int | None = None, refused: bool = False, code: str | None = None
    ):
        super().__init__(detail)
        self.detail, self.attempts, self.status, self.refused, self.code = detail, attempts, status, refused, code

    @property
    def key_refused(self) -> bool:
        return self.refused and self.status in KEY_REFUSED_STATUSES

    @property
    def out_of_quota(self) -> bool:
        return self.refused and self.code == OUT_OF_QUOTA_CODE

    @property
    def reason(self) -> str:
        """The refusal in words: 401 and 403 refuse the key, insufficient_quota the account."""
        if self.key_refused:
            return "the API key was refused"
        return "the account is out of quota" if self.out_of_quota else "the request was refused"


class EnrichmentError(PodflowError):
    """The chat model behind enrich=openai refused the request or gave no valid answer."""


class InvalidAnswer(EnrichmentError):
    """One answer of the chat model that is not JSON, does not follow the schema, or names a chapter start that is
    not a segment's: it is asked again, and an EnrichmentError follows the last try's."""
