"""The flows: `ingest_feeds(feeds, opml, settings)` takes every new episode of many feeds through the registered
stages (tasks/stages.py) as one true pipeline, its stage limits shared by all the feeds; `ingest_feed(feed_url,
settings)` does the same for one feed."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import Task, flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.limits import limited_stage_tags
from flows.pipeline import Progress, Stage, failure_message, run_pipeline, stopping_on_termination
from flows.summary import summary_markdown, table_text
from tasks.errors import FeedError, PodflowError
from tasks.feed import fetch_feed_task
from tasks.feed_run import FeedEpisode, FeedRun, open_feeds, register
from tasks.models import IngestReport, RunReport, Settings, utc_now
from tasks.opml import read_opml
from tasks.prefect_glue import Stored, settings_taken
from tasks.redaction import redact_url, redact_urls
from tasks.report import StagesRun, feed_report
from tasks.selection import selected_episodes, unique_episodes
from tasks.stages import STAGES, load, stage_tag
from tasks.transcribe.base import on_cluster

_progress_listeners: list[Callable[[Progress], None]] = []


@contextmanager
def listening(listener: Callable[[Progress], None]) -> Iterator[None]:
    """Call `listener(progress)` on every step of pipelines run in this process (the CLI's display)."""
    _progress_listeners.append(listener)
    try:
        yield
    finally:
        _progress_listeners.remove(listener)


def tagged(task: Task[..., Any], stage: str, limited: set[str]) -> Task[..., Any]:
    """The stage's task, carrying its tag only where a limit exists for it.

    Prefect asks the API for a concurrency slot for every tag of every task run, limit or none; on the default
    SQLite server, concurrent first asks for an unlimited tag took about 1.8 s (bench/prefect_tags.py).
    """
    return task.with_options(tags={stage_tag(stage)}) if stage_tag(stage) in limited else task


def pipeline_stage(name: str, settings: Settings, limited: set[str], workers: int) -> Stage[FeedEpisode]:
    """The registered stage `name` (tasks/stages.py) wired for this run: each upstream it takes is the future of
    the episode's run of that stage, or, where an earlier run did it, read back from the folder."""
    info = STAGES[name]

    def parameters(item: FeedEpisode, finished: Mapping[str, PrefectFuture[Any]]) -> dict[str, Any]:
        takes = {
            param: finished[upstream] if upstream in finished else Stored(upstream)
            for param, upstream in info.takes.items()
        }
        return {"job": item, **given, **takes}

    task = load(info.task)
    given = settings_taken(task, settings, info.takes)
    in_processes = bool(info.in_processes and load(info.in_processes)(settings))
    return Stage(name, tagged(task, name, limited), workers, parameters, info.upstream, in_processes)


def pipeline_stages(settings: Settings, limited: set[str], workers: Mapping[str, int]) -> list[Stage[FeedEpisode]]:
    """Every registered stage, in order; `workers` overrides a stage's setting (the transcribe cluster's slots)."""
    return [
        pipeline_stage(name, settings, limited, workers.get(name) or settings.get(info.workers))
        for name, info in STAGES.items()
    ]


def fetch_feeds(feeds: list[FeedRun], settings: Settings) -> None:
    """Fetch every open feed at once (conditionally, where its last version left nothing to do)."""
    runner: ThreadPoolTaskRunner[Any]
    with ThreadPoolTaskRunner(max_workers=settings.download.download_workers) as runner, stopping_on_termination():
        futures: list[tuple[FeedRun, PrefectFuture[Any]]] = []
        for feed_run in (feed_run for feed_run in feeds if feed_run.error is None):
            with feed_failure(feed_run):
                validators = feed_run.store.validators_for(settings.selection.key())
                futures.append(
                    (
                        feed_run,
                        runner.submit(  # a sync task, which Prefect's overloads of submit do not type
                            fetch_feed_task,  # type: ignore[arg-type]
                            {
                                "url": feed_run.url,
                                "settings": settings,
                                "validators": validators,
                                "operator_url": feed_run.operator_url,
                            },
                        ),
                    )
                )
        for feed_run, future in futures:
            future.wait()
            if not future.state.is_completed():
                feed_run.error = redact_urls(failure_message(future) or "the fetch failed")
            elif (fetched := future.result()) is None:
                feed_run.not_modified = True
            else:
                feed_run.feed, found = fetched
                feed_run.episodes = selected_episodes(unique_episodes(found), settings.selection)


@contextmanager
def feed_failure(feed_run: FeedRun) -> Iterator[None]:
    """Whatever goes wrong with one feed's folder (a ledger that no longer parses, a full disk) fails that feed
    alone, with its reason; the run's other feeds go on."""
    try:
        yield
    except Exception as exc:
        get_run_logger().error("%s failed", redact_url(feed_run.url), exc_info=not isinstance(exc, PodflowError))
        feed_run.error = redact_urls(f"{type(exc).__name__}: {exc}")


def reported(feed_run: FeedRun, runs: Mapping[tuple[Path, str], StagesRun], since: datetime) -> IngestReport:
    with feed_failure(feed_run):
        return feed_report(feed_run, runs, since)
    return feed_report(feed_run, runs, since)  # the feed has failed: its report says why


def publish(report: RunReport) -> None:
    """The run's table of episodes and its summary, as artifacts on the flow run."""
    create_table_artifact(
        key="podflow-episodes",
        table=[
            {
                "feed": table_text(feed.feed_title),
                "episode": table_text(e.title),
                "published": e.published.date().isoformat() if e.published else "",
                "status": e.status,
                **{stage: e.stages.get(stage, "-") for stage in STAGES},
                **{f"{stage} s": round(e.seconds[stage], 1) if stage in e.seconds else "" for stage in STAGES},
                "error": table_text(e.error or ""),
            }
            for feed in report.feeds
            for e in feed.episodes
        ]
        + [
            {
                "feed": table_text(feed.feed_title),
                "episode": "",
                "status": f"feed {feed.status}",
                "error": table_text(feed.error or ""),
            }
            for feed in report.feeds
            if feed.status != "fetched"
        ],
        description="Each episode of the run: outcome and seconds per stage, error",
    )
    create_markdown_artifact(
        key="podflow-summary",
        markdown=summary_markdown(report),
        description="Counts, bytes, audio hours, throughput and failures of the run",
    )


def ingest(
    urls: list[str], settings: Settings, source_errors: list[str] | None = None, listed: Collection[str] = ()
) -> RunReport:
    """Take every new episode of every feed through the stages, in one pipeline; returns when all settle.

    `source_errors` are lists of feeds that could not be read (an OPML file): the report carries them. `listed`:
    the URLs read from an OPML list, whose hosts are not trusted as those of the feeds given directly are."""
    logger = get_run_logger()
    source_errors = source_errors or []
    for error in source_errors:
        logger.error("%s", error)
    started = utc_now()
    workers: dict[str, int] = {}
    if on_cluster(settings):  # before any download: a cluster that cannot be reached fails the run here
        from tasks.transcribe.cluster import cluster_slots, stage_workers  # Dask is an optional extra

        slots = cluster_slots(settings)
        workers["transcribe"] = stage_workers(slots)
        logger.info("Transcribing on the Dask cluster at %s: %d slots", settings.cluster.transcribe_cluster, slots)
    with ExitStack() as locks:
        feeds = open_feeds(urls, settings, locks, listed)
        fetch_feeds(feeds, settings)
        todo: list[FeedEpisode] = []
        for feed_run in feeds:
            if feed_run.error is not None:
                logger.error("%s: %s", redact_url(feed_run.url), feed_run.error)
            elif feed_run.not_modified:
                logger.info("%s: not modified since the last run", redact_url(feed_run.url))
            else:
                assert feed_run.feed is not None
                with feed_failure(feed_run):
                    chosen = register(feed_run, settings)
                    todo += chosen
                    if feed_run.feed.paging_error:
                        logger.warning(
                            "%s: only some pages were read: %s", feed_run.feed.title, feed_run.feed.paging_error
                        )
                    logger.info(
                        "%s: %d episodes chosen, %d to process, output in %s",
                        feed_run.feed.title,
                        len(feed_run.episodes),
                        len(chosen),
                        feed_run.store.feed_dir,
                    )

        progress_artifact = cast(  # created synchronously: this flow is not async
            UUID, create_progress_artifact(0.0, description="Episodes of this run through the pipeline")
        )

        shown_percent = 0

        def on_progress(progress: Progress) -> None:
            nonlocal shown_percent
            # A display is no reason to stop the pipeline: its failures are logged, not raised.
            try:
                # An API call on the flow's thread, which does all the submitting: once a whole percent, not once an
                # episode (a call took 70-145 ms, most of a run's time on a feed of 3,000 refused enclosures).
                percent = 100 * progress.settled // progress.total if progress.total else 100
                if percent > shown_percent or progress.settled == progress.total:
                    update_progress_artifact(progress_artifact, float(percent))
                    shown_percent = percent
                for listener in _progress_listeners:
                    listener(progress)
            except Exception:
                logger.warning("Progress display failed", exc_info=True)

        limited = limited_stage_tags()
        if limited:
            logger.info("Stage limits across runs apply to: %s", ", ".join(sorted(limited)))
        stages = pipeline_stages(settings, limited, workers)
        runs = run_pipeline(todo, stages, on_progress, stages_of=lambda item: item.stages)
        by_episode = {(run.item.store.feed_dir, run.item.episode.episode_id): run for run in runs}
        reports = tuple(reported(feed_run, by_episode, started) for feed_run in feeds)
    report = RunReport(started=started, ended=utc_now(), feeds=reports, source_errors=tuple(source_errors))
    publish(report)
    return report


@flow(name="ingest-feeds")
def ingest_feeds(
    feeds: list[str] | None = None, opml: str | None = None, settings: Settings = Settings()
) -> RunReport | State:
    """Ingest every new episode of each feed listed, and of each feed in the OPML file or URL, in one pipeline."""
    urls: list[str] = list(feeds or [])
    listed: list[str] = []
    source_errors: list[str] = []
    if opml:
        try:
            listed, left_out = read_opml(opml, settings)
            source_errors += [left_out] if left_out else []
        except FeedError as exc:
            # The feeds listed directly still run: one unreachable OPML URL should not cost them their schedule.
            source_errors.append(f"{type(exc).__name__}: {exc}")
    if not any(url.strip() for url in urls + listed):
        return Failed(message="; ".join(source_errors) or "No feeds to ingest: give feeds, an OPML file or both.")
    report = ingest(urls + listed, settings, source_errors, listed=set(listed) - {url.strip() for url in urls})
    if failure := report.failure():
        return Failed(message=failure, data=report)
    return report


@flow(name="ingest-feed")
def ingest_feed(feed_url: str, settings: Settings = Settings()) -> IngestReport | State:
    """Fetch a feed and take each episode through the stages it has not done."""
    run_report = ingest([feed_url], settings)
    report = run_report.feeds[0]
    if report.status == "failed":
        return Failed(message=report.error)
    if failure := run_report.failure():
        return Failed(message=failure, data=report)
    return report
