"""Ledgers as tests make them and read them: a feed folder a release before the database left (its `ledger.json`),
and the database of a folder a run may still be writing."""

from __future__ import annotations

from pathlib import Path

from tasks.ledger_db import LEDGER, OLD_LEDGER, LedgerDB
from tasks.models import Ledger
from tasks.store import FeedStore


def write_old_ledger(store: FeedStore, ledger: Ledger | str) -> None:
    """Make the feed folder's ledger the `ledger.json` a release before the database kept, the database gone: the
    next open migrates it, and renames the folders it names by hashes (tasks/folder_names.py)."""
    store.ledger.close()
    for name in (LEDGER, f"{LEDGER}-wal", f"{LEDGER}-shm"):
        (store.feed_dir / name).unlink(missing_ok=True)
    text = ledger if isinstance(ledger, str) else ledger.model_dump_json()
    (store.feed_dir / OLD_LEDGER).write_text(text)


def read_folder_ledger(feed_dir: Path) -> Ledger:
    """The ledger of a feed folder found on disk (its URL unknown to the caller)."""
    return LedgerDB(feed_dir, "").read()


def ledger_written_at(feed_dir: Path) -> float:
    """When the folder's ledger last took a write: its database or its write-ahead log, whichever is later."""
    times = [path.stat().st_mtime for path in feed_dir.glob(f"{LEDGER}*") if path.is_file()]
    return max(times, default=0.0)
