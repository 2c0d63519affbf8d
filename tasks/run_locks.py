"""The run locks of the feeds of one output folder: a byte each of `<output>/.run.lock`, locked with an
open-file-description lock (Linux's F_OFD_SETLK).

One open of the file holds a whole run's locks, so a run of 10,000 feeds costs one file descriptor, not 10,000.
Locks taken through two opens exclude each other, in one process as across processes, and the kernel releases a
killed run's locks with its file.

The file lasts only while a run has it open. Each run holds a shared lock on a guard byte, past every feed's, from
its open to its close; the last run out, the only one that can lock the guard byte exclusively, deletes the file
while it holds that lock. A run that opened the file just before then waits for the guard, finds the path no longer
names the file it opened, and opens the new one: two runs never lock one feed in two different files.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import struct
from pathlib import Path

from tasks.errors import FeedBusyError
from tasks.files import no_link, open_no_link

FLOCK = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
LOCK_FILE = ".run.lock"
GUARD_OFFSET = 1 << 56  # past every feed's byte: theirs are at 56-bit offsets


class RunLocks:
    """One run's locks on the feed folders of `output_dir`; closing it releases them all, and deletes the lock
    file where no other run has it open."""

    def __init__(self, output_dir: Path):
        no_link(output_dir).mkdir(parents=True, exist_ok=True)
        self.path = output_dir / LOCK_FILE
        while True:
            fd = open_no_link(self.path, os.O_RDWR | os.O_CREAT)
            try:
                # Waits only while a closing run deletes the file, never on a run at work: none holds it longer.
                fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, _lock(fcntl.F_RDLCK, GUARD_OFFSET))
                if _names(self.path, fd):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # deleted meanwhile by the run that closed it last: open the file there now
        self.fd = fd

    def hold(self, key: str, feed_url: str, feed_dir: Path) -> None:
        """Lock the feed for this run, by a key that stays the feed's while its folder is renamed (tasks/store.py);
        FeedBusyError where another run holds it."""
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _lock(fcntl.F_WRLCK, _offset(key)))
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held through another open
            raise FeedBusyError(f"another run is already ingesting {feed_url} into {feed_dir}") from None

    def release(self, key: str) -> None:
        fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _lock(fcntl.F_UNLCK, _offset(key)))

    def close(self) -> None:
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _lock(fcntl.F_WRLCK, GUARD_OFFSET))
        except (BlockingIOError, PermissionError):
            pass  # another run has the file open: the last one out deletes it
        else:
            if _names(self.path, self.fd):  # not a file someone put in its place by hand
                self.path.unlink()
        finally:
            os.close(self.fd)


def _names(path: Path, fd: int) -> bool:
    """Whether `path` is still the file open as `fd`."""
    try:
        found, opened = os.lstat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino)


def _offset(key: str) -> int:
    """The feed's byte: at an offset from a 56-bit hash of its key, so no two feeds of a run share one."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "big")


def _lock(kind: int, offset: int) -> bytes:
    return struct.pack(FLOCK, kind, os.SEEK_SET, offset, 1, 0)
