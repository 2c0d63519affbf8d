"""The run locks of the feeds of one output folder: a byte each of `<output>/.run.lock`, locked with an
open-file-description lock (Linux's F_OFD_SETLK).

One open of the file holds a whole run's locks, so a run of 10,000 feeds costs one file descriptor, not 10,000.
Locks taken through two opens exclude each other, in one process as across processes, and the kernel releases a
killed run's locks with its file: nothing is ever left behind to clean up.
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


class RunLocks:
    """One run's locks on the feed folders of `output_dir`; closing it releases them all."""

    def __init__(self, output_dir: Path):
        no_link(output_dir).mkdir(parents=True, exist_ok=True)
        self.fd = open_no_link(output_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)

    def hold(self, key: str, feed_url: str, feed_dir: Path) -> None:
        """Lock the feed for this run, by a key that stays the feed's while its folder is renamed (tasks/store.py);
        FeedBusyError where another run holds it."""
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _range(fcntl.F_WRLCK, key))
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held through another open
            raise FeedBusyError(f"another run is already ingesting {feed_url} into {feed_dir}") from None

    def release(self, key: str) -> None:
        fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, _range(fcntl.F_UNLCK, key))

    def close(self) -> None:
        os.close(self.fd)


def _range(kind: int, key: str) -> bytes:
    """The feed's byte: at an offset from a 56-bit hash of its key, so no two feeds of a run share one."""
    offset = int.from_bytes(hashlib.sha256(key.encode()).digest()[:7], "big")
    return struct.pack(FLOCK, kind, os.SEEK_SET, offset, 1, 0)
