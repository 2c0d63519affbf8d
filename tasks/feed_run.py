"""One feed's part in a run: its folder locked, what its fetch gave, the episodes chosen, and their registration in
the feed's ledger."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import ExitStack, closing
from dataclasses import dataclass, field

from tasks.episode_folder import EpisodeFolder
from tasks.episode_id import renamed_episode_ids
from tasks.models import Episode, Feed, FeedValidators, Settings
from tasks.redaction import redact_urls
from tasks.run_locks import RunLocks
from tasks.stages import StageName
from tasks.store import FeedStore


@dataclass
class FeedRun:
    """One feed's part in a run: its folder, what its fetch gave, the episodes chosen, or why it failed."""

    url: str
    store: FeedStore
    feed: Feed | None = None
    episodes: list[Episode] = field(default_factory=list)
    not_modified: bool = False
    error: str | None = None
    operator_url: bool = True  # given to the flow, not read from an OPML list: its host is trusted for its GET


@dataclass(frozen=True)
class FeedEpisode:
    """One episode in the pipeline: the feed it came from, its feed's store, its folder, and the stages it runs
    (tasks/stages.py order; those already done in an earlier run are left out)."""

    feed: Feed
    store: FeedStore
    episode: Episode
    folder: EpisodeFolder
    stages: tuple[StageName, ...]


def open_feeds(urls: list[str], settings: Settings, locks: ExitStack, listed: Collection[str] = ()) -> list[FeedRun]:
    """Each distinct feed with its folder's run lock held in `locks`; a feed another run holds, or whose folder
    cannot be used (a symbolic link), fails alone. `listed`: the URLs that came from an OPML list.

    Feeds are the same where their URLs are, up to blanks and the case of scheme and host (tasks/folder_names.py's
    feed_identity). A URL listed twice is one feed; one with another token is another feed, with its own folder."""
    feeds: dict[str, FeedRun] = {}
    run_locks = locks.enter_context(closing(RunLocks(settings.output.output_dir.resolve())))
    for url in filter(None, (url.strip() for url in urls)):
        store = FeedStore.for_feed(settings.output.output_dir, url)
        if store.identity in feeds:
            continue
        feed_run = feeds[store.identity] = FeedRun(url, store, operator_url=url not in listed)
        try:
            locks.enter_context(store.exclusive_run(run_locks))
        except Exception as exc:  # a folder that cannot be used fails its feed alone, whatever the reason
            feed_run.error = redact_urls(f"{type(exc).__name__}: {exc}")
    return list(feeds.values())


def register(feed_run: FeedRun, settings: Settings) -> list[FeedEpisode]:
    """Record the feed and its chosen episodes; return those with stages to run."""
    feed, store = feed_run.feed, feed_run.store
    assert feed is not None
    store.name_folder(feed)  # before the first write to a new feed's folder: its name is the feed's title
    first_run = not store.ledger.exists()  # not "no episodes": a feed may start out empty
    renamed = renamed_episode_ids(feed_run.episodes, store.read_ledger().episodes)
    entries = store.register(
        feed_run.episodes, mark_seen=settings.selection.skip_back_catalogue and first_run, renamed=renamed
    )
    store.save_feed(feed)
    # Saved only after the episodes are registered: a run killed in between must not make the next run's
    # conditional GET hide episodes nobody has seen. None where pages were left unread: a 304 would hide them too.
    store.save_validators(
        None
        if feed.paging_error
        else FeedValidators(etag=feed.etag, last_modified=feed.last_modified, selection=settings.selection.key())
    )
    chosen = []
    for episode in feed_run.episodes:
        entry = entries[episode.episode_id]
        if entry.skipped is None and entry.marked_seen is None:
            folder = store.folder(entry)
            if stages := tuple(folder.stages_to_run()):
                chosen.append(FeedEpisode(feed, store, episode, folder, stages))
    return chosen
