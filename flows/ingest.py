"""The flows: `ingest_feed(feed_url, settings)` runs every new episode of a feed through download, transcribe and
metadata as a true pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prefect import Task, flow, get_client, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.exceptions import ObjectNotFound
from prefect.futures import PrefectFuture
from prefect.states import Failed, State

from flows.pipeline import ItemRun, Progress, Stage, run_pipeline
from tasks.download import download
from tasks.errors import FeedBusyError
from tasks.feed import fetch_feed_task
from tasks.metadata import metadata
from tasks.models import STAGES, Episode, EpisodeOutcome, Feed, IngestReport, LedgerEntry, Settings
from tasks.redaction import redact_urls
from tasks.store import FeedStore
from tasks.transcribe import transcribe
from tasks.transcribe.engine import runs_in_processes

_progress_listeners: list[Callable[[str, Progress], None]] = []


@contextmanager
def listening(listener: Callable[[str, Progress], None]) -> Iterator[None]:
    """Call `listener(feed_title, progress)` on every step of pipelines run in this process (the CLI's display)."""
    _progress_listeners.append(listener)
    try:
        yield
    finally:
        _progress_listeners.remove(listener)


def stage_tag(stage: str) -> str:
    return f"podflow-{stage}"


def limited_stage_tags() -> set[str]:
    """The stage tags an operator has bounded across runs (`prefect concurrency-limit create podflow-<stage> N`)."""
    limited = set()
    with get_client(sync_client=True) as client:
        for tag in map(stage_tag, STAGES):
            try:
                client.read_global_concurrency_limit_by_name(f"tag:{tag}")
            except ObjectNotFound:
                continue
            limited.add(tag)
    return limited


def tagged(task: Task[..., Any], stage: str, limited: set[str]) -> Task[..., Any]:
    """The stage's task, carrying its tag only where a limit exists for it.

    Prefect asks the API for a concurrency slot for every tag of every task run, limit or none; on the default
    SQLite server, concurrent first asks for an unlimited tag took about 1.8 s (bench/prefect_tags.py).
    """
    return task.with_options(tags={stage_tag(stage)}) if stage_tag(stage) in limited else task


def episode_stages(feed: Feed, store: FeedStore, settings: Settings, limited: set[str]) -> list[Stage[Episode]]:
    def download_parameters(episode: Episode, upstream: Mapping[str, PrefectFuture[Any]]) -> dict[str, Any]:
        return {"episode": episode, "store": store, "settings": settings}

    def transcribe_parameters(episode: Episode, upstream: Mapping[str, PrefectFuture[Any]]) -> dict[str, Any]:
        return {"episode": episode, "audio": upstream["download"], "store": store, "settings": settings}

    def metadata_parameters(episode: Episode, upstream: Mapping[str, PrefectFuture[Any]]) -> dict[str, Any]:
        return {"feed": feed, "episode": episode, "audio": upstream["download"],
                "transcript": upstream["transcribe"], "store": store}

    return [
        Stage("download", tagged(download, "download", limited), settings.download_workers, download_parameters),
        Stage("transcribe", tagged(transcribe, "transcribe", limited), settings.transcribe_workers, transcribe_parameters,
              in_processes=runs_in_processes(settings)),
        Stage("metadata", tagged(metadata, "metadata", limited), settings.metadata_workers, metadata_parameters),
    ]


def unique_episodes(episodes: list[Episode]) -> list[Episode]:
    """The first of any items sharing a GUID: a feed that repeats one means the same episode."""
    first: dict[str, Episode] = {}
    for episode in episodes:
        first.setdefault(episode.episode_id, episode)
    return list(first.values())


def is_complete(entry: LedgerEntry, store: FeedStore) -> bool:
    return entry.complete and (store.episode_dir(entry) / "metadata.json").is_file()


def _outcome(entry: LedgerEntry, status: str, error: str | None = None) -> EpisodeOutcome:
    return EpisodeOutcome(
        episode_id=entry.episode_id,
        title=entry.title,
        folder=entry.folder,
        status=status,
        stages={stage: outcome.status for stage, outcome in entry.stages.items()},
        error=error and redact_urls(error),  # expected errors are masked already; this covers the unexpected
    )


def _report(feed: Feed, store: FeedStore, episodes: list[Episode], runs: list[ItemRun[Episode]]) -> IngestReport:
    ledger = store.read_ledger().episodes
    ran = {run.item.episode_id: run for run in runs}
    outcomes = []
    for episode in episodes:
        entry, run = ledger[episode.episode_id], ran.get(episode.episode_id)
        if entry.skipped:
            outcomes.append(_outcome(entry, "skipped", entry.skipped))
        elif run is None:
            outcomes.append(_outcome(entry, "already complete"))
        elif run.failed_stage is not None:
            outcomes.append(_outcome(entry, "failed", run.error or f"the {run.failed_stage} stage failed"))
        else:
            outcomes.append(_outcome(entry, "complete"))
    return IngestReport(feed_url=feed.url, feed_title=feed.title, feed_dir=store.feed_dir, episodes=tuple(outcomes))


def _publish(report: IngestReport) -> None:
    create_table_artifact(
        key="podflow-episodes",
        table=[
            {"episode": e.title, "status": e.status, **{s: e.stages.get(s, "-") for s in STAGES}, "error": e.error or ""}
            for e in report.episodes
        ],
        description=f"Episodes of {report.feed_title}: outcome per stage",
    )


@flow(name="ingest-feed")
def ingest_feed(feed_url: str, settings: Settings = Settings()) -> IngestReport | State:
    """Fetch a feed and take each episode not yet complete through download -> transcribe -> metadata."""
    fetched = fetch_feed_task(feed_url, settings, return_state=True)
    if fetched.is_failed():
        return Failed(message=fetched.message)
    feed, found = fetched.result()
    store = FeedStore.for_feed(settings.output_dir, feed_url)
    try:
        with store.exclusive_run():
            report = _ingest(feed, unique_episodes(found), store, settings)
    except FeedBusyError as exc:
        return Failed(message=f"{type(exc).__name__}: {exc}")
    _publish(report)
    if failed := report.count("failed"):
        others = ", ".join(f"{report.count(s)} {s}" for s in ("complete", "already complete", "skipped") if report.count(s))
        return Failed(message=f"{failed} of {len(report.episodes)} episodes failed ({others or 'none other'})", data=report)
    return report


def _ingest(feed: Feed, episodes: list[Episode], store: FeedStore, settings: Settings) -> IngestReport:
    """Take every episode not yet complete through the stages; the caller holds the feed's run lock."""
    logger = get_run_logger()
    store.save_feed(feed)
    entries = store.register(episodes)
    todo = [e for e in episodes if not entries[e.episode_id].skipped and not is_complete(entries[e.episode_id], store)]
    logger.info("%s: %d episodes, %d to process, output in %s", feed.title, len(episodes), len(todo), store.feed_dir)

    progress_artifact = create_progress_artifact(0.0, description=f"Episodes of {feed.title} through the pipeline")

    def on_progress(progress: Progress) -> None:
        # A display is no reason to stop the pipeline: its failures are logged, not raised.
        try:
            update_progress_artifact(progress_artifact, 100.0 * progress.settled / progress.total if progress.total else 100.0)
            for listener in _progress_listeners:
                listener(feed.title, progress)
        except Exception:
            logger.warning("Progress display failed", exc_info=True)

    limited = limited_stage_tags()
    if limited:
        logger.info("Stage limits across runs apply to: %s", ", ".join(sorted(limited)))
    runs = run_pipeline(todo, episode_stages(feed, store, settings, limited), on_progress)
    return _report(feed, store, episodes, runs)
