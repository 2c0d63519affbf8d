"""The records that cross a stage boundary or land on disk: a feed, its episodes, their audio and transcripts.

Episode -> AudioFile -> Transcript -> EpisodeMetadata (tasks/models/metadata.py): the same types in memory, in the
output folder and in the Prefect UI.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.redaction import RedactedUrl


def utc_now() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TranscriptLink(Record):
    """A Podcasting 2.0 `<podcast:transcript>` the feed publishes for an episode."""

    url: RedactedUrl
    type: str | None = None
    language: str | None = None
    rel: str | None = None


class FeedFacts(Record):
    """The show, as its feed describes it: `metadata.json`'s and `feed.json`'s feed."""

    url: RedactedUrl = Field(description="The URL podflow was given.")
    final_url: RedactedUrl = Field(description="Where the feed was found after redirects.")
    title: str
    link: RedactedUrl | None = None
    description: str = ""
    image: RedactedUrl | None = None
    language: str | None = None
    author: str | None = None
    fetched_at: datetime

    @classmethod
    def of(cls, feed: FeedFacts) -> FeedFacts:
        """Only the show's facts of a Feed, what its fetch found left out."""
        return cls.model_validate(feed.model_dump(include=set(cls.model_fields)))


class Feed(FeedFacts):
    """The show, and what this run's fetch of it found: the HTTP cache state the ledger keeps, and its paging."""

    etag: str | None = None
    last_modified: str | None = None
    paging_error: str | None = Field(
        None,
        description="Why part of the feed was left unread this run: a page of a paged feed (RFC 5005 rel=next) "
        "that failed, max_feed_pages or max_feed_episodes. The episodes before it were read.",
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
    language: str | None = Field(
        None, description="The spoken language the item declares (dc:language), as Whisper's code; None: none it knows."
    )
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


LanguageSource = Literal["setting", "episode", "feed"]


class ModelChoice(Record):
    """The model an episode was heard with, and why: model=auto chooses by the language declared for it."""

    model: str
    reason: str = Field(description="Why this model, e.g. `feed language fr; bundled:tiny.en is English-only`.")
    language: str | None = Field(description="The language the model was told; None: it detected the language.")
    language_source: LanguageSource | None = Field(
        description="Where that language came from: the language setting, the item, the channel."
    )


class Transcript(Record):
    episode_id: str
    audio_sha256: str = Field(description="The audio file this transcript was made from.")
    backend: str
    model: str
    language: str | None
    language_probability: float | None = Field(None, description="How sure the detection was; None when given.")
    model_choice: ModelChoice | None = Field(
        None, description="Why the model heard the audio; None where podflow chose none (published, the OpenAI API)."
    )
    audio_duration_s: float = Field(description="Length of the decoded audio.")
    source_url: RedactedUrl | None = Field(None, description="The published transcript this was read from.")
    estimated_timing: bool = Field(
        False, description="Segment times spread over the audio by length: the source (HTML, text) had none."
    )
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return " ".join(segment.text.strip() for segment in self.segments).strip()
