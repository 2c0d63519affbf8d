"""What a run did: per episode, per feed and for the whole run (the CLI's table, the flow's summary artifact)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from tasks.models.records import Record
from tasks.redaction import RedactedUrl
from tasks.stages import StageName


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
