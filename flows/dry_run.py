"""`podflow ingest --dry-run`: what a run would do to each feed, read from the feeds and the output folder, with no
audio downloaded and nothing written.

The feeds are fetched unconditionally (a 304 would say nothing of their episodes) and parsed as a run parses them,
under the same limits; each chosen episode is looked up in its feed's ledger, read only.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape

from flows.cli_display import console, printable
from tasks.errors import PodflowError
from tasks.feed import fetch_feed
from tasks.ledger_db import OLD_LEDGER
from tasks.models import Episode, Ledger, Settings
from tasks.models.units import human_bytes
from tasks.opml import read_opml
from tasks.redaction import redact_url, redact_urls
from tasks.selection import selected_episodes, unique_episodes
from tasks.stages import STAGES
from tasks.store import FeedStore

SHOWN_EPISODES = 20  # per feed: a dry run of a 40,000-episode feed prints its totals, not 40,000 lines


def duration(seconds: float) -> str:
    """`14 s`, `20 min`, `3.5 h`: a length to read, not to type back."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class PlannedEpisode:
    episode: Episode
    stages: tuple[str, ...]  # what a run would do; () when it is done
    marked_seen: bool = False  # skip_back_catalogue's first run: recorded as seen, never processed


def stored_ledger(store: FeedStore) -> Ledger:
    """The feed's ledger as it is on disk, migrating nothing: an earlier release's ledger.json is read as JSON."""
    if store.ledger.path.exists():
        try:
            return store.ledger.read()
        finally:
            store.ledger.close()
    old = store.feed_dir / OLD_LEDGER
    return Ledger.model_validate_json(old.read_bytes()) if old.exists() else Ledger(feed_url=store.feed_url)


def planned(store: FeedStore, episodes: list[Episode], settings: Settings) -> list[PlannedEpisode]:
    """Each chosen episode and the stages a run would give it."""
    ledger = stored_ledger(store)
    first_run = not ledger.episodes
    plans = []
    for episode in episodes:
        entry = ledger.episodes.get(episode.episode_id)
        if entry is None:
            marked = settings.selection.skip_back_catalogue and first_run
            plans.append(PlannedEpisode(episode, () if marked else tuple(STAGES), marked))
        elif entry.skipped is None and entry.marked_seen is None:
            plans.append(PlannedEpisode(episode, tuple(store.folder(entry).stages_to_run())))
        else:
            plans.append(PlannedEpisode(episode, (), entry.marked_seen is not None))
    return plans


def print_feed_plan(url: str, settings: Settings, operator_url: bool) -> bool:
    """One feed's plan; False when the feed cannot be read."""
    try:
        fetched = fetch_feed(url, settings, operator_url=operator_url)
        assert fetched is not None  # no validators were sent: never a 304
        feed, found = fetched
        episodes = selected_episodes(unique_episodes(found), settings.selection)
        store = FeedStore.for_feed(settings.output.output_dir, url)
        plans = planned(store, episodes, settings)
    except PodflowError as exc:
        console.print(escape(printable(f"{redact_url(url)}: {redact_urls(str(exc))}")), style="red")
        return False
    todo = [plan for plan in plans if plan.stages]
    declared_bytes = sum(plan.episode.enclosure_length or 0 for plan in todo)
    declared_s = sum(plan.episode.itunes_duration_s or 0 for plan in todo)
    unknown = sum(1 for plan in todo if plan.episode.enclosure_length is None)
    seen = sum(1 for plan in plans if plan.marked_seen)
    console.print(escape(printable(f"{feed.title}  ({redact_url(url)})  →  {store.feed_dir}")), style="bold")
    console.print(
        f"  {len(found):,} episodes in the feed, {len(episodes):,} chosen: {len(todo):,} to process "
        f"({human_bytes(declared_bytes)} and {duration(declared_s)} of audio declared"
        + (f", {unknown:,} of unknown size" if unknown else "")
        + f"), {len(plans) - len(todo) - seen:,} done"
        + (f", {seen:,} to be recorded as seen (skip_back_catalogue)" if seen else ""),
        highlight=False,
    )
    if feed.paging_error:
        console.print(escape(printable(f"  only some pages would be read: {feed.paging_error}")), style="yellow")
    for plan in todo[:SHOWN_EPISODES]:
        episode = plan.episode
        date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated   "
        size = human_bytes(episode.enclosure_length) if episode.enclosure_length is not None else "size unknown"
        length = duration(episode.itunes_duration_s) if episode.itunes_duration_s else "length unknown"
        line = f"  {date}  {episode.title}  ({size}, {length}): {', '.join(plan.stages)}"
        console.print(escape(printable(line)), highlight=False)
    if len(todo) > SHOWN_EPISODES:
        console.print(f"  … and {len(todo) - SHOWN_EPISODES:,} more to process", highlight=False)
    return True


def print_plan(feed_urls: list[str], opml: str | None, settings: Settings) -> int:
    """Every feed's plan; the exit status is 1 when a feed or the OPML list cannot be read."""
    ok = True
    urls = [(url, True) for url in feed_urls]
    if opml:
        try:
            listed, left_out = read_opml(opml, settings)
        except PodflowError as exc:
            console.print(escape(printable(redact_urls(str(exc)))), style="red")
            listed, left_out, ok = [], None, False
        if left_out:
            console.print(escape(printable(left_out)), style="yellow")
        urls += [(url, False) for url in listed]
    for url, operator_url in dict.fromkeys(urls):
        ok = print_feed_plan(url, settings, operator_url) and ok
    console.print("Dry run: no audio was downloaded and nothing was written.")
    return 0 if ok else 1
