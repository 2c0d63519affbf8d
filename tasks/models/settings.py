"""The Settings of a run, in groups by concern: what the run writes and takes, how it reaches the network, each
stage's own, OpenAI and the cluster.

Every field's name is unique across the groups: it is the setting's one user-facing name (`--model`, `model` in
a flat parameter dict), so the same setting is spelled the same everywhere, and a flat dict maps to its groups.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, IPvAnyNetwork, PositiveInt, field_validator, model_validator

from tasks.models.records import Record
from tasks.models.units import ByteSize, Delay, Seconds
from tasks.transcribe.languages import AUTO_MODEL, spoken_language
from tasks.transcribers import BACKENDS, DEFAULT_BACKEND, described_backends, registered
from tasks.version import podflow_version

# Timed formats first: their cue times are the speaker's, where HTML and text timings can only be estimated.
PUBLISHED_TRANSCRIPT_TYPES = ("text/vtt", "application/x-subrip", "application/json", "text/html", "text/plain")


class OutputSettings(Record):
    """Where the run writes."""

    output_dir: Path = Field(Path("podcasts"), description="Where feeds and episodes are written.")


class SelectionSettings(Record):
    """Which of a feed's episodes a run takes."""

    published_after: datetime | None = Field(
        None, description="Take only episodes published after this moment (undated episodes are taken)."
    )
    newest: PositiveInt | None = Field(None, description="Take only each feed's newest N episodes.")
    skip_back_catalogue: bool = Field(
        False,
        description="On a feed's first run, record the episodes it already has as seen without downloading them; "
        "later runs take only new episodes. Safe to leave on for a scheduled deployment.",
    )

    @field_validator("published_after")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        """A date given without a zone (`2026-11-01`) is read as UTC, so it compares with the feeds' dates."""
        return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment

    def key(self) -> str:
        """The choice as one string: a feed's cached answer holds only under the same choice."""
        return f"published_after={self.published_after and self.published_after.isoformat()};newest={self.newest}"


class NetworkSettings(Record):
    """How podflow talks to feed and media hosts, and which networks it may reach."""

    user_agent: str = Field(f"podflow/{podflow_version()}", description="HTTP User-Agent.")
    http_timeout_s: Seconds = Field(30.0, description="Connect and read timeout of each HTTP request.")
    allowed_networks: tuple[IPvAnyNetwork, ...] = Field(
        (),
        description="Private, loopback, link-local or other non-public networks (CIDR) podflow may connect to, e.g. "
        "a LAN media server. By default it connects only to public addresses, and to the host of a feed or OPML URL "
        "given to it, for that one request.",
    )


class DocumentSettings(Record):
    """Bounds on the documents podflow reads from strangers: feeds, OPML lists and published transcripts."""

    max_document_s: Seconds = Field(
        120.0,
        description="A feed, OPML list or published transcript still arriving after this long (headers and "
        "redirects included) is given up.",
    )
    max_feed_bytes: ByteSize = Field(
        20 * 2**20, description="Larger feeds and published transcripts are refused while streaming."
    )
    max_feed_pages: PositiveInt = Field(
        20, description="Pages of a paged feed (RFC 5005 rel=next) read per run, the first included."
    )
    max_feed_episodes: PositiveInt = Field(
        50_000, description="Episodes read from one feed, its pages together; the items after them are not read."
    )
    max_opml_feeds: PositiveInt = Field(20_000, description="Feeds read from one OPML list; the rest are not read.")
    max_transcript_segments: PositiveInt = Field(
        100_000, description="A published transcript of more segments (cues, paragraphs) is refused."
    )
    max_parse_s: Seconds = Field(
        60.0,
        description="Parsing one feed page, OPML list or published transcript (in a child process) may take this "
        "long; past it the child is killed and the document refused.",
    )
    max_parse_bytes: ByteSize = Field(
        2 * 2**30, description="The address space of that child process: a document that needs more is refused."
    )


class DownloadSettings(Record):
    """The download stage."""

    download_workers: PositiveInt = Field(4, description="Episodes downloading at once.")
    download_attempts: PositiveInt = Field(4, description="Tries per download on connection errors, 429 and 5xx.")
    retry_backoff_s: Delay = Field(1.0, description="A download's first retry delay; doubles each try, with jitter.")
    max_download_s: Seconds = Field(
        3 * 3600.0, description="A download still going after this long, retries included, is given up."
    )
    max_episode_bytes: ByteSize = Field(2 * 2**30, description="Larger enclosures are refused while streaming.")


class TranscribeSettings(Record):
    """The transcribe stage: the transcriber, its model and decoding, the audio it accepts, published transcripts."""

    transcribe_workers: PositiveInt = Field(
        1,
        description="Episodes this machine transcribes at once, the CPU cores split between them. With a "
        "transcribe_cluster, its workers' slots decide instead.",
    )
    transcriber: str = Field(
        DEFAULT_BACKEND,
        description=described_backends(),
        json_schema_extra=lambda schema: schema.update(enum=list(BACKENDS)),  # the UI form's choices, as registered
    )
    model: str = Field(
        AUTO_MODEL,
        description="auto: bundled:tiny.en for English or undeclared languages, bundled:base for any other declared "
        "language (the language setting, else the episode's, else the feed's). bundled:tiny.en (English) and "
        "bundled:base (multilingual) ship with podflow and need no network; otherwise a model name the engine fetches "
        "(tiny.en … large-v3) or a local model (faster-whisper: a CTranslate2 folder; whisper: a checkpoint file). "
        "Any model but auto is used for every episode: one that hears only English (*.en) refuses an episode "
        "declared in another language.",
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
    greedy_first: bool = Field(
        False,
        description="faster-whisper, batched: hear each stretch with beam 1 first, and again with beam_size only where "
        "its text fails the quality tests (a loop, an unsure text, a skipped sentence). Faster, but less accurate on "
        "synthetic speech.",
    )
    batch_size: PositiveInt = Field(
        4,
        description="faster-whisper: stretches of speech (up to 30 s each, found by its bundled Silero VAD) decoded "
        "at once, each on its own. 1: its classic decoder instead, 30 s after 30 s, each seeded with the text before "
        "it (about 3x slower on 2 cores).",
    )
    transcribe_window_s: Seconds = Field(
        300.0,
        ge=60,
        description="Local transcribers decode and hear the audio this many seconds at a time, each window cut at a "
        "pause near its end: memory stays the same however long the episode runs.",
    )
    language: str | None = Field(
        None,
        description="Spoken language code (fr, de, …) of every episode. Empty: the language the episode, else its "
        "feed, declares (faster-whisper and whisper; the OpenAI API detects it), detected where neither does.",
    )
    word_timestamps: bool = Field(False, description="Add word timings to transcript.json.")
    max_audio_duration_s: Seconds = Field(
        6 * 3600.0, description="Longer audio is refused (checked while decoding) instead of transcribed."
    )
    max_decode_s: Seconds = Field(
        1800.0,
        description="Decoding one episode's audio may take this long (the decoder's own time, not the "
        "transcriber's); past it the episode fails.",
    )
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

    @field_validator("transcriber")
    @classmethod
    def _registered(cls, name: str) -> str:
        """One of the transcribers in tasks/transcribers.py's BACKENDS."""
        return registered(name)

    @field_validator("language")
    @classmethod
    def _spoken(cls, language: str | None) -> str | None:
        """Whisper's code of the language (`fr-FR` -> `fr`); ValueError for one Whisper does not hear."""
        if not language or not language.strip():
            return None
        if (code := spoken_language(language)) is None:
            raise ValueError(f"Whisper hears no language {language!r}: give a code such as fr or de")
        return code


class ClusterSettings(Record):
    """A Dask cluster of `podflow worker`s that hears the audio instead of this machine."""

    transcribe_cluster: str | None = Field(
        None,
        description="A Dask scheduler (tcp://HOST:8786) whose workers, started with `podflow worker`, hear the audio; "
        "the run then transcribes as many episodes at once as the cluster has transcribe slots. Empty: this machine.",
    )
    cluster_timeout_s: Seconds = Field(
        30.0,
        description="transcribe_cluster: how long to wait for its scheduler and for a worker with a transcribe slot, "
        "at the start of a run and while an episode waits, before failing.",
    )
    cluster_transcribe_timeout_s: Seconds = Field(
        6 * 3600.0,
        description="transcribe_cluster: an episode still being heard this long after a worker took it is given up.",
    )
    worker_slots: PositiveInt = Field(
        1,
        description="`podflow worker`: transcriptions one worker runs at once, each holding one of its transcribe "
        "slots, all on its one model. On a host of several GPUs, run one worker per GPU (CUDA_VISIBLE_DEVICES=N).",
    )


class MetadataSettings(Record):
    """The metadata stage and its enrichment."""

    metadata_workers: PositiveInt = Field(4, description="Episodes whose metadata is built at once.")
    enrich: Literal["none", "local", "openai"] = Field(
        "local",
        description="Add to metadata.json: local (an extractive summary and keywords, no network) or openai (a "
        "summary, topics, chapters, hosts and guests from a chat model).",
    )
    enrich_model: str = Field("gpt-4o-mini", description="The chat model enrich=openai uses.")


class OpenAISettings(Record):
    """OpenAI, or any OpenAI-compatible server: API transcription (transcriber=openai) and enrichment
    (enrich=openai)."""

    openai_base_url: str | None = Field(
        None, description="An OpenAI-compatible API, e.g. a self-hosted Whisper server; empty: api.openai.com."
    )
    openai_api_key_secret: str | None = Field(
        None, description="Name of a Prefect Secret block holding the API key; empty: the OPENAI_API_KEY variable."
    )
    openai_transcribe_model: str = Field("whisper-1", description="whisper-1, gpt-4o-transcribe, …")
    openai_requests: PositiveInt = Field(4, description="API requests in flight at once for one episode.")
    openai_attempts: PositiveInt = Field(
        4, description="Tries per API request on timeouts, lost connections, 408, 409, 429 and 5xx."
    )
    openai_retry_backoff_s: Delay = Field(1.0, description="An API request's first retry delay; doubles each try.")
    openai_rate_limit_wait_s: Seconds = Field(
        3 * 3600.0,
        description="How long an API request waits for a slot of openai_rate_limit before its episode fails.",
    )
    openai_rate_limit: str | None = Field(
        None,
        description="Name of a Prefect global concurrency limit (with slot decay) every API request takes a slot "
        "of: one rate limit shared by all runs.",
    )


class FlatSettingsWarning(UserWarning):
    """Settings were given as one flat dict, as before they came in groups: they are read into their groups."""


class Settings(Record):
    """Everything a run can be told, in groups; the flow takes it as one parameter, so the Prefect UI renders it as
    a form of sections."""

    # The Prefect server checks a run's parameters against this schema before any podflow code runs: without
    # `additionalProperties: false` it lets a flat dict through to _grouped, and validation here still refuses a
    # name that is no setting.
    model_config = ConfigDict(
        **Record.model_config, json_schema_extra=lambda schema: schema.pop("additionalProperties", None)
    )

    output: OutputSettings = Field(default_factory=OutputSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    documents: DocumentSettings = Field(default_factory=DocumentSettings)
    download: DownloadSettings = Field(default_factory=DownloadSettings)
    transcribe: TranscribeSettings = Field(default_factory=TranscribeSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)

    @model_validator(mode="before")
    @classmethod
    def _grouped(cls, data: Any) -> Any:
        """A flat dict (a deployment made before the groups) read into its groups, with a FlatSettingsWarning."""
        if not isinstance(data, dict) or not (flat := [key for key in data if key in GROUP_OF]):
            return data
        warnings.warn(
            f"settings given flat ({', '.join(flat)}): read as "
            + ", ".join(f"{GROUP_OF[key]}.{key}" for key in flat)
            + "; give them in their groups",
            FlatSettingsWarning,
            stacklevel=2,
        )
        return grouped(data)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from user-facing names (`Settings.of(model="bundled:base", newest=3)`), each read into its
        group and validated: what the command line gives."""
        return cls.model_validate(grouped(values))

    def but(self, **values: Any) -> Settings:
        """These settings with some changed, by user-facing name, validated."""
        return Settings.of(**(self.flat() | values))

    def get(self, name: str) -> Any:
        """One setting by its user-facing name (`settings.get("metadata_workers")`)."""
        return getattr(getattr(self, GROUP_OF[name]), name)

    def flat(self) -> dict[str, Any]:
        """Every setting by its user-facing name."""
        return {key: value for group in type(self).model_fields for key, value in dict(getattr(self, group)).items()}


def groups_of_names() -> dict[str, str]:
    """Each setting's user-facing name and the group it is in; ValueError where two groups use one name."""
    found: dict[str, str] = {}
    for group, info in Settings.model_fields.items():
        for name in info.annotation.model_fields:  # type: ignore[union-attr]  # each a group model
            if name in found or name in Settings.model_fields:
                raise ValueError(f"the setting {name!r} of {group} is named like another setting or a group")
            found[name] = group
    return found


GROUP_OF = groups_of_names()


def grouped(values: dict[str, Any]) -> dict[str, Any]:
    """Flat user-facing names sorted into their groups, merged with any group given whole; unknown names are left
    for validation to refuse."""
    result = {
        key: dict(value) if isinstance(value, dict) else value for key, value in values.items() if key not in GROUP_OF
    }
    for key, value in values.items():
        if key in GROUP_OF:
            group = result.setdefault(GROUP_OF[key], {})
            if isinstance(group, dict):  # anything else, validation refuses
                group[key] = value
    return result
