"""How a run finds a feed's folder before it fetches the feed, and names the folder once the feed's title is known.

A feed is its URL (tasks/folder_names.py's feed_identity), but its folder is named by its title, which only the feed
says. So the output folder keeps an index, a file per feed, `<output>/.feeds/<identity>`, holding the name of the
feed's folder; and each feed folder holds the feed's identity in `.feed-id`, so that an index entry pointing at a
folder that is no longer the feed's (deleted, its name since taken by another feed) is never followed.

A folder is named once, the first time a run holding the feed's lock knows its title (from the folder's `feed.json`,
else from the feed as fetched): a later change of title moves nothing, so nothing is done again. Naming claims the
name by making the empty folder (mkdir fails where the name exists, so no two feeds ever take one), writes the index
entry and the `.feed-id`, then renames the feed's folder onto the empty one (a rename replaces only an empty
folder). Each step is atomic; a run cut short between two leaves the claimed folder empty, and the next run moves
the feed's folder onto it. Until then a folder is found by the name the previous release gave it.
"""

from __future__ import annotations

import os
import re
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import StorageError
from tasks.files import atomic_write_text, no_link, open_no_link

INDEX = ".feeds"
FEED_ID = ".feed-id"
FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,199}")  # what tasks/folder_names.py makes: no path, no dot


@dataclass(frozen=True)
class FoundFolder:
    """Where a feed's folder is now (it may not exist yet), whether that is its readable name, and the name an
    earlier run claimed for it but did not move it onto."""

    path: Path
    named: bool
    claimed: str | None = None


def find_feed_folder(output: Path, identity: str, previous: Path) -> FoundFolder:
    """The feed's folder: the one its index entry names where that folder is the feed's, else `previous` (the name
    the previous release gave it). Reads only, and raises nothing: what cannot be read counts as not there (the
    store refuses a link when it uses the folder)."""
    indexed = _read(output / INDEX / identity)
    if indexed is not None and FOLDER_NAME.fullmatch(indexed):
        if _read(output / indexed / FEED_ID) == identity:
            return FoundFolder(output / indexed, named=True)
        with suppress(OSError):
            if not (output / indexed).is_symlink() and not any((output / indexed).iterdir()):
                return FoundFolder(previous, named=False, claimed=indexed)
    return FoundFolder(previous, named=False)


def claim_feed_folder(output: Path, identity: str, names: list[str], found: FoundFolder) -> Path:
    """Give the feed's folder the first of `names` that is free (the one an earlier run claimed, where there is
    one), moving the folder there if it has one yet; the new path. Only the holder of the feed's run lock calls
    this."""
    name = found.claimed or _claim(output, names)
    target = output / name
    source = found.path if no_link(found.path).is_dir() else target
    atomic_write_text(output / INDEX / identity, name)
    atomic_write_text(source / FEED_ID, identity)
    if source != target:
        try:
            os.rename(source, target)  # onto the empty folder claimed: a rename replaces no folder with files in it
        except OSError as exc:
            raise StorageError(f"{source} could not be renamed to {name}: {exc.strerror or exc}") from exc
    return target


def _claim(output: Path, names: list[str]) -> str:
    output.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            os.mkdir(output / name)  # fails where anything has the name, a link included
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"{output / name} could not be made: {exc.strerror or exc}") from exc
        return name
    raise StorageError(f"every name for the feed's folder is taken in {output}: {', '.join(names)}")


def _read(path: Path) -> str | None:
    """A short file's text; None where it is not there or not a file (a link, a folder, a pipe)."""
    try:
        with os.fdopen(open_no_link(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            return file.read(256).decode("ascii", "replace").strip()
    except (OSError, StorageError):
        return None
