"""A feed's ledger on disk: `ledger.sqlite`, one SQLite database in WAL mode per feed folder.

One stage outcome is one small transaction, whatever the feed's size (a JSON ledger rewritten whole cost 0.32 s
per outcome at 40,000 episodes). Each commit is synced (synchronous=FULL), as every file podflow writes is, so a
killed run loses nothing it recorded. A process keeps one connection per ledger, its threads taking turns on it
(a connection opened per write cost 3-6 ms, most of it the checkpoint its close makes); processes order their
writes by SQLite's locks. A person reads it with `podflow ledger FEED_FOLDER` (a table, or `--json`: the Ledger record).

A `ledger.json` left by an earlier podflow is moved into the database the first time the folder is opened. The
database's user_version says how its episode folders are named: 0 by hashes, as the previous releases named them
(store.py renames them, then sets it), READABLE_NAMES by date and title (tasks/folder_names.py).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

from tasks.errors import StorageError
from tasks.files import no_link, open_no_link
from tasks.models import AudioFile, FeedValidators, Ledger, LedgerEntry, StageOutcome
from tasks.redaction import redact_url

LEDGER = "ledger.sqlite"
OLD_LEDGER = "ledger.json"  # what the release before the database kept
READABLE_NAMES = 1  # PRAGMA user_version of a ledger whose episode folders are named by date and title
SCHEMA = """
CREATE TABLE feed (url TEXT NOT NULL, validators TEXT);
CREATE TABLE episodes (episode_id TEXT PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE outcomes (
    episode_id TEXT NOT NULL REFERENCES episodes ON UPDATE CASCADE, stage TEXT NOT NULL, outcome TEXT NOT NULL,
    PRIMARY KEY (episode_id, stage)
);
"""


OPEN_LEDGERS = 16  # connections a process keeps, the least recently used closed first: a run may hold many feeds


class _Connections:
    """This process's open ledgers, each with the lock its threads take turns on. A forked child starts afresh: a
    connection must not cross a fork."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.open: OrderedDict[Path, tuple[sqlite3.Connection, threading.Lock]] = OrderedDict()

    def get(self, path: Path) -> tuple[sqlite3.Connection, threading.Lock]:
        with self.lock:
            if self.pid != os.getpid():
                self.pid, self.open = os.getpid(), OrderedDict()
            if path in self.open:
                self.open.move_to_end(path)
                return self.open[path]
            # SQLite would follow a link; below the output folder podflow follows none.
            for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
                no_link(path.with_name(name))
            connection = sqlite3.connect(path, timeout=300, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            self.open[path] = (connection, threading.Lock())
            while len(self.open) > OPEN_LEDGERS:
                _, (oldest, taken) = self.open.popitem(last=False)
                with taken:
                    oldest.close()
            return self.open[path]

    def close(self, path: Path) -> None:
        with self.lock:
            found = self.open.pop(path, None) if self.pid == os.getpid() else None
        if found is not None:
            with found[1]:
                found[0].close()


_connections = _Connections()


def _is_open(connection: sqlite3.Connection) -> bool:
    try:
        connection.total_changes  # noqa: B018  # reading it raises on a closed connection
    except sqlite3.ProgrammingError:
        return False
    return True


def _entry_row(entry: LedgerEntry) -> tuple[str, str]:
    return entry.episode_id, entry.model_dump_json(exclude={"stages"})


class LedgerDB:
    """The ledger of one feed folder. Each method opens a connection and closes it: a FeedStore crosses into worker
    processes, and a connection may not."""

    def __init__(self, feed_dir: Path, feed_url: str):
        self.path = feed_dir / LEDGER
        self.feed_url = feed_url

    def close(self) -> None:
        """Close this process's connection to the ledger (its write-ahead log checkpointed): at the end of a run."""
        _connections.close(self.path)

    def exists(self) -> bool:
        return no_link(self.path).exists() or no_link(self.path.with_name(OLD_LEDGER)).exists()

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction (IMMEDIATE where it writes, so two writers never deadlock on upgrade)."""
        if not no_link(self.path).exists():
            self._create()
        try:
            connection, turn = _connections.get(self.path)
            turn.acquire()
            if not _is_open(connection):  # closed as the least recently used since `get`: open it again
                turn.release()
                connection, turn = _connections.get(self.path)
                turn.acquire()
            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            finally:
                turn.release()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path} could not be used: {exc}") from exc

    def _create(self) -> None:
        """Make the database, from the folder's `ledger.json` where an earlier podflow left one: built under a temp
        name and renamed into place, then the JSON removed. A lock file orders the threads and processes racing.
        A new ledger names its folders readably from the start; one from `ledger.json` has the names that release
        gave."""
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
                    # No journal while it is built: a build cut short is only a temp file, swept as leftovers.
                    connection.execute("PRAGMA journal_mode=OFF")
                    connection.executescript(SCHEMA)
                    connection.execute(f"PRAGMA user_version={0 if old.exists() else READABLE_NAMES}")
                    connection.execute("BEGIN")
                    connection.execute(
                        "INSERT INTO feed VALUES (?, ?)",
                        (redact_url(self.feed_url), ledger.validators.model_dump_json() if ledger.validators else None),
                    )
                    _write_entries(connection, ledger.episodes.values())
                    connection.execute("COMMIT")  # synced (synchronous=FULL) before the rename below
                    connection.execute("PRAGMA journal_mode=WAL")  # kept in the file: every later connection uses it
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

    def names_readably(self) -> bool:
        """Its episode folders have today's names (not the hashed names the previous releases gave)."""
        with self._transaction(write=False) as connection:
            return bool(connection.execute("PRAGMA user_version").fetchone()[0] >= READABLE_NAMES)

    def rename_folders(self, renamed: Mapping[str, str]) -> None:
        """Give the entries their folders' new names (old name -> new), and mark the ledger named readably: one
        transaction, so a run cut short leaves the ledger as it was."""
        with self._transaction(write=True) as connection:
            for episode_id, entry in connection.execute("SELECT episode_id, entry FROM episodes").fetchall():
                found = LedgerEntry.model_validate_json(entry)
                if found.folder in renamed:
                    moved = found.model_copy(update={"episode_id": episode_id, "folder": renamed[found.folder]})
                    connection.execute("UPDATE episodes SET entry = ? WHERE episode_id = ?", _entry_row(moved)[::-1])
            connection.execute(f"PRAGMA user_version={READABLE_NAMES}")

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
