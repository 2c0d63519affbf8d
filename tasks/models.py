"""The records that cross a stage boundary or land on disk, and the one Settings model.

Episode -> AudioFile -> Transcript -> EpisodeMetadata: the same types in memory, in the output folder and in the
Prefect UI.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, PositiveFloat, PositiveInt, field_validator

from tasks.redaction import RedactedUrl
from tasks.transcribers import BACKENDS, DEFAULT_BACKEND, described_backends, registered

StageName = Literal["download", "transcribe", "metadata"]
STAGES: tuple[StageName, ...] = ("download", "transcribe", "metadata")

METADATA_SCHEMA_VERSION: Literal[1] = 1

# Timed formats first: their cue times are the speaker's, where HTML and text timings can only be estimated.
PUBLISHED_TRANSCRIPT_TYPES = ("text/vtt", "application/x-subrip", "application/json", "text/html", "text/plain")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Settings(Record):
    """Everything a run can be told; the flow takes it as one parameter, so the Prefect UI renders it as a form."""

    output_dir: Path = Field(Path("podcasts"), description="Where feeds and episodes are written.")
    download_workers: PositiveInt = Field(4, description="Episodes downloading at once.")
    transcribe_workers: PositiveInt = Field(1, description="Episodes transcribing at once.")
    metadata_workers: PositiveInt = Field(4, description="Episodes whose metadata is built at once.")
    transcriber: str = Field(
        DEFAULT_BACKEND,
        description=described_backends(),
        json_schema_extra=lambda schema: schema.update(enum=list(BACKENDS)),  # the UI form's choices, as registered
    )
    model: str = Field(
        "bundled:tiny.en",
        description="bundled:tiny.en (English) or bundled:base (multilingual) ship with podflow and need no network; "
        "otherwise a model name the engine fetches (tiny.en … large-v3) or a local model (faster-whisper: a "
        "CTranslate2 folder; whisper: a checkpoint file).",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="Where the model runs: cpu, cuda or auto.")
    transcribe_pool: Literal["auto", "threads", "processes"] = Field(
        "auto",
        description="Run the transcribe workers as threads or processes (one model each, loaded once per process). "
        "auto: processes for whisper on CUDA, where threads contend on Python; threads otherwise.",
    )
    compute_type: str | None = Field(
        None, description="CTranslate2 compute type; default int8 on CPU, float16 on CUDA, the model's own on auto."
    )
    beam_size: PositiveInt = Field(5, description="Beam size for decoding.")
    language: str | None = Field(None, description="Spoken language code; detected when empty.")
    word_timestamps: bool = Field(False, description="Add word timings to transcript.json.")
    prefer_published: bool = Field(
        False, description="Use a transcript the feed links (Podcasting 2.0) instead of Whisper where there is one."
    )
    published_types: tuple[str, ...] = Field(
        PUBLISHED_TRANSCRIPT_TYPES,
        description="Published transcript media types podflow takes, most preferred first.",
    )
    published_fallback: bool = Field(
        True,
        description="When a preferred published transcript cannot be fetched or parsed, transcribe the audio "
        "instead of failing the episode (not with transcriber=published).",
    )
    user_agent: str = Field("podflow/0.1", description="HTTP User-Agent.")
    http_timeout_s: PositiveFloat = Field(30.0, description="Connect and read timeout of each HTTP request.")
    download_attempts: PositiveInt = Field(4, description="Tries per download on connection errors, 429 and 5xx.")
    retry_backoff_s: float = Field(1.0, ge=0, description="First retry delay; doubles each try, with jitter.")
    max_download_s: PositiveFloat = Field(
        3 * 3600.0, description="A download still going after this long, retries included, is given up."
    )
    max_document_s: PositiveFloat = Field(
        120.0,
        description="A feed, OPML list or published transcript still arriving after this long (headers and "
        "redirects included) is given up.",
    )
    max_feed_bytes: PositiveInt = Field(
        20 * 2**20, description="Larger feeds and published transcripts are refused while streaming."
    )
    max_feed_pages: PositiveInt = Field(
        20, description="Pages of a paged feed (RFC 5005 rel=next) read per run, the first included."
    )
    allowed_networks: tuple[IPvAnyNetwork, ...] = Field(
        (),
        description="Private, loopback, link-local or other non-public networks (CIDR) podflow may connect to, e.g. "
        "a LAN media server. By default it connects only to public addresses, and to the host of a feed or OPML URL "
        "given to it, for that one request.",
    )
    max_episode_bytes: PositiveInt = Field(2 * 2**30, description="Larger enclosures are refused while streaming.")
    max_audio_duration_s: PositiveFloat = Field(
        6 * 3600.0, description="Longer audio is refused (checked while decoding) instead of transcribed."
    )
    published_after: datetime | None = Field(
        None, description="Take only episodes published after this moment (undated episodes are taken)."
    )
    newest: PositiveInt | None = Field(None, description="Take only each feed's newest N episodes.")
    skip_back_catalogue: bool = Field(
        False,
        description="On a feed's first run, record the episodes it already has as seen without downloading them; "
        "later runs take only new episodes. Safe to leave on for a scheduled deployment.",
    )

    @field_validator("transcriber")
    @classmethod
    def _registered(cls, name: str) -> str:
        """One of the transcribers in tasks/transcribers.py's BACKENDS."""
        return registered(name)

    @field_validator("published_after")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        """A date given without a zone (`2026-11-01`) is read as UTC, so it compares with the feeds' dates."""
        return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment

    # OpenAI, or any OpenAI-compatible server: API transcription (transcriber=openai) and enrichment (enrich=openai).
    openai_base_url: str | None = Field(
        None, description="An OpenAI-compatible API, e.g. a self-hosted Whisper server; empty: api.openai.com."
    )
    openai_api_key_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding the API key; empty: the OPENAI_API_KEY variable."
    )
    openai_transcribe_model: str = Field("whisper-1", description="whisper-1, gpt-4o-transcribe, …")
    openai_requests: PositiveInt = Field(4, description="API requests in flight at once for one episode.")
    openai_rate_limit: str | None = Field(
        None,
        description="Name of a Prefect global concurrency limit (with slot decay) every API request takes a slot "
        "of: one rate limit shared by all runs.",
    )
    enrich: Literal["none", "local", "openai"] = Field(
        "local",
        description="Add to metadata.json: local (an extractive summary and keywords, no network) or openai (a "
        "summary, topics, chapters, hosts and guests from a chat model).",
    )
    enrich_model: str = Field("gpt-4o-mini", description="The chat model enrich=openai uses.")

    def selection(self) -> str:
        """The settings that choose a feed's episodes: a feed's cached answer holds only under the same choice."""
        return f"published_after={self.published_after and self.published_after.isoformat()};newest={self.newest}"


class TranscriptLink(Record):
    """A Podcasting 2.0 `<podcast:transcript>` the feed publishes for an episode."""

    url: RedactedUrl
    type: str | None = None
    language: str | None = None
    rel: str | None = None


class Feed(Record):
    url: RedactedUrl = Field(description="The URL podflow was given.")
    final_url: RedactedUrl = Field(description="Where the feed was found after redirects.")
    title: str
    link: RedactedUrl | None = None
    description: str = ""
    image: RedactedUrl | None = None
    language: str | None = None
    author: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: datetime
    paging_error: str | None = Field(
        None,
        description="Why pages of a paged feed (RFC 5005 rel=next) were left unread this run: a page that "
        "failed, or max_feed_pages. The episodes of the pages before it were read.",
    )


class Episode(Record):
    episode_id: str = Field(
        description="The feed's GUID (masked, with a hash of the whole GUID, where it holds a credential), else a hash "
        "of the enclosure URL without tracking parameters."
    )
    title: str
    published: datetime | None = None
    description: str = ""
    link: RedactedUrl | None = None
    image: RedactedUrl | None = None
    enclosure_url: RedactedUrl | None = None
    enclosure_type: str | None = None
    enclosure_length: int | None = None
    itunes_duration_s: float | None = None
    season: int | None = None
    episode_number: int | None = None
    transcripts: tuple[TranscriptLink, ...] = ()


class AudioFile(Record):
    episode_id: str
    path: Path
    source_url: RedactedUrl = Field(description="The URL the bytes came from, after redirects.")
    content_type: str | None = None
    bytes: int
    sha256: str


class Word(Record):
    start: float
    end: float
    text: str
    probability: float | None = None


class Segment(Record):
    start: float = Field(ge=0)
    end: float = Field(ge=0)
    text: str
    words: tuple[Word, ...] = Field((), description="Word timings, when the settings ask for them.")


class Transcript(Record):
    episode_id: str
    audio_sha256: str = Field(description="The audio file this transcript was made from.")
    backend: str
    model: str
    language: str | None
    language_probability: float | None = Field(None, description="How sure the detection was; None when given.")
    audio_duration_s: float = Field(description="Length of the decoded audio.")
    source_url: RedactedUrl | None = Field(None, description="The published transcript this was read from.")
    estimated_timing: bool = Field(
        False, description="Segment times spread over the audio by length: the source (HTML, text) had none."
    )
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(segment.text.strip() for segment in self.segments).strip()


class AudioFacts(Record):
    file: str
    bytes: int
    sha256: str
    source_url: RedactedUrl
    content_type: str | None
    duration_s: float
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None


class TranscriptFacts(Record):
    backend: str
    model: str
    language: str | None
    language_probability: float | None = None
    source_url: RedactedUrl | None = None
    estimated_timing: bool = False
    word_count: int
    segment_count: int
    files: tuple[str, ...]


class StageTiming(Record):
    started: datetime
    ended: datetime


class ProcessingFacts(Record):
    flow_run_id: str | None
    stages: dict[StageName, StageTiming]


class Chapter(Record):
    start: float = Field(ge=0, description="Seconds into the audio: the start of one of the transcript's segments.")
    title: str


class TokenUsage(Record):
    """Tokens billed, summed over every answer of one episode's chat requests (invalid answers asked again
    included; a 429 or 5xx costs none)."""

    requests: int = Field(0, description="Chat requests that were answered.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Enrichment(Record):
    """What `enrich` added to an episode. local fills summary and keywords; openai fills summary, topics,
    chapters, hosts and guests. A field the method does not produce stays empty."""

    method: Literal["local", "openai"]
    model: str | None = Field(None, description="The chat model that answered, as the API named it; None for local.")
    summary: str = Field("", description="local: sentences taken from the transcript; openai: written by the model.")
    keywords: tuple[str, ...] = Field((), description="local: the transcript's most telling words.")
    topics: tuple[str, ...] = ()
    chapters: tuple[Chapter, ...] = ()
    hosts: tuple[str, ...] = ()
    guests: tuple[str, ...] = ()
    parts: int = Field(
        1, description="Parts the transcript was summarised in; more than 1: one request per part, then one to combine."
    )
    usage: TokenUsage | None = Field(None, description="openai: the tokens all requests cost.")


class EpisodeMetadata(Record):
    """`metadata.json`: one document per episode. Bump METADATA_SCHEMA_VERSION on any incompatible change."""

    schema_version: Literal[1] = METADATA_SCHEMA_VERSION
    feed: Feed
    episode: Episode
    audio: AudioFacts
    transcript: TranscriptFacts
    processing: ProcessingFacts
    enrichment: Enrichment | None = Field(None, description="Summary, keywords or topics, chapters: see `enrich`.")


class StageOutcome(Record):
    status: Literal["done", "failed"]
    started: datetime
    ended: datetime
    error: str | None = None


class LedgerEntry(Record):
    episode_id: str
    title: str
    folder: str = Field(description="Fixed at first sight, so a renamed episode keeps its folder.")
    skipped: str | None = Field(None, description="Why the episode has nothing to process (no enclosure).")
    marked_seen: datetime | None = Field(
        None, description="When a first run with skip_back_catalogue recorded it as seen, never to be processed."
    )
    audio: AudioFile | None = None
    stages: dict[StageName, StageOutcome] = {}

    @property
    def complete(self) -> bool:
        return all((outcome := self.stages.get(stage)) is not None and outcome.status == "done" for stage in STAGES)


class FeedValidators(Record):
    """What the feed's server said identifies the version podflow last registered, for a conditional GET."""

    etag: str | None
    last_modified: str | None
    selection: str = Field(description="Settings.selection() of the run that registered it.")


class Ledger(Record):
    """`ledger.json`: every episode podflow has seen in one feed, and how each stage went."""

    feed_url: RedactedUrl
    validators: FeedValidators | None = None
    episodes: dict[str, LedgerEntry] = {}


class EpisodeOutcome(Record):
    episode_id: str
    title: str
    folder: str
    published: datetime | None = None
    status: Literal["complete", "already complete", "failed", "skipped"]
    stages: dict[StageName, Literal["done", "failed"]] = {}
    seconds: dict[StageName, float] = Field({}, description="How long each stage took in this run.")
    audio_bytes: int | None = Field(None, description="Downloaded in this run.")
    audio_duration_s: float | None = Field(None, description="Transcribed in this run.")
    error: str | None = None


class IngestReport(Record):
    """What one run did with one feed, episode by episode."""

    feed_url: RedactedUrl
    feed_title: str
    feed_dir: Path
    status: Literal["fetched", "not modified", "failed"] = "fetched"
    error: str | None = Field(None, description="Why the feed could not be ingested at all.")
    episodes: tuple[EpisodeOutcome, ...] = ()

    def count(self, status: str) -> int:
        return sum(1 for episode in self.episodes if episode.status == status)


class RunReport(Record):
    """What one run did with all its feeds."""

    started: datetime
    ended: datetime
    feeds: tuple[IngestReport, ...]
    source_errors: tuple[str, ...] = Field((), description="Feed lists (OPML) that could not be read.")

    @property
    def episodes(self) -> list[EpisodeOutcome]:
        return [episode for feed in self.feeds for episode in feed.episodes]

    def count(self, status: str) -> int:
        return sum(feed.count(status) for feed in self.feeds)

    def failure(self) -> str | None:
        """Why the run as a whole counts as failed (any feed or episode failed), or None."""
        failed_feeds = [feed for feed in self.feeds if feed.status == "failed"]
        if not failed_feeds and not self.count("failed") and not self.source_errors:
            return None
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("complete", "already complete", "skipped") if self.count(s))
        parts = list(self.source_errors)
        if failed_feeds:
            parts.append(f"{len(failed_feeds)} of {len(self.feeds)} feeds failed")
        if self.count("failed"):
            parts.append(f"{self.count('failed')} of {len(self.episodes)} episodes failed ({counts or 'none other'})")
        return "; ".join(parts)
