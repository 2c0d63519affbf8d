"""The `podflow` live display and printed reports: one progress bar per stage, each feed's table of episodes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from tasks.models import IngestReport, Ledger
from tasks.stages import STAGES

if TYPE_CHECKING:
    from flows import pipeline  # imports Prefect, which flows/cli.py configures first

STATUS_STYLE = {"complete": "green", "already complete": "cyan", "failed": "red", "skipped": "yellow"}
console = Console()


class StageDisplay:
    """One progress bar per stage, fed by the pipeline's progress events."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks = {stage: self.bars.add_task(stage, total=None, failed="") for stage in STAGES}

    def __call__(self, progress: pipeline.Progress) -> None:
        for stage, bar in self.tasks.items():
            failed = progress.failed.get(stage, 0)
            # Episodes whose earlier stage failed will never reach this one: settled here too.
            settled = progress.done.get(stage, 0) + failed + progress.dropped.get(stage, 0)
            self.bars.update(
                bar,
                total=progress.planned.get(stage, 0),
                completed=settled,
                failed=f"[red]{failed} failed" if failed else "",
            )


def printable(text: str) -> str:
    """Text from a feed or an error with control characters made visible, so none reaches the terminal raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def print_feed(report: IngestReport) -> None:
    title = Text(printable(f"{report.feed_title}  →  {report.feed_dir}"))
    if report.status != "fetched":
        status = (
            "not modified since the last run (HTTP 304): nothing to do"
            if report.status == "not modified"
            else ("feed failed")
        )
        console.print(title, Text(status, style="red" if report.error else "cyan"))
        if report.error:
            console.print(printable(f"✗ {report.error}"), style="red", soft_wrap=True, markup=False)
        return
    table = Table(title=title)
    for column in ("episode", "status", *STAGES):
        table.add_column(column)
    for episode in report.episodes:
        style = STATUS_STYLE[episode.status]
        # Text, not a markup string: a title is the publisher's and may hold "[" or anything else.
        table.add_row(
            Text(printable(episode.title)),
            Text(episode.status, style=style),
            *(episode.stages.get(s, "-") for s in STAGES),
        )
    console.print(table)
    for episode in report.episodes:
        if episode.status == "failed":
            console.print(printable(f"✗ {episode.title}: {episode.error}"), style="red", soft_wrap=True, markup=False)
    console.print(", ".join(f"{report.count(s)} {s}" for s in STATUS_STYLE if report.count(s)))


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
