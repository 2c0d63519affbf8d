"""Output layout, atomic writes and the ledger."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tasks.errors import FeedBusyError, StorageError
from tasks.models import Episode
from tasks.store import FeedStore, atomic_write_text, episode_folder_name, feed_folder_name

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
    episode = Episode(episode_id=f"guid/{title}", title=title, published=datetime(2026, 11, 2, tzinfo=timezone.utc))
    name = episode_folder_name(episode)

    assert name.startswith("2026-11-02-")
    assert len(name) <= 90
    assert all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in name)
    folder = (tmp_path / "episodes" / name).resolve()
    assert folder.parent == (tmp_path / "episodes").resolve()
    folder.mkdir(parents=True)  # the OS accepts it


def test_same_title_different_guid_never_share_a_folder() -> None:
    names = {episode_folder_name(Episode(episode_id=f"id-{i}", title="Weekly Update")) for i in range(50)}
    assert len(names) == 50


def test_feed_folder_is_stable_and_distinct_per_url() -> None:
    a = feed_folder_name("https://feeds.example.org/show/rss.xml")
    assert a == feed_folder_name("https://feeds.example.org/show/rss.xml")
    assert a.startswith("feeds-example-org-show-rss-xml-")
    assert a != feed_folder_name("https://feeds.example.org/show/rss.xml?page=2")


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

    def full_disk(src: str, dst: str) -> None:
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
