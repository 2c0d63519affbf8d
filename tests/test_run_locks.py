"""The run locks of an output folder: feeds held through one file, which lasts only while a run has it open, and
which no run can delete from under another."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks.errors import FeedBusyError
from tasks.run_locks import GUARD_OFFSET, LOCK_FILE, RunLocks, _lock


def test_the_lock_file_goes_with_the_last_run_out(tmp_path: Path) -> None:
    first, second = RunLocks(tmp_path), RunLocks(tmp_path)
    first.hold("feed-a", "https://a/feed.xml", tmp_path / "feed-a")
    with pytest.raises(FeedBusyError, match="another run is already ingesting https://b/feed.xml"):
        second.hold("feed-a", "https://b/feed.xml", tmp_path / "feed-a")
    second.hold("feed-b", "https://b/feed.xml", tmp_path / "feed-b")
    first.close()
    assert os.listdir(tmp_path) == [LOCK_FILE]  # the second run still holds feed-b in it
    second.close()
    assert os.listdir(tmp_path) == []
    third = RunLocks(tmp_path)
    third.hold("feed-a", "https://a/feed.xml", tmp_path / "feed-a")
    third.close()
    assert os.listdir(tmp_path) == []


def test_a_killed_runs_file_is_deleted_by_the_next_run_out(tmp_path: Path) -> None:
    holding = (
        "import sys; from pathlib import Path; from tasks.run_locks import RunLocks; "
        f"RunLocks(Path({str(tmp_path)!r})).hold('feed-a', 'u', Path({str(tmp_path / 'feed-a')!r})); "
        "print('held', flush=True); "
        "sys.stdin.read()"
    )
    killed = subprocess.Popen(
        [sys.executable, "-c", holding],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "held\n"
        busy = RunLocks(tmp_path)
        with pytest.raises(FeedBusyError):
            busy.hold("feed-a", "u", tmp_path / "feed-a")
        busy.close()
    finally:
        killed.kill()
        killed.wait()
    assert os.listdir(tmp_path) == [LOCK_FILE]  # a killed run cleans nothing up; the kernel drops its locks
    locks = RunLocks(tmp_path)
    locks.hold("feed-a", "u", tmp_path / "feed-a")
    locks.close()
    assert os.listdir(tmp_path) == []


def test_a_run_that_opens_the_file_as_the_last_run_deletes_it_opens_the_new_one(tmp_path: Path) -> None:
    # The last run out, between its exclusive lock on the guard byte and its delete: done here by hand.
    closing = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.fcntl(closing, fcntl.F_OFD_SETLK, _lock(fcntl.F_WRLCK, GUARD_OFFSET))
    deleted = os.fstat(closing).st_ino
    opened: list[RunLocks] = []
    arriving = threading.Thread(target=lambda: opened.append(RunLocks(tmp_path)))
    arriving.start()
    while not waits_for_a_lock(deleted):  # the arriving run has opened the file and waits for its guard byte
        assert arriving.is_alive()
        time.sleep(0.01)
    os.unlink(tmp_path / LOCK_FILE)
    os.close(closing)
    arriving.join()

    (arrived,) = opened
    opened_file, there = os.fstat(arrived.fd), (tmp_path / LOCK_FILE).stat()
    assert opened_file.st_nlink == 1 and opened_file.st_ino == there.st_ino  # not the deleted one
    arrived.hold("feed-a", "u", tmp_path / "feed-a")
    later = RunLocks(tmp_path)
    with pytest.raises(FeedBusyError):  # both lock in the one file there is: the feed is held once
        later.hold("feed-a", "u", tmp_path / "feed-a")
    later.close()
    arrived.close()
    assert os.listdir(tmp_path) == []


def waits_for_a_lock(inode: int) -> bool:
    """Whether a lock request on the file `inode` is blocked: /proc/locks lists a waiter with `->`."""
    return any(
        line.split()[1] == "->" and line.split()[-3].endswith(f":{inode}")
        for line in Path("/proc/locks").read_text().splitlines()
    )
