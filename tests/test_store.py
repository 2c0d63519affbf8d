"""Output layout, atomic writes and the ledger."""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import multiprocessing
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tasks.download import is_verified, sha256_of
from tasks.episode_id import guid_episode_id, renamed_episode_ids
from tasks.errors import FeedBusyError, StorageError
from tasks.files import atomic_write_text
from tasks.folder_names import (
    episode_folder_base,
    feed_folder_name_0_2,
    feed_identity,
    free_episode_folder_name,
    previous_feed_folder_name,
    short_hash,
    slugify,
)
from tasks.ledger_db import LEDGER, OPEN_LEDGERS
from tasks.models import AudioFile, Episode
from tasks.redaction import redact_urls_0_2
from tasks.stages import STAGES
from tasks.store import FeedStore
from tasks.transcribe.stage import read_transcript
from tests.ledgers import write_old_ledger

LINK_REFUSED = "is a symbolic link; podflow never follows links inside its output folder"

HOSTILE_TITLES = [
    "../../etc/passwd",
    "/absolute/path",
    "nul\x00byte and \x07 control \x1b[31m chars",
    "x" * 1000,
    "🎙️ Emoji 🔥 only 🎧",
    "\u202eRight-to-left override \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "CON",
    "aux.mp3",
    "...",
    "",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_episode_folders_are_safe_names_inside_the_feed_folder(tmp_path: Path, title: str) -> None:
    episode = Episode(episode_id=f"guid/{title}", title=title, published=datetime(2026, 11, 2, tzinfo=UTC))
    taken = {episode_folder_base(episode)}  # another episode of that title that day: an id follows
    for name in (episode_folder_base(episode), free_episode_folder_name(episode, taken)):
        assert name.startswith("2026-11-02-")
        assert len(name) <= 90
        assert all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in name)
        folder = (tmp_path / "episodes" / name).resolve()
        assert folder.parent == (tmp_path / "episodes").resolve()
        folder.mkdir(parents=True)  # the OS accepts it


def test_episodes_titled_alike_never_share_a_folder_and_only_the_later_ones_carry_an_id(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    episodes = [
        Episode(episode_id=f"id-{i}", title="Weekly Update", enclosure_url="https://x/a.mp3") for i in range(50)
    ]
    entries = store.register(episodes)
    names = [entries[f"id-{i}"].folder for i in range(50)]
    assert len(set(names)) == 50
    assert names[0] == "undated-weekly-update"
    assert names[1:] == [f"undated-weekly-update-{short_hash(f'id-{i}', 6)}" for i in range(1, 50)]


def test_a_feed_is_its_url_up_to_blanks_and_the_case_of_scheme_and_host() -> None:
    a = feed_identity("https://feeds.example.org/show/rss.xml")
    assert a == feed_identity("  HTTPS://Feeds.Example.org/show/rss.xml ")
    assert a != feed_identity("https://feeds.example.org/show/rss.xml?page=2")
    assert previous_feed_folder_name("https://feeds.example.org/show/rss.xml") == f"feeds-example-org-show-rss-xml-{a}"


def test_feeds_that_differ_only_in_a_secret_are_different_feeds() -> None:
    assert feed_identity("https://feeds.example.org/show.xml?key=s3cretA") != feed_identity(
        "https://feeds.example.org/show.xml?key=s3cretB"
    )
    assert feed_identity("https://me:pw1@feeds.example.org/show.xml") != feed_identity(
        "https://me:pw2@feeds.example.org/show.xml"
    )
    assert "s3cret" not in previous_feed_folder_name("https://feeds.example.org/show.xml?key=s3cretA")


def colliding_pair(prefix: str, chars: int = 8) -> tuple[str, str]:
    """Two texts `prefix<n>` whose SHA-256 digests share their first `chars` hex digits (a birthday search)."""
    seen: dict[str, str] = {}
    for text in (f"{prefix}{n}" for n in itertools.count()):
        head = hashlib.sha256(text.encode()).hexdigest()[:chars]
        if head in seen:
            return seen[head], text
        seen[head] = text
    raise AssertionError("itertools.count() never ends")  # for the type checker


def test_episodes_whose_short_ids_collide_still_get_folders_of_their_own(tmp_path: Path) -> None:
    first, second = colliding_pair("guid-", 6)
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    titled = [Episode(episode_id=i, title="Weekly", enclosure_url="https://x/a.mp3") for i in ("guid", first, second)]
    entries = store.register(titled)
    assert [entries[e.episode_id].folder for e in titled] == [
        "undated-weekly",
        f"undated-weekly-{short_hash(first, 6)}",
        f"undated-weekly-{short_hash(second, 16)}",  # its 6 hex are the other's
    ]
    first, second = colliding_pair("https://feeds.example.org/show.xml?page=")
    assert feed_identity(first) != feed_identity(second)


def test_a_new_episode_never_takes_a_folder_another_entry_has(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    new = Episode(episode_id="new", title="Weekly", enclosure_url="https://x/a.mp3")
    # An entry holding the folder the new episode would get: another episode's, of another title then.
    store.register([Episode(episode_id="old", title="Old", enclosure_url="https://x/a.mp3")])
    ledger = store.read_ledger()
    old = ledger.episodes["old"].model_copy(update={"folder": "undated-weekly"})
    write_old_ledger(store, ledger.model_copy(update={"episodes": {"old": old}}))

    entries = store.register([new])

    assert (
        entries["new"].folder == f"undated-weekly-{short_hash('new', 6)}" and entries["old"].folder == "undated-weekly"
    )
    every = {"undated-weekly"} | {f"undated-weekly-{short_hash('new', n)}" for n in (6, 16, 64)}
    with pytest.raises(StorageError, match="every folder name for episode new is taken"):
        free_episode_folder_name(new, every)


def old_feed_folder_name(url: str, masked_url: str) -> str:
    """How podflow named a feed folder before: slug of host and path, 8 hex of the URL with query credentials masked."""
    parts = urlsplit(url)
    return f"{slugify(parts.netloc + ' ' + parts.path, 40)}-{hashlib.sha256(masked_url.encode()).hexdigest()[:8]}"


def test_a_feed_folder_named_the_old_way_is_taken_over_on_first_open(tmp_path: Path) -> None:
    url = "https://feeds.example.org/private/aB3dE5gH7jK9mN1pQ3rS5tU7/feed.xml?token=abc"
    old_dir = tmp_path / old_feed_folder_name(url, url.replace("token=abc", "token=***"))
    FeedStore(old_dir, url).register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    (old_dir / "episodes" / "ep-folder").mkdir(parents=True)
    (old_dir / "episodes" / "ep-folder" / "audio.mp3").write_bytes(b"done before")

    store = FeedStore.for_feed(tmp_path, url)
    with store.exclusive_run():
        assert not old_dir.exists()
        assert store.read_ledger().episodes.keys() == {"ep"}
        assert (store.feed_dir / "episodes" / "ep-folder" / "audio.mp3").read_bytes() == b"done before"
    # The previous release's name until a run knows the feed's title: it shows no path token.
    assert store.feed_dir.name == previous_feed_folder_name(url) and "ab3de5" not in store.feed_dir.name
    # Another token's feed is another feed: it starts a folder of its own.
    other = FeedStore.for_feed(tmp_path, url.replace("abc", "xyz"))
    with other.exclusive_run():
        assert other.read_ledger().episodes == {}
    # ...made at its first write: a feed that is only locked (its fetch failed) leaves no folder behind, and the
    # run lock's file goes with the last run.
    assert os.listdir(tmp_path) == [store.feed_dir.name]


def test_an_old_folder_a_run_still_holds_is_left_where_it_is(tmp_path: Path) -> None:
    url = "https://feeds.example.org/feed.xml"
    old_dir = tmp_path / old_feed_folder_name(url, url)
    old_dir.mkdir()
    old_run = os.open(old_dir / ".run.lock", os.O_WRONLY | os.O_CREAT)  # as an older podflow locks its folder
    try:
        fcntl.flock(old_run, fcntl.LOCK_EX)
        with pytest.raises(FeedBusyError, match="another run is already ingesting"):
            with FeedStore.for_feed(tmp_path, url).exclusive_run():
                pass
        assert os.listdir(tmp_path) == [old_dir.name]
    finally:
        os.close(old_run)


def test_atomic_write_leaves_no_temp_file_and_a_readable_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["file.json"]
    assert target.stat().st_mode & stat.S_IRGRP  # not mkstemp's owner-only 0600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.txt"
    atomic_write_text(target, "complete")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(StorageError, match="file.txt could not be written: No space left on device"):
        atomic_write_text(target, "half")
    assert target.read_text() == "complete"
    assert os.listdir(tmp_path) == ["file.txt"]


def test_ledger_keeps_every_outcome_recorded_from_many_threads(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    episodes = [Episode(episode_id=f"ep-{i}", title=f"Episode {i}", enclosure_url="https://x/a.mp3") for i in range(40)]
    store.register(episodes)

    def work(episode: Episode) -> None:
        for stage in ("download", "transcribe", "metadata"):
            with store.recording(episode.episode_id, stage):
                pass

    threads = [threading.Thread(target=work, args=(episode,)) for episode in episodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ledger = store.read_ledger()
    assert len(ledger.episodes) == 40
    assert all(entry.complete for entry in ledger.episodes.values())


def _record_stages(feed_dir: Path, episode_ids: list[str]) -> None:
    store = FeedStore(feed_dir, "https://example.org/feed.xml")
    for episode_id in episode_ids:
        for stage in ("download", "transcribe", "metadata"):
            with store.recording(episode_id, stage):
                pass


@pytest.mark.integration  # a subprocess
def test_ledgers_of_more_feeds_than_a_process_keeps_open_lose_no_outcome(tmp_path: Path) -> None:
    """Threads writing to more ledgers than OPEN_LEDGERS: connections closed as the least recently used while
    others wait their turn are opened again, and every outcome is there."""
    stores = [FeedStore(tmp_path / f"feed-{n}", f"https://example.org/{n}.xml") for n in range(OPEN_LEDGERS + 8)]
    for store in stores:
        store.register([Episode(episode_id=f"ep-{i}", title="Ep", enclosure_url="https://x/a.mp3") for i in range(5)])

    def work(store: FeedStore) -> None:
        for i in range(5):
            for stage in STAGES:
                with store.recording(f"ep-{i}", stage):
                    pass

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, stores * 2))

    for store in stores:
        entries = store.read_ledger().episodes.values()
        assert len(entries) == 5 and all(entry.complete for entry in entries)
        store.ledger.close()
    assert not list(tmp_path.glob("*/ledger.sqlite-wal"))  # closed: every write checkpointed into the database


def test_ledger_keeps_every_outcome_recorded_from_several_processes(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    ids = [f"ep-{i}" for i in range(30)]
    store.register([Episode(episode_id=i, title=i, enclosure_url="https://x/a.mp3") for i in ids])
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        pool.starmap(_record_stages, [(tmp_path, ids[k::3]) for k in range(3)])
    assert all(entry.complete for entry in store.read_ledger().episodes.values())


def test_a_second_run_of_the_same_feed_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    with store.exclusive_run():
        with pytest.raises(FeedBusyError, match="another run is already ingesting https://example.org/feed.xml"):
            with FeedStore(tmp_path, "https://example.org/feed.xml").exclusive_run():
                pass
    with store.exclusive_run():  # released afterwards
        pass


def test_a_failing_stage_is_recorded_with_its_error_and_still_raises(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    store.register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    with pytest.raises(ValueError), store.recording("ep", "transcribe"):
        raise ValueError("no speech found")
    outcome = store.read_ledger().episodes["ep"].stages["transcribe"]
    assert outcome.status == "failed"
    assert outcome.error == "ValueError: no speech found"
    assert outcome.started <= outcome.ended


def test_an_episode_keeps_its_folder_when_its_title_changes(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    first = store.register([Episode(episode_id="ep", title="Old title", enclosure_url="https://x/a.mp3")])
    second = store.register([Episode(episode_id="ep", title="New title", enclosure_url="https://x/a.mp3")])
    assert second["ep"].folder == first["ep"].folder
    assert "old-title" in second["ep"].folder


def test_an_item_without_enclosure_is_skipped_until_its_audio_appears(tmp_path: Path) -> None:
    store = FeedStore(tmp_path, "https://example.org/feed.xml")
    entries = store.register([Episode(episode_id="ep", title="Announcement")])
    assert entries["ep"].skipped == "the item has no enclosure"
    entries = store.register([Episode(episode_id="ep", title="Announcement", enclosure_url="https://x/a.mp3")])
    assert entries["ep"].skipped is None


def outside(tmp_path: Path) -> Path:
    """A folder outside the output tree with files a followed link would let podflow overwrite or delete."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in ("audio.mp3", "audio.mp3.part", ".metadata.json.x.tmp", "metadata.json"):
        (folder / name).write_text("theirs")
    return folder


def untouched(folder: Path) -> bool:
    names = ["audio.mp3", "audio.mp3.part", ".metadata.json.x.tmp", "metadata.json"]
    return sorted(os.listdir(folder)) == sorted(names) and all((folder / n).read_text() == "theirs" for n in names)


def test_a_linked_feed_folder_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = outside(tmp_path)
    store = FeedStore.for_feed(tmp_path / "out", "https://example.org/feed.xml")
    (tmp_path / "out").mkdir()
    store.feed_dir.symlink_to(target)

    with pytest.raises(StorageError, match=f"{store.feed_dir.name} {LINK_REFUSED}"):
        with store.exclusive_run():
            pass
    with pytest.raises(StorageError, match=LINK_REFUSED):
        store.register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    assert untouched(target)


def test_the_output_folder_itself_may_be_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    store = FeedStore.for_feed(tmp_path / "out", "https://example.org/feed.xml")
    with store.exclusive_run():
        store.register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    assert (tmp_path / "real" / store.feed_dir.name / LEDGER).is_file()


@pytest.mark.parametrize("linked", ["episodes", "episode folder"])
def test_linked_episode_folders_are_refused_and_the_sweep_never_enters_them(tmp_path: Path, linked: str) -> None:
    target = outside(tmp_path)
    store = FeedStore(tmp_path / "feed", "https://example.org/feed.xml")
    store.register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    for stage in STAGES:
        with store.recording("ep", stage):
            pass
    entry = store.read_ledger().episodes["ep"]
    episodes = store.feed_dir / "episodes"
    if linked == "episodes":
        episodes.symlink_to(target)
    else:
        episodes.mkdir()
        (episodes / entry.folder).symlink_to(target)
    (store.feed_dir / "audio.mp3.part").write_text("a leftover")

    with store.exclusive_run():  # its sweep neither enters the link nor deletes through it
        pass
    assert not (store.feed_dir / "audio.mp3.part").exists()
    with pytest.raises(StorageError, match=LINK_REFUSED):
        store.folder(entry)
    with pytest.raises(StorageError, match=LINK_REFUSED):
        store.is_settled(entry)
    if linked == "episode folder":
        with pytest.raises(StorageError, match=f"{entry.folder} {LINK_REFUSED}"):
            atomic_write_text(episodes / entry.folder / "metadata.json", "ours")
    assert untouched(target)


def test_a_link_at_a_written_file_is_replaced_not_followed(tmp_path: Path) -> None:
    target = outside(tmp_path)
    (tmp_path / "episode").mkdir()
    (tmp_path / "episode" / "metadata.json").symlink_to(target / "metadata.json")
    atomic_write_text(tmp_path / "episode" / "metadata.json", "ours")
    assert not (tmp_path / "episode" / "metadata.json").is_symlink()
    assert (tmp_path / "episode" / "metadata.json").read_text() == "ours"
    assert untouched(target)


# The run lock is the output folder's; the others are the feed folder's.
@pytest.mark.parametrize("name", ["../.run.lock", ".ledger.lock", "ledger.sqlite", "ledger.sqlite-wal", "ledger.json"])
def test_linked_lock_files_and_ledgers_are_refused(tmp_path: Path, name: str) -> None:
    target = outside(tmp_path)
    store = FeedStore(tmp_path / "out" / "feed", "https://example.org/feed.xml")
    store.feed_dir.mkdir(parents=True)
    (store.feed_dir / name).symlink_to(target / "audio.mp3")
    name = Path(name).name

    with pytest.raises(StorageError, match=f"{name} {LINK_REFUSED}"):
        with store.exclusive_run():
            store.register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    assert untouched(target)


def test_the_sweep_deletes_only_real_leftovers(tmp_path: Path) -> None:
    target = outside(tmp_path)
    store = FeedStore(tmp_path / "feed", "https://example.org/feed.xml")
    folder = store.feed_dir / "episodes" / "ep"
    folder.mkdir(parents=True)
    (folder / "audio.mp3.part").write_text("a leftover")
    (folder / ".metadata.json.abc.tmp").write_text("a leftover")
    (folder / "linked.mp3.part").symlink_to(target / "audio.mp3.part")
    (store.feed_dir / "elsewhere").symlink_to(target)

    store.remove_leftovers()

    assert sorted(os.listdir(folder)) == ["linked.mp3.part"]
    assert untouched(target)


def test_a_finished_file_that_is_a_link_is_refused_not_read(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(b"not podflow's")
    folder = tmp_path / "episode"
    folder.mkdir()
    audio = AudioFile(
        episode_id="e",
        path=folder / "audio.mp3",
        source_url="https://x.org/a.mp3",
        bytes=target.stat().st_size,
        sha256=sha256_of(target),
    )
    (folder / "audio.mp3").symlink_to(target)  # size and hash match: only the link gives it away
    (folder / "transcript.json").symlink_to(target)
    with pytest.raises(StorageError, match="audio.mp3 is a symbolic link"):
        is_verified(audio)
    with pytest.raises(StorageError, match="transcript.json is a symbolic link"):
        read_transcript(folder, audio)


def test_a_folder_and_episode_ids_podflow_0_2_masked_otherwise_are_taken_over(tmp_path: Path) -> None:
    """0.2 masked ObjectIds in paths and GUIDs, and kept random-looking values under ordinary names: its folder and
    its ledger's ids are taken over, so nothing done then is done again."""
    url = "https://feeds.example.org/public/shows/5e7b777ba085cbe7192b0607"  # an ObjectId, readable today
    old_dir = tmp_path / feed_folder_name_0_2(url)
    assert old_dir.name != previous_feed_folder_name(url)
    guids = ["https://www.narro.co/article/54e703933058540300000069", "https://x.org/a.mp3?k=Zq81mWx04bLr7TeY&token=1"]
    old_ids = [guid_episode_id(guid, redact_urls_0_2) for guid in guids]
    before = FeedStore(old_dir, url).register(
        [Episode(episode_id=i, title=i, enclosure_url="https://x/a.mp3") for i in old_ids]
    )

    store = FeedStore.for_feed(tmp_path, url)
    with store.exclusive_run():
        episodes = [
            Episode(episode_id=guid_episode_id(guid), title=guid, enclosure_url="https://x/a.mp3") for guid in guids
        ]
        renamed = renamed_episode_ids(episodes, store.read_ledger().episodes)
        entries = store.register(episodes, renamed=renamed)
    assert not old_dir.exists() and store.feed_dir.name == previous_feed_folder_name(url)
    assert set(entries) == {e.episode_id for e in episodes} and episodes[0].episode_id == guids[0]
    assert [entries[e.episode_id].folder for e in episodes] == [before[i].folder for i in old_ids]  # kept
