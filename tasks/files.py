"""Every file podflow writes, written atomically (temp file, fsync, rename), and never through a symbolic link.

The output folder is the operator's and may be a link; everything below it is podflow's, and a link there is refused
(a StorageError), never followed: a link would let a write reach files elsewhere.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from contextlib import suppress
from pathlib import Path

from pydantic import BaseModel

from tasks.errors import StorageError

LINK_REFUSED = "is a symbolic link; podflow never follows links inside its output folder"


def no_link(path: Path) -> Path:
    """`path`, unless it is a symbolic link: below the output folder podflow follows none."""
    if path.is_symlink():
        raise StorageError(f"{path} {LINK_REFUSED}")
    return path


def open_no_link(path: Path, flags: int) -> int:
    """os.open, refusing a symbolic link at `path` (O_NOFOLLOW) instead of following it."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # ENOTDIR: a link where O_DIRECTORY asks for a folder
            no_link(path)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see the old file or the new, never half.

    A folder that is a symbolic link is refused; a link at `path` itself is replaced, never written through. A write
    the file system refuses (a full disk, a read-only folder) is a StorageError naming the file."""
    folder: int | None = None
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Every step is relative to the folder opened here, so a link put in its place meanwhile is never used.
        folder = open_no_link(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        name = f".{path.name}.{secrets.token_hex(6)}.tmp"
        # O_EXCL creates a file or fails, whatever is there, a link included; 0o666 less the umask, as for any file.
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=folder)
        tmp = name
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException as exc:
        if folder is not None and tmp is not None:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)
        if isinstance(exc, OSError):
            raise StorageError(f"{path.name} could not be written: {exc.strerror or exc}") from exc
        raise
    finally:
        if folder is not None:
            os.close(folder)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_record(path: Path, record: BaseModel) -> None:
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()
