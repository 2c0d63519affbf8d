"""A run's plain steps, without Prefect: which episodes it takes, the feeds it opens and registers, and the report
it builds from the ledgers."""

from __future__ import annotations

import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.feed_run import FeedRun, open_feeds, register
from tasks.models import Episode, Feed, Settings, utc_now
from tasks.report import feed_report, seconds_this_run
from tasks.selection import selected_episodes, unique_episodes

URL = "https://feeds.example/show.xml"


def episode(name: str, day: int | None, audio: bool = True) -> Episode:
    published = datetime(2026, 11, day, tzinfo=UTC) if day else None
    return Episode(episode_id=name, title=name, published=published, enclosure_url="https://x/a.mp3" if audio else None)


def test_selection_is_pure_and_keeps_feed_order() -> None:
    episodes = [episode("c", 3), episode("undated", None), episode("a", 1), episode("b", 2)]
    announcement = episode("news", 9, audio=False)
    assert [e.title for e in selected_episodes([announcement, *episodes], Settings.of(newest=1).selection)] == ["c"]

    assert [e.title for e in selected_episodes(episodes, Settings.of(newest=2).selection)] == ["c", "b"]
    chosen = selected_episodes(episodes, Settings.of(published_after=datetime(2026, 11, 1, 12)).selection)
    assert [e.title for e in chosen] == ["c", "undated", "b"]
    assert selected_episodes(episodes, Settings().selection) == episodes


def test_a_repeated_guid_is_one_episode_the_first() -> None:
    first, again = episode("a", 1), episode("a", 2)
    assert unique_episodes([first, episode("b", 1), again]) == [first, episode("b", 1)]


def test_a_feed_given_twice_is_opened_once_and_a_held_folder_fails_alone(tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path)
    with ExitStack() as locks:
        [feed_run] = open_feeds([URL, f" {URL.replace('feeds.example', 'FEEDS.example')} ", ""], settings, locks)
        assert (feed_run.url, feed_run.error, feed_run.operator_url) == (URL, None, True)
        with ExitStack() as other_locks:
            [busy] = open_feeds([URL], settings, other_locks, listed={URL})
        assert busy.error is not None and busy.error.startswith("FeedBusyError: ")
        assert not busy.operator_url


TEN_THOUSAND_FEEDS = """
import os, resource, sys
from contextlib import ExitStack
from tasks.feed_run import open_feeds
from tasks.models import Settings
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
settings = Settings.of(output_dir=sys.argv[1])
urls = [f"https://feeds{n}.example.org/feed.xml" for n in range(10_000)]
with ExitStack() as locks, ExitStack() as other_run:
    opened = open_feeds(urls, settings, locks)
    refused = open_feeds(urls[:3] + ["https://feeds.example.org/another.xml"], settings, other_run)
    print(sum(feed.error is None for feed in opened), [feed.error is None for feed in refused], os.listdir(sys.argv[1]))
"""


@pytest.mark.integration  # a subprocess, for its own file descriptor limit
def test_a_run_of_ten_thousand_feeds_holds_their_locks_within_1024_file_descriptors(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", TEN_THOUSAND_FEEDS, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # All held at once; another run gets none of them but its own feed; no folder is made before a feed is fetched.
    assert result.stdout.strip() == "10000 [False, False, False, True] ['.run.lock']"


@dataclass
class Run:
    failed_stage: str | None = None
    error: str | None = None


def test_registered_episodes_are_reported_by_what_their_run_did(tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path)
    since = utc_now()
    feed = Feed(url=URL, final_url=URL, title="Show", fetched_at=since, etag='"v1"')
    with ExitStack() as locks:
        [feed_run] = open_feeds([URL], settings, locks)
    feed_run.feed, feed_run.episodes = feed, [episode("news", 1, audio=False), episode("ep", 2), episode("done", 3)]

    todo = register(feed_run, settings)

    store = feed_run.store
    assert [item.episode.episode_id for item in todo] == ["ep", "done"]
    assert store.read_ledger().validators is not None  # saved once the episodes are registered
    store.record("ep", "download", since + timedelta(seconds=1))
    runs = {(store.feed_dir, "ep"): Run("download", None)}
    report = feed_report(feed_run, runs, since)
    assert (report.feed_title, report.status) == ("Show", "fetched")
    assert [(e.episode_id, e.status) for e in report.episodes] == [
        ("news", "skipped"),
        ("ep", "failed"),
        ("done", "already complete"),
    ]
    assert report.episodes[1].error == "the download stage failed"
    assert list(report.episodes[1].seconds) == ["download"]
    assert seconds_this_run(store.read_ledger().episodes["ep"], utc_now() + timedelta(days=1)) == {}


def test_a_failed_or_unchanged_feed_is_reported_as_such(tmp_path: Path) -> None:
    store_dir = Settings.of(output_dir=tmp_path)
    with ExitStack() as locks:
        [feed_run] = open_feeds(["https://user:secret@feeds.example/x"], store_dir, locks)
    feed_run.not_modified = True
    report = feed_report(feed_run, {}, utc_now())
    assert report.status == "not modified" and "secret" not in report.feed_title

    failed = FeedRun(URL, feed_run.store, error="FeedError: gone")
    assert feed_report(failed, {}, utc_now()).model_dump(include={"status", "error"}) == {
        "status": "failed",
        "error": "FeedError: gone",
    }
