"""A feed's ledger on disk: `ledger.sqlite`, one SQLite database in WAL mode per feed folder.

One stage outcome is one small transaction, whatever the feed's size (a JSON ledger rewritten whole cost 0.32 s
per outcome at 40,000 episodes). Each commit is synced (synchronous=FULL), as every file podflow writes is, so a
killed run loses nothing it recorded. Threads and processes each open their own connection; SQLite's locks order
their writes. A person reads it with `podflow ledger FEED_FOLDER` (a table, or `--json`: the Ledger record).

A `ledger.json` left by an earlier podflow is moved into the database the first time the folder is opened.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tasks.errors import StorageError
from tasks.files import no_link, open_no_link
from tasks.models import AudioFile, FeedValidators, Ledger, LedgerEntry, StageOutcome

LEDGER = "ledger.sqlite"
OLD_LEDGER = "ledger.json"  # what the previous release kept
SCHEMA = """
CREATE TABLE feed (url TEXT NOT NULL, validators TEXT);
CREATE TABLE episodes (episode_id TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE outcomes (
    episode_id TEXT NOT NULL REFERENCES episodes ON UPDATE CASCADE, stage TEXT NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (episode_id, stage)
);
"""


def _connected(path: Path) -> sqlite3.Connection:
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        no_link(path.with_name(name))  # SQLite would follow a link; below the output folder podflow follows none
    connection = sqlite3.connect(path, timeout=300, isolation_level=None)
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def _entry_row(entry: LedgerEntry) -> tuple[str, str]:
    return entry.episode_id, entry.model_dump_json(exclude={"stages"})


class LedgerDB:
    """The ledger of one feed folder. Each method opens a connection and closes it: a FeedStore crosses into worker
    processes, and a connection may not."""

    def __init__(self, feed_dir: Path, feed_url: str):
        self.path = feed_dir / LEDGER
        self.feed_url = feed_url

    def exists(self) -> bool:
        return no_link(self.path).exists() or no_link(self.path.with_name(OLD_LEDGER)).exists()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (IMMEDIATE where it writes, so two writers never deadlock on upgrade)."""
        if not no_link(self.path).exists():
            self._create()
        try:
            with closing(_connected(self.path)) as connection:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path} could not be used: {exc}") from exc

    def _create(self) -> None:
        """Make the database, from the folder's `ledger.json` where an earlier podflow left one: built under a temp
        name and renamed into place, then the JSON removed. A lock file orders the threads and processes racing."""
        folder = self.path.parent
        no_link(folder).mkdir(parents=True, exist_ok=True)
        lock = open_no_link(folder / ".ledger.lock", os.O_WRONLY | os.O_CREAT)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if no_link(self.path).exists():
                return
            old = no_link(folder / OLD_LEDGER)
            ledger = Ledger.model_validate_json(old.read_bytes()) if old.exists() else Ledger(feed_url=self.feed_url)
            temp = folder / f".{LEDGER}.{secrets.token_hex(6)}.tmp"
            try:
                with closing(sqlite3.connect(temp, isolation_level=None)) as connection:
                    connection.execute("PRAGMA journal_mode=WAL")  # kept in the file: every later connection uses it
                    connection.executescript(SCHEMA)
                    connection.execute("BEGIN")
                    connection.execute(
                        "INSERT INTO feed VALUES (?, ?)",
                        (self.feed_url, ledger.validators.model_dump_json() if ledger.validators else None),
                    )
                    _write_entries(connection, ledger.episodes.values())
                    connection.execute("COMMIT")
                os.replace(temp, self.path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            old.unlink(missing_ok=True)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{self.path} could not be made: {exc}") from exc
        finally:
            os.close(lock)

    def read(self) -> Ledger:
        """The whole ledger: every episode in the order first seen, with its stage outcomes. Reading a folder with
        none makes none."""
        if not self.exists():
            return Ledger(feed_url=self.feed_url)
        with self._transaction(write=False) as connection:
            return _read(connection)

    def entry(self, episode_id: str) -> LedgerEntry:
        """One episode's entry: a lookup, whatever the feed's size."""
        with self._transaction(write=False) as connection:
            return _entry(connection, episode_id)

    def write(self, entries: Iterable[LedgerEntry], renamed: dict[str, str] | None = None) -> None:
        """Insert or replace whole entries, their outcomes included; `renamed` moves old ids to new ones first."""
        with self._transaction(write=True) as connection:
            for old_id, new_id in (renamed or {}).items():
                connection.execute("UPDATE episodes SET episode_id = ? WHERE episode_id = ?", (new_id, old_id))
            _write_entries(connection, entries)

    def record(self, episode_id: str, stage: str, outcome: StageOutcome, audio: AudioFile | None) -> None:
        """One stage's outcome (and the audio the download stage made): one row, whatever the feed's size."""
        with self._transaction(write=True) as connection:
            connection.execute(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?)", (episode_id, stage, outcome.model_dump_json())
            )
            if audio is not None:
                entry = _entry(connection, episode_id).model_copy(update={"audio": audio})
                connection.execute("UPDATE episodes SET entry = ? WHERE episode_id = ?", _entry_row(entry)[::-1])

    def save_validators(self, validators: FeedValidators | None) -> None:
        with self._transaction(write=True) as connection:
            connection.execute(
                "UPDATE feed SET validators = ?", (validators.model_dump_json() if validators else None,)
            )


def _write_entries(connection: sqlite3.Connection, entries: Iterable[LedgerEntry]) -> None:
    for entry in entries:
        connection.execute(
            "INSERT INTO episodes VALUES (?, ?) ON CONFLICT (episode_id) DO UPDATE SET entry = excluded.entry",
            _entry_row(entry),
        )
        connection.executemany(
            "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?)",
            [(entry.episode_id, stage, outcome.model_dump_json()) for stage, outcome in entry.stages.items()],
        )


def _entry(connection: sqlite3.Connection, episode_id: str) -> LedgerEntry:
    row = connection.execute("SELECT entry FROM episodes WHERE episode_id = ?", (episode_id,)).fetchone()
    if row is None:
        raise KeyError(episode_id)
    outcomes = connection.execute("SELECT stage, outcome FROM outcomes WHERE episode_id = ?", (episode_id,))
    stages = {stage: StageOutcome.model_validate_json(outcome) for stage, outcome in outcomes}
    return LedgerEntry.model_validate_json(row[0]).model_copy(update={"episode_id": episode_id, "stages": stages})


def _read(connection: sqlite3.Connection) -> Ledger:
    stages: dict[str, dict[str, StageOutcome]] = {}
    for episode_id, stage, outcome in connection.execute("SELECT episode_id, stage, outcome FROM outcomes"):
        stages.setdefault(episode_id, {})[stage] = StageOutcome.model_validate_json(outcome)
    episodes = {
        episode_id: LedgerEntry.model_validate_json(entry).model_copy(
            update={"episode_id": episode_id, "stages": stages.get(episode_id, {})}
        )
        for episode_id, entry in connection.execute("SELECT episode_id, entry FROM episodes ORDER BY rowid")
    }
    (url, validators) = connection.execute("SELECT url, validators FROM feed").fetchone()
    return Ledger(
        feed_url=url,
        validators=FeedValidators.model_validate_json(validators) if validators else None,
        episodes=episodes,
    )
