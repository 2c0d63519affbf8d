"""The `podflow` live display and printed reports: one progress bar per stage, each feed's summary and failures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from flows.summary import episode_failure, plain_error
from tasks.models import IngestReport, Ledger, RunReport
from tasks.stages import STAGES

if TYPE_CHECKING:
    from flows import pipeline  # imports Prefect, which flows/cli.py configures first

# The loggers of flow and task runs: Prefect's engines log each failed run there, the flow each failed feed.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
STATUS_STYLE = {"complete": "green", "already complete": "cyan", "failed": "red", "skipped": "yellow"}
console = Console()


class StageDisplay:
    """One progress bar per stage, fed by the pipeline's progress events while the display is entered; a stage's bar
    appears with its first episode."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StageDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.tasks:  # stopping bars never started would still print an empty line
            self.bars.stop()

    def __call__(self, progress: pipeline.Progress) -> None:
        for stage in STAGES:
            if not (planned := progress.planned.get(stage, 0)):
                continue
            if stage not in self.tasks:
                if not self.tasks:
                    self.bars.start()  # with the first bar: a run with nothing to do shows none
                self.tasks[stage] = self.bars.add_task(stage, total=planned, failed="")
            failed = progress.failed.get(stage, 0)
            # Episodes whose earlier stage failed will never reach this one: settled here too.
            settled = progress.done.get(stage, 0) + failed + progress.dropped.get(stage, 0)
            self.bars.update(
                self.tasks[stage],
                total=planned,
                completed=settled,
                failed=f"[red]{failed} failed" if failed else "",
            )


class RunFailureFilter(logging.Filter):
    """Keeps the runs' failure records (Prefect's task and flow engines', the flow's own) off the console, where
    the end of the run says each failure once; with `verbose`, those that carry a traceback still pass. The
    Prefect API gets them all."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not record.name.startswith(RUN_LOGGERS):
            return True
        # Prefect logs a failed state with exc_info=True and no exception: a bare `NoneType: None`.
        return self.verbose and bool(record.exc_info and record.exc_info[0] is not None)


@contextmanager
def failures_kept_for_the_summary(verbose: bool) -> Iterator[None]:
    """RunFailureFilter on Prefect's console handler while the run lasts."""
    from prefect.logging.handlers import PrefectConsoleHandler  # flows/cli.py configures Prefect before importing it

    handlers = [handler for handler in logging.getLogger().handlers if isinstance(handler, PrefectConsoleHandler)]
    quiet = RunFailureFilter(verbose)
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def printable(text: str) -> str:
    """Text from a feed or an error with control characters made visible, so none reaches the terminal raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def print_run(report: RunReport | None, failure: str | None, details: bool = False, verbose: bool = False) -> None:
    """The end of a run: each feed list that could not be read, then each feed's summary; where the run made no
    report (it had no feeds, or the flow itself failed), `failure`, why it failed."""
    if report is None:
        print_failure(printable(f"Run failed: {plain_error(failure or 'no report', verbose)}"))
        return
    for error in report.source_errors:
        print_failure(printable(plain_error(error, verbose)))
    for feed in report.feeds:
        print_feed(feed, details, verbose)


def print_feed(report: IngestReport, details: bool = False, verbose: bool = False) -> None:
    """A feed's outcome: one line of counts by status, then one line per failed episode; a feed that failed or
    had nothing new, one line. `details`: first a row per episode; `verbose`: each failure's chain of errors."""
    title = printable(report.feed_title)
    if report.status == "failed":
        reason = printable(plain_error(report.error or "the feed failed", verbose))
        print_failure(reason if reason.startswith(title) else f"{title}: {reason}")  # its URL, where it has no title
        return
    if report.status == "not modified":
        said = Text("not modified since the last run (HTTP 304): nothing to do", "cyan")
        console.print(Text(f"{title}: ").append(said), soft_wrap=True)
        return
    if details:
        table = Table(title=Text(printable(f"{report.feed_title}  →  {report.feed_dir}")))
        for column in ("episode", "status", *STAGES):
            table.add_column(column)
        for episode in report.episodes:
            # Text, not a markup string: a title is the publisher's and may hold "[" or anything else.
            table.add_row(
                Text(printable(episode.title)),
                Text(episode.status, style=STATUS_STYLE[episode.status]),
                *(episode.stages.get(s, "-") for s in STAGES),
            )
        console.print(table)
    counts = [Text(f"{report.count(s)} {s}", STATUS_STYLE[s]) for s in STATUS_STYLE if report.count(s)]
    console.print(Text(f"{title}: ").append(Text(", ").join(counts) or "no episodes chosen"), soft_wrap=True)
    for episode in report.episodes:
        if episode.status == "failed":
            print_failure(f"  {printable(episode_failure(episode, verbose))}")  # under its feed's line


def print_failure(line: str) -> None:
    """One failure on one line: never wrapped, never read as markup."""
    console.print(line, style="red", soft_wrap=True, markup=False, highlight=False)


def print_ledger(ledger: Ledger) -> None:
    """A feed's ledger as a table: each episode, its folder, each stage's outcome, and why one failed."""
    table = Table(title=Text(printable(f"{ledger.feed_url}: {len(ledger.episodes)} episodes")))
    for column in ("episode", "folder", *STAGES, "error"):
        table.add_column(column)
    for entry in ledger.episodes.values():
        errors = [f"{stage}: {o.error}" for stage, o in entry.stages.items() if o.status == "failed" and o.error]
        note = entry.skipped or ("marked seen" if entry.marked_seen else "")
        table.add_row(
            Text(printable(entry.title)),
            Text(entry.folder),
            *(entry.stages[s].status if s in entry.stages else "-" for s in STAGES),
            Text(printable("; ".join(errors) or note)),
        )
    console.print(table)
