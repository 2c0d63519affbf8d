"""What a run did to each feed and episode, read back from the ledgers and the metadata written: the records of
the run's report."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from tasks.episode_folder import METADATA, EpisodeFolder
from tasks.feed_run import FeedRun
from tasks.models import Episode, EpisodeMetadata, EpisodeOutcome, Feed, IngestReport, LedgerEntry
from tasks.redaction import redact_url, redact_urls


class StagesRun(Protocol):
    """An episode's way through the stages in this run: the stage that failed and why, or None where none did."""

    @property
    def failed_stage(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...


def seconds_this_run(entry: LedgerEntry, since: datetime) -> dict[str, float]:
    """The seconds each stage the run made (started at or after `since`) took."""
    return {
        stage: (outcome.ended - outcome.started).total_seconds()
        for stage, outcome in entry.stages.items()
        if outcome.started >= since
    }


def episode_outcome(folder: EpisodeFolder, episode: Episode, run: StagesRun | None, since: datetime) -> EpisodeOutcome:
    """The episode's outcome: skipped, already complete (`run` None: it was not in the pipeline), failed or
    complete."""
    entry = folder.entry
    common: dict[str, Any] = {
        "episode_id": entry.episode_id,
        "title": entry.title,
        "folder": entry.folder,
        "published": episode.published,
        "stages": {stage: outcome.status for stage, outcome in entry.stages.items()},
    }
    if entry.skipped or entry.marked_seen:
        reason = entry.skipped or "marked seen on the feed's first run (skip_back_catalogue)"
        return EpisodeOutcome(**common, status="skipped", error=reason)
    if run is None:
        return EpisodeOutcome(**common, status="already complete")
    seconds = seconds_this_run(entry, since)
    audio_bytes = entry.audio.bytes if entry.audio and "download" in seconds else None
    if run.failed_stage is not None:
        # Expected errors are masked already; this covers the unexpected.
        error = redact_urls(run.error or f"the {run.failed_stage} stage failed")
        return EpisodeOutcome(**common, status="failed", seconds=seconds, audio_bytes=audio_bytes, error=error)
    written = folder.file(METADATA)
    duration_s = None  # what the run transcribed: none where it ran only a stage added since
    if "transcribe" in seconds and written.is_file():
        duration_s = EpisodeMetadata.model_validate_json(written.read_bytes()).audio.duration_s
    return EpisodeOutcome(
        **common, status="complete", seconds=seconds, audio_bytes=audio_bytes, audio_duration_s=duration_s
    )


def feed_report(feed_run: FeedRun, runs: Mapping[tuple[Path, str], StagesRun], since: datetime) -> IngestReport:
    """The feed's report: failed, not modified, or each chosen episode's outcome. `runs`: the pipeline's runs by
    (feed folder, episode id)."""
    store = feed_run.store
    common: dict[str, Any] = {"feed_url": feed_run.url, "feed_dir": store.feed_dir}
    if feed_run.error is not None:
        return IngestReport(**common, feed_title=redact_url(feed_run.url), status="failed", error=feed_run.error)
    if feed_run.feed is None:
        saved = store.feed_dir / "feed.json"
        title = Feed.model_validate_json(saved.read_bytes()).title if saved.is_file() else redact_url(feed_run.url)
        return IngestReport(**common, feed_title=title, status="not modified")
    ledger = store.read_ledger().episodes
    outcomes = tuple(
        episode_outcome(store.folder(ledger[e.episode_id]), e, runs.get((store.feed_dir, e.episode_id)), since)
        for e in feed_run.episodes
    )
    return IngestReport(**common, feed_title=feed_run.feed.title, episodes=outcomes)
