"""`podflow`: run the ingest flow on a feed with a live per-stage display, or on the bundled demo feed."""

from __future__ import annotations

import os

# Before Prefect is imported: no analytics from an offline machine, and the live display (not Prefect's per-task
# INFO lines) owns the terminal; the runs' logs still reach the Prefect API and its UI.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from flows import pipeline  # noqa: E402
from flows.demo_server import serving  # noqa: E402
from flows.ingest import ingest_feeds, listening  # noqa: E402
from flows.limits import limits_app  # noqa: E402
from tasks.metadata import metadata_json_schema  # noqa: E402
from tasks.models import STAGES, IngestReport, RunReport, Settings  # noqa: E402

DEMO_DIR = Path(__file__).parent / "demo"
# Fixed, because the feed URL names the output folder: a second demo run must find the first one's work.
DEMO_PORT = 47123
STATUS_STYLE = {"complete": "green", "already complete": "cyan", "failed": "red", "skipped": "yellow"}

app = typer.Typer(help="podflow: download, transcribe and describe every episode of a podcast feed.",
                  no_args_is_help=True, add_completion=False)
console = Console()


class StageDisplay:
    """One progress bar per stage, fed by the pipeline's progress events."""

    def __init__(self) -> None:
        self.bars = Progress(
            TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), console=console,
        )
        self.tasks = {stage: self.bars.add_task(stage, total=None, failed="") for stage in STAGES}

    def __call__(self, progress: pipeline.Progress) -> None:
        failed_before = 0  # episodes that failed upstream will never reach this stage: count them as settled here
        for stage, bar in self.tasks.items():
            failed = progress.failed.get(stage, 0)
            failed_before += failed
            self.bars.update(bar, total=progress.total, completed=progress.done.get(stage, 0) + failed_before,
                             failed=f"[red]{failed} failed" if failed else "")


def printable(text: str) -> str:
    """Text from a feed or an error with control characters made visible, so none reaches the terminal raw."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def print_feed(report: IngestReport) -> None:
    title = Text(printable(f"{report.feed_title}  →  {report.feed_dir}"))
    if report.status != "fetched":
        status = "not modified since the last run (HTTP 304): nothing to do" if report.status == "not modified" else (
            "feed failed")
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
        table.add_row(Text(printable(episode.title)), Text(episode.status, style=style),
                      *(episode.stages.get(s, "-") for s in STAGES))
    console.print(table)
    for episode in report.episodes:
        if episode.status == "failed":
            console.print(printable(f"✗ {episode.title}: {episode.error}"), style="red", soft_wrap=True, markup=False)
    console.print(", ".join(f"{report.count(s)} {s}" for s in STATUS_STYLE if report.count(s)))


def run(feed_urls: list[str], opml: str | None, settings: Settings) -> int:
    """Ingest the feeds with the live display; the exit status is 1 when anything failed."""
    display = StageDisplay()
    with display.bars, listening(display):
        state = ingest_feeds(feed_urls, opml, settings, return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, RunReport):
        for report in outcome.feeds:
            print_feed(report)
    if state.is_failed():
        console.print(printable(f"Run failed: {state.message}"), style="red", soft_wrap=True, markup=False)
        return 1
    return 0


def described(setting: str) -> str:
    """The Settings field's own description and default, so the CLI and the Prefect UI form say the same."""
    field = Settings.model_fields[setting]
    return f"{field.description} (default: {field.default})"


@app.command()
def ingest(
    feed_urls: Annotated[Optional[list[str]], typer.Argument(help="RSS or Atom feed URLs.", show_default=False)] = None,
    opml: Annotated[Optional[str], typer.Option(help="An OPML file or URL listing feeds to ingest too.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help=described("output_dir"))] = None,
    download_workers: Annotated[Optional[int], typer.Option(help=described("download_workers"))] = None,
    transcribe_workers: Annotated[Optional[int], typer.Option(help=described("transcribe_workers"))] = None,
    metadata_workers: Annotated[Optional[int], typer.Option(help=described("metadata_workers"))] = None,
    transcriber: Annotated[Optional[str], typer.Option(help=described("transcriber"))] = None,
    model: Annotated[Optional[str], typer.Option(help=described("model"))] = None,
    device: Annotated[Optional[str], typer.Option(help=described("device"))] = None,
    transcribe_pool: Annotated[Optional[str], typer.Option(help=described("transcribe_pool"))] = None,
    compute_type: Annotated[Optional[str], typer.Option(help=described("compute_type"))] = None,
    beam_size: Annotated[Optional[int], typer.Option(help=described("beam_size"))] = None,
    language: Annotated[Optional[str], typer.Option(help=described("language"))] = None,
    word_timestamps: Annotated[Optional[bool], typer.Option(help=described("word_timestamps"))] = None,
    prefer_published: Annotated[Optional[bool], typer.Option(help=described("prefer_published"))] = None,
    published_types: Annotated[
        Optional[list[str]], typer.Option(help=f"Repeat the option for each type. {described('published_types')}")
    ] = None,
    published_fallback: Annotated[Optional[bool], typer.Option(help=described("published_fallback"))] = None,
    user_agent: Annotated[Optional[str], typer.Option(help=described("user_agent"))] = None,
    http_timeout_s: Annotated[Optional[float], typer.Option(help=described("http_timeout_s"))] = None,
    download_attempts: Annotated[Optional[int], typer.Option(help=described("download_attempts"))] = None,
    retry_backoff_s: Annotated[Optional[float], typer.Option(help=described("retry_backoff_s"))] = None,
    max_download_s: Annotated[Optional[float], typer.Option(help=described("max_download_s"))] = None,
    max_document_s: Annotated[Optional[float], typer.Option(help=described("max_document_s"))] = None,
    max_feed_bytes: Annotated[Optional[int], typer.Option(help=described("max_feed_bytes"))] = None,
    max_feed_pages: Annotated[Optional[int], typer.Option(help=described("max_feed_pages"))] = None,
    allow_network: Annotated[
        Optional[list[str]],
        typer.Option(metavar="CIDR", help=f"Repeat the option for each network. {described('allowed_networks')}"),
    ] = None,
    max_episode_bytes: Annotated[Optional[int], typer.Option(help=described("max_episode_bytes"))] = None,
    max_audio_duration_s: Annotated[Optional[float], typer.Option(help=described("max_audio_duration_s"))] = None,
    published_after: Annotated[Optional[datetime], typer.Option(help=described("published_after"))] = None,
    newest: Annotated[Optional[int], typer.Option(help=described("newest"))] = None,
    skip_back_catalogue: Annotated[Optional[bool], typer.Option(help=described("skip_back_catalogue"))] = None,
    openai_base_url: Annotated[Optional[str], typer.Option(help=described("openai_base_url"))] = None,
    openai_api_key_secret: Annotated[Optional[str], typer.Option(help=described("openai_api_key_secret"))] = None,
    openai_transcribe_model: Annotated[Optional[str], typer.Option(help=described("openai_transcribe_model"))] = None,
    openai_requests: Annotated[Optional[int], typer.Option(help=described("openai_requests"))] = None,
    openai_rate_limit: Annotated[Optional[str], typer.Option(help=described("openai_rate_limit"))] = None,
    enrich: Annotated[Optional[str], typer.Option(help=described("enrich"))] = None,
    enrich_model: Annotated[Optional[str], typer.Option(help=described("enrich_model"))] = None,
) -> None:
    """Ingest every new episode of each FEED_URL and of each feed in the OPML file, in one pipeline."""
    given = {
        "output_dir": output, "download_workers": download_workers, "transcribe_workers": transcribe_workers,
        "metadata_workers": metadata_workers, "transcriber": transcriber, "model": model, "device": device,
        "transcribe_pool": transcribe_pool, "compute_type": compute_type, "beam_size": beam_size, "language": language,
        "word_timestamps": word_timestamps, "prefer_published": prefer_published,
        "published_types": tuple(published_types) if published_types else None,
        "published_fallback": published_fallback, "user_agent": user_agent,
        "http_timeout_s": http_timeout_s, "download_attempts": download_attempts, "retry_backoff_s": retry_backoff_s,
        "max_download_s": max_download_s, "max_document_s": max_document_s, "max_feed_bytes": max_feed_bytes,
        "max_feed_pages": max_feed_pages, "allowed_networks": tuple(allow_network) if allow_network else None,
        "max_episode_bytes": max_episode_bytes,
        "max_audio_duration_s": max_audio_duration_s, "published_after": published_after, "newest": newest,
        "skip_back_catalogue": skip_back_catalogue, "openai_base_url": openai_base_url,
        "openai_api_key_secret": openai_api_key_secret, "openai_transcribe_model": openai_transcribe_model,
        "openai_requests": openai_requests, "openai_rate_limit": openai_rate_limit, "enrich": enrich,
        "enrich_model": enrich_model,
    }
    if not feed_urls and not opml:
        raise typer.BadParameter("give at least one FEED_URL, or --opml")
    try:
        settings = Settings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                                 ) from None
    raise typer.Exit(run(feed_urls or [], opml, settings))


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("podflow-demo"),
) -> None:
    """Serve the bundled demo feed on 127.0.0.1 and ingest it end to end."""
    with serving(DEMO_DIR, DEMO_PORT) as base_url:
        feed_url = base_url + "feed.xml"
        console.print(f"Serving the demo feed at {feed_url}")
        # The demo's episodes are on this machine, which podflow refuses to reach unless allowed.
        status = run([feed_url], None, Settings(output_dir=output, allowed_networks=("127.0.0.1/32",)))
    console.print(f"Output in {output.resolve()}. Run again: nothing is redone; delete it to start over.")
    raise typer.Exit(status)


app.add_typer(limits_app, name="limits")


@app.command()
def schema() -> None:
    """Print the JSON Schema of metadata.json."""
    print(metadata_json_schema(), end="")
