"""The output layout and the per-feed ledger of stage outcomes (files are written by tasks/files.py).

<output>/<show-title>/feed.json        the feed's record
<output>/<show-title>/ledger.sqlite    episode_id -> folder, audio record, stage outcomes, the feed's HTTP validators
<output>/<show-title>/episodes/<date>-<episode-title>/   each episode's files (tasks/episode_folder.py)
<output>/.feeds/                       which folder is which feed's (tasks/feed_index.py)

Names are slugs, with an id after them only where two feeds or two episodes of a feed would share one
(tasks/folder_names.py). A feed's folder is named the first time a run knows its title; the folders the previous
releases named by hashes are renamed in place by the next run that holds the feed, nothing in them done again.

The output folder is the operator's and may be a symbolic link; everything below it is podflow's, and a link there
is refused (a StorageError), never followed: a link would let a write or a sweep reach files elsewhere.
"""

from __future__ import annotations

import fcntl  # not filelock: the lock files are opened here with O_NOFOLLOW, and no soft-lock fallback
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path

from pydantic import ValidationError

from tasks.episode_folder import EpisodeFolder
from tasks.errors import FeedBusyError, StorageError
from tasks.feed_index import INDEX, FoundFolder, claim_feed_folder, find_feed_folder
from tasks.files import no_link, open_no_link, write_record
from tasks.folder_names import (
    feed_folder_name_0_2,
    feed_folder_names,
    feed_identity,
    free_episode_folder_name,
    old_feed_folder_name,
    previous_feed_folder_name,
    renamed_episode_folders,
)
from tasks.ledger_db import LedgerDB
from tasks.models import (
    AudioFile,
    Episode,
    Feed,
    FeedFacts,
    FeedValidators,
    Ledger,
    LedgerEntry,
    StageOutcome,
    utc_now,
)
from tasks.redaction import redact_urls
from tasks.run_locks import RunLocks
from tasks.stages import StageName

FEED_RECORD = "feed.json"


class FeedStore:
    """One feed's folder. Safe to use from many threads and processes at once: the ledger is a SQLite database.

    A store made with `for_feed` finds the feed's folder in its output folder and names it (tasks/feed_index.py);
    one made with a folder keeps that folder."""

    def __init__(self, feed_dir: Path, feed_url: str, old_dirs: tuple[Path, ...] = (), output: Path | None = None):
        self.feed_dir = feed_dir
        self.feed_url = feed_url
        self.old_dirs = old_dirs  # the folders older podflows named for the feed: the first run takes one over
        self.output = output
        # The byte of the output folder's run lock the feed takes: the previous release's folder name, so that a run
        # of that release and one of this exclude each other.
        self.lock_key = feed_dir.name
        self.named = output is None  # feed_dir has the name it keeps
        self.claimed: str | None = None

    @classmethod
    def for_feed(cls, output_dir: Path, feed_url: str) -> FeedStore:
        """The feed's store, at its folder as far as can be seen without its lock (`exclusive_run` looks again)."""
        # Absolute, so records that hold paths mean the same file to every thread, process and later run.
        output = output_dir.resolve()
        old_dirs = (output / feed_folder_name_0_2(feed_url), output / old_feed_folder_name(feed_url))
        store = cls(output / previous_feed_folder_name(feed_url), feed_url, old_dirs, output)
        store._find_folder()
        return store

    @property
    def identity(self) -> str:
        return feed_identity(self.feed_url)

    @property
    def ledger(self) -> LedgerDB:
        return LedgerDB(self.feed_dir, self.feed_url)

    @contextmanager
    def exclusive_run(self, locks: RunLocks | None = None) -> Iterator[None]:
        """Held for a whole run: two runs of one feed at once would write the same episode files. `locks`: the
        run's locks on its output folder, where it holds many feeds; else the feed takes locks of its own."""
        held = locks or RunLocks(self.feed_dir.parent)
        try:
            held.hold(self.lock_key, self.feed_url, self.feed_dir)
            try:
                self._find_folder()
                self._take_over_old_folder()
                if not self.named and (saved := self._saved_feed()) is not None:
                    self.name_folder(saved)  # a folder the previous release wrote: its title is known already
                self._rename_episode_folders()
                self.remove_leftovers()
                yield
            finally:
                self.ledger.close()
                held.release(self.lock_key)
        finally:
            if held is not locks:
                held.close()

    def _take_over_old_folder(self) -> None:
        """Rename a folder an older podflow named for the feed to the name the previous release gives it (renamed
        again once the feed's title is known); everything done in it stays done. A folder a run of an older podflow
        still holds (by flock on its own `.run.lock`) is FeedBusyError. The feed folder itself is made at its first
        write, so a feed that cannot be fetched leaves none."""
        if no_link(self.feed_dir).exists():
            if (lock := self._older_run_lock(self.feed_dir)) is not None:
                os.close(lock)
            return
        for old_dir in self.old_dirs:
            if old_dir == self.feed_dir or not no_link(old_dir).is_dir():
                continue
            lock = self._older_run_lock(old_dir)
            try:
                os.rename(old_dir, self.feed_dir)
            except OSError as exc:
                raise StorageError(
                    f"{old_dir} could not be renamed to {self.feed_dir.name}: {exc.strerror or exc}"
                ) from exc
            finally:
                if lock is not None:
                    os.close(lock)
            return

    def _find_folder(self) -> None:
        if self.output is not None:
            previous = self.output / self.lock_key
            found = find_feed_folder(self.output, self.identity, previous)
            self.feed_dir, self.named, self.claimed = found.path, found.named, found.claimed

    def _saved_feed(self) -> Feed | None:
        """The feed as the folder's `feed.json` has it, where there is one that parses."""
        try:
            return Feed.model_validate_json(no_link(self.feed_dir / FEED_RECORD).read_bytes())
        except (OSError, ValidationError):
            return None

    def name_folder(self, feed: Feed) -> None:
        """Give the feed's folder its readable name, where it has none yet (a new feed, or a folder the previous
        release named): before the first write to a new feed's folder. Only the run lock's holder may call this."""
        if self.named or self.output is None:
            return
        self.ledger.close()  # the ledger moves with the folder: no connection is left open on the old path
        names = feed_folder_names(feed, self.identity)
        found = FoundFolder(self.feed_dir, named=False, claimed=self.claimed)
        self.feed_dir = claim_feed_folder(self.output, self.identity, names, found)
        self.named, self.claimed = True, None

    def _rename_episode_folders(self) -> None:
        """Rename the episode folders the previous releases named by hashes (tasks/folder_names.py) and the
        ledger's entries with them, once. Nothing in a folder changes, so nothing is done again."""
        ledger = self.ledger
        if not ledger.exists() or ledger.names_readably():
            return
        renamed = renamed_episode_folders(ledger.read().episodes.values())
        episodes = no_link(no_link(self.feed_dir) / "episodes")
        for old, new in renamed.items():
            # Not there: never made (no audio yet), or renamed by a run cut short before the ledger was updated.
            if no_link(episodes / old).is_dir():
                try:
                    os.rename(episodes / old, no_link(episodes / new))
                except OSError as exc:
                    raise StorageError(
                        f"{episodes / old} could not be renamed to {new}: {exc.strerror or exc}"
                    ) from exc
        ledger.rename_folders(renamed)

    def _older_run_lock(self, folder: Path) -> int | None:
        """The `.run.lock` an older podflow keeps in the folder, flocked, if there is one; FeedBusyError where a
        run of it holds the folder now."""
        try:
            lock = open_no_link(folder / ".run.lock", os.O_WRONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise FeedBusyError(f"another run is already ingesting {self.feed_url} into {folder}") from None
        return lock

    def remove_leftovers(self) -> None:
        """Delete the temp and `.part` files a killed run left behind; only the run lock's holder may call this.

        No reader takes them for finished files (those appear only by rename), but they would pile up. The walk
        enters no linked folder and deletes only regular files, so nothing outside the feed folder is touched."""
        for folder, _, names in os.walk(no_link(self.feed_dir)):
            for name in names:
                path = Path(folder, name)
                if (fnmatch(name, ".*.tmp") or fnmatch(name, "*.part")) and stat.S_ISREG(path.lstat().st_mode):
                    path.unlink(missing_ok=True)
        if self.output is not None and no_link(self.output / INDEX).is_dir():
            for path in (self.output / INDEX).glob(f".{self.identity}.*.tmp"):  # its index entry's, written cut short
                if stat.S_ISREG(path.lstat().st_mode):
                    path.unlink(missing_ok=True)

    def save_feed(self, feed: Feed) -> None:
        """Write `feed.json`: the show as its feed describes it (its HTTP validators are the ledger's)."""
        write_record(self.feed_dir / FEED_RECORD, FeedFacts.of(feed))

    def read_ledger(self) -> Ledger:
        """The whole ledger (a run reads it once, to choose and to report)."""
        return self.ledger.read()

    def entry(self, episode_id: str) -> LedgerEntry:
        return self.ledger.entry(episode_id)

    def folder(self, entry: LedgerEntry) -> EpisodeFolder:
        """The episode's folder, refused where it, `episodes/` or the feed folder is a symbolic link."""
        episodes = no_link(no_link(self.feed_dir) / "episodes")
        return EpisodeFolder(path=no_link(episodes / entry.folder), entry=entry)

    def register(
        self, episodes: list[Episode], mark_seen: bool = False, renamed: Mapping[str, str] | None = None
    ) -> dict[str, LedgerEntry]:
        """Give every new episode its folder (and mark those with no audio skipped); return all entries.

        `mark_seen` records new episodes as seen, never to be processed (skip_back_catalogue's first run).
        `renamed` maps ids an older podflow gave to today's: their entries, folders and all, move to the new id."""
        entries = self.read_ledger().episodes
        moved = {old: new for old, new in (renamed or {}).items() if old in entries and new not in entries}
        changed: dict[str, LedgerEntry] = {}
        for old_id, new_id in moved.items():
            entry = entries.pop(old_id)
            audio = entry.audio.model_copy(update={"episode_id": new_id}) if entry.audio else None
            entries[new_id] = changed[new_id] = entry.model_copy(update={"episode_id": new_id, "audio": audio})
        seen_at = utc_now() if mark_seen else None
        taken = {entry.folder for entry in entries.values()}
        for episode in episodes:
            skipped = None if episode.enclosure_url else "the item has no enclosure"
            if episode.episode_id not in entries:
                folder = free_episode_folder_name(episode, taken)
                taken.add(folder)
                entries[episode.episode_id] = changed[episode.episode_id] = LedgerEntry(
                    episode_id=episode.episode_id,
                    title=episode.title,
                    folder=folder,
                    skipped=skipped,
                    marked_seen=seen_at,
                )
            elif entries[episode.episode_id].skipped != skipped:  # e.g. the publisher added the audio later
                entry = entries[episode.episode_id].model_copy(update={"skipped": skipped})
                entries[episode.episode_id] = changed[episode.episode_id] = entry
        # Only this run's holder of the feed's run lock registers: nothing else changes these entries meanwhile.
        self.ledger.write(changed.values(), moved)
        return entries

    def is_settled(self, entry: LedgerEntry) -> bool:
        """Nothing left to do for this episode: every stage done, skipped, or marked seen."""
        return entry.skipped is not None or entry.marked_seen is not None or not self.folder(entry).stages_to_run()

    def save_validators(self, validators: FeedValidators | None) -> None:
        self.ledger.save_validators(validators)

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
        workers: tuple[str, ...] = (),
    ) -> None:
        outcome = StageOutcome(
            status="failed" if error else "done", started=started, ended=utc_now(), error=error, workers=workers
        )
        self.ledger.record(episode_id, stage, outcome, audio)

    @contextmanager
    def recording(self, episode_id: str, stage: StageName) -> Iterator[StageRecording]:
        """Record the enclosed stage's start, end and outcome in the ledger; errors still propagate."""
        recording = StageRecording(started=utc_now())
        try:
            yield recording
        except Exception as exc:
            # Expected errors are masked already; an unexpected one's message may still carry a credential.
            error = redact_urls(f"{type(exc).__name__}: {exc}")
            self.record(episode_id, stage, recording.started, error=error, workers=tuple(recording.workers))
            raise
        self.record(episode_id, stage, recording.started, audio=recording.audio, workers=tuple(recording.workers))


@dataclass
class StageRecording:
    """A stage in progress: when it started, and what it hands the ledger besides its outcome (the audio record)."""

    started: datetime
    audio: AudioFile | None = None
    workers: list[str] = field(default_factory=list)  # the cluster workers that took it, in order
