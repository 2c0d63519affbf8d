"""Folders a person can browse: a feed's named by the show's title, an episode's by its date and title, an id only
where two would share a name; how a run finds a feed's folder before it fetches the feed; and a folder the previous
release wrote, renamed in place by the next run with nothing done again."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from flows.ingest import ingest_feeds
from tasks.errors import StorageError
from tasks.feed_index import FEED_ID, FOLDER_NAME, INDEX
from tasks.files import LINK_REFUSED
from tasks.folder_names import (
    feed_folder_names,
    feed_identity,
    previous_feed_folder_name,
    renamed_episode_folders,
    short_hash,
)
from tasks.models import Episode, EpisodeMetadata, Feed, LedgerEntry, RunReport, Settings, utc_now
from tasks.redaction import redact_url
from tasks.store import FeedStore
from tests.feedserver import FeedServer
from tests.ledgers import read_folder_ledger, write_old_ledger

PREVIOUS_RELEASE = Path(__file__).parent / "data" / "previous-release"
URL = "https://feeds.example.org/show.xml"
OTHER_URL = "https://feeds.example.org/other.xml"
ID = feed_identity(URL)


def feed(title: str, url: str = URL) -> Feed:
    return Feed(url=url, final_url=url, title=title, fetched_at=utc_now())


def episode(episode_id: str, title: str = "Weekly") -> Episode:
    return Episode(episode_id=episode_id, title=title, enclosure_url="https://x.org/a.mp3")


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Bees & Stars: A Field Guide", "bees-stars-a-field-guide"),
        ("Ça va? Émissions d'été", "ca-va-emissions-d-ete"),
        ("THE  SHOW", "the-show"),
        ("x" * 1000, "x" * 50),
    ],
)
def test_a_feed_folder_is_a_slug_of_the_show_title_then_the_same_with_an_id(title: str, name: str) -> None:
    assert feed_folder_names(feed(title), ID) == [name, f"{name}-{ID[:6]}", f"{name}-{ID}"]


@pytest.mark.parametrize("title", ["CON", "nul", "Aux", "com1", "LPT9"])
def test_a_name_windows_reserves_always_carries_an_id(title: str) -> None:
    assert feed_folder_names(feed(title), ID) == [f"{title.lower()}-{ID[:6]}", f"{title.lower()}-{ID}"]


@pytest.mark.parametrize("title", ["", "🎙️ 🔥", "...", redact_url("https://me:pw@Feeds.Example.org:8443/t0k/rss")])
def test_a_feed_with_no_title_in_words_is_named_by_its_host(title: str) -> None:
    url = "https://me:pw@Feeds.Example.org:8443/t0k/rss"  # the URL fallback is the title feed_parse gives none
    assert feed_folder_names(feed(title, url), feed_identity(url))[0] == "feeds-example-org"


@pytest.mark.parametrize("title", ["../../etc/passwd", "/absolute", "nul\x00byte \x1b[31m", "\u202eevil", "aux.mp3"])
def test_feed_folder_names_are_plain_bounded_names_inside_the_output_folder(tmp_path: Path, title: str) -> None:
    for name in feed_folder_names(feed(title), ID):
        assert FOLDER_NAME.fullmatch(name) and len(name) <= 67
        (tmp_path / name).mkdir()
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def named_store(output: Path, url: str, title: str, episodes: list[Episode] | None = None) -> FeedStore:
    """A run of the feed: its folder opened, named by `title`, its episodes registered."""
    store = FeedStore.for_feed(output, url)
    with store.exclusive_run():
        store.name_folder(feed(title, url))
        store.register(episodes or [episode("ep")])
    return store


def test_a_new_feed_folder_is_named_by_its_title_and_found_by_the_next_run(tmp_path: Path) -> None:
    store = named_store(tmp_path, URL, "Bees & Stars")

    assert store.feed_dir == tmp_path.resolve() / "bees-stars"
    assert sorted(os.listdir(tmp_path)) == [INDEX, "bees-stars"]
    assert (tmp_path / INDEX / ID).read_text() == "bees-stars" and (store.feed_dir / FEED_ID).read_text() == ID
    again = FeedStore.for_feed(tmp_path, f"  {URL} ")
    assert again.feed_dir == store.feed_dir and again.named
    assert again.read_ledger().episodes.keys() == {"ep"}


def test_feeds_titled_alike_get_folders_of_their_own_only_the_later_with_an_id(tmp_path: Path) -> None:
    first = named_store(tmp_path, URL, "Weekly")
    second = named_store(tmp_path, OTHER_URL, "WEEKLY!")
    token = named_store(tmp_path, f"{URL}?token=abc", "Weekly")  # another subscriber's feed

    assert first.feed_dir.name == "weekly"
    assert second.feed_dir.name == f"weekly-{feed_identity(OTHER_URL)[:6]}"
    assert token.feed_dir.name == f"weekly-{feed_identity(f'{URL}?token=abc')[:6]}"
    assert [FeedStore.for_feed(tmp_path, url).feed_dir for url in (URL, OTHER_URL)] == [first.feed_dir, second.feed_dir]


def test_a_feed_keeps_its_folder_when_its_title_changes(tmp_path: Path) -> None:
    store = named_store(tmp_path, URL, "Old title")
    again = named_store(tmp_path, URL, "New title", [episode("ep"), episode("ep2")])

    assert again.feed_dir == store.feed_dir and store.feed_dir.name == "old-title"
    assert sorted(os.listdir(tmp_path)) == [INDEX, "old-title"]
    assert again.read_ledger().episodes.keys() == {"ep", "ep2"}


def test_an_index_entry_whose_folder_another_feed_has_since_taken_is_not_followed(tmp_path: Path) -> None:
    gone = named_store(tmp_path, URL, "Show")
    shutil.rmtree(gone.feed_dir)  # deleted by hand; another show of that title then takes the name
    taken = named_store(tmp_path, OTHER_URL, "Show", [episode("theirs")])
    assert taken.feed_dir == gone.feed_dir

    back = named_store(tmp_path, URL, "Show", [episode("mine")])

    assert back.feed_dir.name == f"show-{ID[:6]}"
    assert read_folder_ledger(taken.feed_dir).episodes.keys() == {"theirs"}
    assert read_folder_ledger(back.feed_dir).episodes.keys() == {"mine"}


def test_a_naming_cut_short_is_finished_by_the_next_run(tmp_path: Path) -> None:
    """Killed after claiming the name (an empty folder, the index entry) but before moving the folder onto it."""
    previous = tmp_path / previous_feed_folder_name(URL)
    store = FeedStore(previous, URL)
    store.register([episode("ep")])
    store.save_feed(feed("Show"))
    store.ledger.close()
    (tmp_path / "show").mkdir()
    (tmp_path / INDEX).mkdir()
    (tmp_path / INDEX / ID).write_text("show")

    found = FeedStore.for_feed(tmp_path, URL)
    assert (found.feed_dir, found.named, found.claimed) == (previous, False, "show")
    with found.exclusive_run():  # its feed.json gives the title: named before anything is fetched
        assert found.feed_dir == tmp_path.resolve() / "show"
    assert sorted(os.listdir(tmp_path)) == [INDEX, "show"]
    assert found.read_ledger().episodes.keys() == {"ep"}


def test_a_link_where_the_index_names_the_feed_folder_is_refused(tmp_path: Path) -> None:
    store = named_store(tmp_path / "out", URL, "Show")
    elsewhere = tmp_path / "elsewhere"
    store.feed_dir.rename(elsewhere)
    store.feed_dir.symlink_to(elsewhere)  # its .feed-id, seen through the link, is the feed's

    with pytest.raises(StorageError, match=LINK_REFUSED):
        with FeedStore.for_feed(tmp_path / "out", URL).exclusive_run():
            pass


def hashed(entry_id: str, name: str, chars: int = 16) -> str:
    return f"{name}-{short_hash(entry_id, chars)}"


def test_hashed_episode_folder_names_lose_their_hash_and_gain_an_id_only_where_two_would_meet() -> None:
    entries = [
        LedgerEntry(episode_id=i, title="", folder=folder)
        for i, folder in [
            ("a", hashed("a", "2026-11-02-weekly")),
            ("b", hashed("b", "2026-11-02-weekly")),
            ("c", hashed("c", "2026-11-02-news", 8)),  # an older podflow's 8 hex
            ("d", hashed("d", "undated-weekly", 64)),  # a 64-bit collision's
            ("e", hashed("old id of e", "2026-11-09-renamed")),  # its id changed since (0.2's masked GUIDs)
        ]
    ]
    assert renamed_episode_folders(entries) == {
        entries[0].folder: "2026-11-02-weekly",
        entries[1].folder: f"2026-11-02-weekly-{short_hash('b', 6)}",
        entries[2].folder: "2026-11-02-news",
        entries[3].folder: "undated-weekly",
        entries[4].folder: "2026-11-09-renamed",
    }
    assert renamed_episode_folders(reversed(entries))[entries[0].folder] == f"2026-11-02-weekly-{short_hash('a', 6)}"


def test_episode_folders_of_a_previous_release_ledger_are_renamed_once_even_after_a_run_cut_short(
    tmp_path: Path,
) -> None:
    store = FeedStore(tmp_path / "feed", URL)
    store.register([episode("a"), episode("b"), episode("no audio yet")])
    ledger = store.read_ledger()
    # As the previous release named them: a hash after every name; the ledger.json of the release before.
    old = {i: e.model_copy(update={"folder": hashed(i, "undated-weekly")}) for i, e in ledger.episodes.items()}
    write_old_ledger(store, ledger.model_copy(update={"episodes": old}))
    for i in ("a", "b"):
        (store.feed_dir / "episodes" / old[i].folder).mkdir(parents=True)
        (store.feed_dir / "episodes" / old[i].folder / "audio.mp3").write_text(f"audio of {i}")
    written = {i: (store.feed_dir / "episodes" / old[i].folder / "audio.mp3").stat().st_mtime_ns for i in "ab"}
    # A run killed after renaming the first folder, before the ledger took the new names.
    (store.feed_dir / "episodes" / old["a"].folder).rename(store.feed_dir / "episodes" / "undated-weekly")

    with store.exclusive_run():
        pass

    folders = {i: e.folder for i, e in store.read_ledger().episodes.items()}
    assert folders == {
        "a": "undated-weekly",
        "b": f"undated-weekly-{short_hash('b', 6)}",
        "no audio yet": f"undated-weekly-{short_hash('no audio yet', 6)}",
    }
    assert sorted(os.listdir(store.feed_dir / "episodes")) == sorted([folders["a"], folders["b"]])
    for i in "ab":
        audio = store.folder(store.entry(i)).file("audio.mp3")
        assert audio.read_text() == f"audio of {i}" and audio.stat().st_mtime_ns == written[i]
    assert store.ledger.names_readably()
    with store.exclusive_run():  # named now: nothing moves again
        pass
    assert {i: e.folder for i, e in store.read_ledger().episodes.items()} == folders


def files_under(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `folder` by its path there, episode folders named by the episode's id, with its bytes and
    modification time."""
    ledger = read_folder_ledger(folder)
    by_folder = {entry.folder: episode_id for episode_id, entry in ledger.episodes.items()}
    found = {}
    for path in (folder / "episodes").rglob("*"):
        if path.is_file():
            name = f"{by_folder[path.parent.name]}/{path.name}"
            found[name] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def run(settings: Settings, feed_url: str) -> RunReport:
    state = ingest_feeds([feed_url], None, settings, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, RunReport) and state.is_completed(), state.message
    return report


@pytest.mark.usefixtures("prefect_api")
def test_a_folder_the_previous_release_wrote_is_renamed_in_place_and_nothing_is_done_again(
    server: FeedServer, settings: Settings
) -> None:
    audio_dir = Path(__file__).parents[1] / "flows" / "demo"
    for name in ("bees.mp3", "night-sky.mp3"):
        server.add(f"/{name}", (audio_dir / name).read_bytes(), content_type="audio/mpeg")
    body = (PREVIOUS_RELEASE / "feed.xml").read_bytes()
    feed_url = server.add("/feed.xml", body, content_type="application/rss+xml")
    output = settings.output.output_dir
    shutil.copytree(PREVIOUS_RELEASE / "output", output)
    (written,) = (path for path in output.iterdir() if path.is_dir())
    written.rename(output / previous_feed_folder_name(feed_url))  # the name that release gives this server's URL
    before = files_under(output / previous_feed_folder_name(feed_url))
    assert len(before) == 2 * 6  # audio, four transcript files, metadata.json

    report = run(settings, feed_url)

    # Its validators, in the ledger, made the GET conditional: the feed is the same, every episode done.
    assert report.feeds[0].status == "not modified"
    feed_dir = output / "bees-stars-a-field-guide"
    assert sorted(os.listdir(output)) == [INDEX, feed_dir.name] and report.feeds[0].feed_dir == feed_dir
    second = f"2026-11-02-weekly-update-{short_hash('weekly-night-sky', 6)}"
    assert sorted(os.listdir(feed_dir / "episodes")) == ["2026-11-02-weekly-update", second]
    ledger = read_folder_ledger(feed_dir)
    assert {i: e.folder for i, e in ledger.episodes.items()} == {
        "weekly-bees": "2026-11-02-weekly-update",
        "weekly-night-sky": second,
        "news": "2026-11-02-news",
    }
    assert files_under(feed_dir) == before  # nothing downloaded, transcribed or described again
    assert not any(hit.path.endswith(".mp3") for hit in server.hits)
    old = EpisodeMetadata.model_validate_json((feed_dir / "episodes" / second / "metadata.json").read_bytes())
    assert old.podflow_version is None and old.transcribed_with is None and old.episode.episode_id == "weekly-night-sky"

    # The show renamed: the feed parsed anew, its folder kept, its episodes done, its HTTP state in the ledger only.
    server.add("/feed.xml", body.replace(b"Bees &amp; Stars: A Field Guide", b"Stars Only"))
    report = run(settings, feed_url)

    assert report.feeds[0].status == "fetched" and report.feeds[0].feed_title == "Stars Only"
    assert [e.status for e in report.episodes] == ["already complete", "already complete", "skipped"]
    assert sorted(os.listdir(output)) == [INDEX, feed_dir.name]
    assert files_under(feed_dir) == before and not any(hit.path.endswith(".mp3") for hit in server.hits)
    saved = json.loads((feed_dir / "feed.json").read_text())
    assert saved["title"] == "Stars Only" and not {"etag", "last_modified", "paging_error"} & saved.keys()
    validators = read_folder_ledger(feed_dir).validators
    assert validators is not None and validators.etag == server.routes["/feed.xml"].etag
