"""The output layout, atomic writes, and the per-feed ledger of stage outcomes.

<output>/<feed-slug>/feed.json        the Feed record
<output>/<feed-slug>/ledger.json      episode_id -> folder, audio record, stage outcomes
<output>/<feed-slug>/episodes/<date>-<episode-slug>-<id8>/   audio.*, transcript.*, metadata.json
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from tasks.errors import FeedBusyError, StorageError
from tasks.models import AudioFile, Episode, Feed, FeedValidators, Ledger, LedgerEntry, StageName, StageOutcome, utc_now
from tasks.redaction import redact_url, redact_urls

SLUG_MAX_CHARS = 60
# mkstemp creates files readable by the owner only; published files get the usual umask-derived mode instead.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def slugify(text: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """Lowercase ASCII words joined by '-': safe as a file name on every OS, never empty."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = "-".join(words)[:max_chars].strip("-")
    return slug or "untitled"


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def feed_folder_name(feed_url: str) -> str:
    """Named from the URL podflow was given, which (unlike a feed's title) a publisher cannot change under us."""
    parts = urlsplit(feed_url)
    host = parts.netloc.rsplit("@", 1)[-1]  # never a user name or password
    # Hashed without its credentials: a subscriber whose token is rotated keeps the folder and all done in it.
    return f"{slugify(host + ' ' + parts.path, 40)}-{short_hash(redact_url(feed_url))}"


def episode_folder_name(episode: Episode) -> str:
    date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated"
    return f"{date}-{slugify(episode.title)}-{short_hash(episode.episode_id)}"


def episode_run_name(stage: StageName) -> Callable[[dict[str, Any]], str]:
    """Names a stage's task run after its episode, as the Prefect UI lists it: `transcribe · 2026-11-20 · slug`."""

    def name(parameters: dict[str, Any]) -> str:
        episode: Episode = parameters["episode"]
        date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated"
        return f"{stage} · {date} · {slugify(episode.title)}"

    return name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see the old file or the new, never half.

    A write the file system refuses (a full disk, a read-only folder) is a StorageError naming the file."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(f"{path.name} could not be written: {exc.strerror or exc}") from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_record(path: Path, record: BaseModel) -> None:
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")


class FeedStore:
    """One feed's folder. Safe to use from many threads and processes at once: ledger updates hold a file lock."""

    def __init__(self, feed_dir: Path, feed_url: str):
        self.feed_dir = feed_dir
        self.feed_url = feed_url

    @classmethod
    def for_feed(cls, output_dir: Path, feed_url: str) -> FeedStore:
        # Absolute, so records that hold paths mean the same file to every thread, process and later run.
        return cls(output_dir.resolve() / feed_folder_name(feed_url), feed_url)

    @property
    def ledger_path(self) -> Path:
        return self.feed_dir / "ledger.json"

    def episode_dir(self, entry: LedgerEntry) -> Path:
        return self.feed_dir / "episodes" / entry.folder

    @contextmanager
    def exclusive_run(self) -> Iterator[None]:
        """Held for a whole run: two runs of one feed at once would write the same episode files."""
        self.feed_dir.mkdir(parents=True, exist_ok=True)
        with open(self.feed_dir / ".run.lock", "w") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FeedBusyError(f"another run is already ingesting {self.feed_url} into {self.feed_dir}") from None
            self.remove_leftovers()
            yield

    def remove_leftovers(self) -> None:
        """Delete the temp and `.part` files a killed run left behind; only the run lock's holder may call this.

        No reader takes them for finished files (those appear only by rename), but they would pile up."""
        leftovers = [path for pattern in (".*.tmp", "*.part") for path in self.feed_dir.rglob(pattern) if path.is_file()]
        for path in leftovers:
            path.unlink(missing_ok=True)

    def save_feed(self, feed: Feed) -> None:
        write_record(self.feed_dir / "feed.json", feed)

    def read_ledger(self) -> Ledger:
        if not self.ledger_path.exists():
            return Ledger(feed_url=self.feed_url)
        return Ledger.model_validate_json(self.ledger_path.read_bytes())

    @contextmanager
    def _locked_ledger(self) -> Iterator[LedgerUpdate]:
        """Read-modify-write of the ledger under an exclusive lock; the caller edits the yielded update."""
        self.feed_dir.mkdir(parents=True, exist_ok=True)
        with open(self.feed_dir / ".ledger.lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            ledger = self.read_ledger()
            update = LedgerUpdate(dict(ledger.episodes), ledger.validators)
            yield update
            write_record(
                self.ledger_path, Ledger(feed_url=self.feed_url, validators=update.validators, episodes=update.episodes)
            )

    def register(
        self, episodes: list[Episode], mark_seen: bool = False, renamed: Mapping[str, str] | None = None
    ) -> dict[str, LedgerEntry]:
        """Give every new episode its folder (and mark those with no audio skipped); return all entries.

        `mark_seen` records new episodes as seen, never to be processed (skip_back_catalogue's first run).
        `renamed` maps ids an older podflow gave to today's: their entries, folders and all, move to the new id."""
        with self._locked_ledger() as ledger:
            entries = ledger.episodes
            for old_id, new_id in (renamed or {}).items():
                if old_id in entries and new_id not in entries:
                    entries[new_id] = entries.pop(old_id).model_copy(update={"episode_id": new_id})
            seen_at = utc_now() if mark_seen else None
            for episode in episodes:
                skipped = None if episode.enclosure_url else "the item has no enclosure"
                if episode.episode_id not in entries:
                    entries[episode.episode_id] = LedgerEntry(
                        episode_id=episode.episode_id,
                        title=episode.title,
                        folder=episode_folder_name(episode),
                        skipped=skipped,
                        marked_seen=seen_at,
                    )
                elif entries[episode.episode_id].skipped != skipped:  # e.g. the publisher added the audio later
                    entries[episode.episode_id] = entries[episode.episode_id].model_copy(update={"skipped": skipped})
            return dict(entries)

    def is_settled(self, entry: LedgerEntry) -> bool:
        """Nothing left to do for this episode: complete, skipped, or marked seen."""
        return entry.skipped is not None or entry.marked_seen is not None or self.is_complete(entry)

    def is_complete(self, entry: LedgerEntry) -> bool:
        return entry.complete and (self.episode_dir(entry) / "metadata.json").is_file()

    def save_validators(self, validators: FeedValidators | None) -> None:
        with self._locked_ledger() as ledger:
            ledger.validators = validators

    def validators_for(self, selection: str) -> FeedValidators | None:
        """The validators to send with the next GET of the feed, where a 304 would truly leave nothing to do:
        every episode of the version they name is settled, and it was chosen under the same selection."""
        ledger = self.read_ledger()
        validators = ledger.validators
        if validators is None or validators.selection != selection:
            return None
        if not all(self.is_settled(entry) for entry in ledger.episodes.values()):
            return None
        return validators

    def record(
        self,
        episode_id: str,
        stage: StageName,
        started: datetime,
        error: str | None = None,
        audio: AudioFile | None = None,
    ) -> None:
        outcome = StageOutcome(status="failed" if error else "done", started=started, ended=utc_now(), error=error)
        with self._locked_ledger() as ledger:
            entry = ledger.episodes[episode_id]
            update: dict[str, object] = {"stages": {**entry.stages, stage: outcome}}
            if audio is not None:
                update["audio"] = audio
            ledger.episodes[episode_id] = entry.model_copy(update=update)

    @contextmanager
    def recording(self, episode_id: str, stage: StageName) -> Iterator[StageRecording]:
        """Record the enclosed stage's start, end and outcome in the ledger; errors still propagate."""
        recording = StageRecording(started=utc_now())
        try:
            yield recording
        except Exception as exc:
            # Expected errors are masked already; an unexpected one's message may still carry a credential.
            self.record(episode_id, stage, recording.started, error=redact_urls(f"{type(exc).__name__}: {exc}"))
            raise
        self.record(episode_id, stage, recording.started, audio=recording.audio)


@dataclass
class LedgerUpdate:
    episodes: dict[str, LedgerEntry]
    validators: FeedValidators | None


@dataclass
class StageRecording:
    """A stage in progress: when it started, and what it hands the ledger besides its outcome (the audio record)."""

    started: datetime
    audio: AudioFile | None = None
