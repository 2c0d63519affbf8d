"""The ledger: every episode podflow has seen in one feed, how each stage went, and the feed's validators (kept in
`ledger.sqlite` by tasks/ledger_db.py; `podflow ledger --json` prints it as this record)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from tasks.models.records import AudioFile, Record
from tasks.redaction import RedactedUrl
from tasks.stages import STAGES, StageName


class StageOutcome(Record):
    status: Literal["done", "failed"]
    started: datetime
    ended: datetime
    error: str | None = None
    workers: tuple[str, ...] = Field(
        (),
        description="The transcribe cluster's workers that took the stage, in order: more than one where a worker "
        "left mid-way and the stage moved to another.",
    )


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
        """Every registered stage is done, by the ledger (the episode folder says whether its files still are)."""
        return all((outcome := self.stages.get(stage)) is not None and outcome.status == "done" for stage in STAGES)


class FeedValidators(Record):
    """What the feed's server said identifies the version podflow last registered, for a conditional GET."""

    etag: str | None
    last_modified: str | None
    selection: str = Field(description="Settings.selection.key() of the run that registered it.")


class Ledger(Record):
    """Every episode podflow has seen in one feed, and how each stage went."""

    feed_url: RedactedUrl
    validators: FeedValidators | None = None
    episodes: dict[str, LedgerEntry] = {}
