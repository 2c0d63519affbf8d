"""`metadata.json`: the facts about one episode's audio, transcript and processing, and what `enrich` added."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from tasks.models.records import Episode, Feed, ModelChoice, Record
from tasks.redaction import RedactedUrl
from tasks.stages import StageName

METADATA_SCHEMA_VERSION: Literal[1] = 1


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
    model_choice: ModelChoice | None = None
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
