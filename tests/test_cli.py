"""The `podflow` command line, run in-process on the real engine."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path

import pytest
import typer
from prefect.settings import PREFECT_API_URL
from rich.console import Console
from typer.testing import CliRunner

from flows import cli, cli_display
from flows.cli import app
from tasks.models import EpisodeMetadata, Ledger, Settings
from tasks.models.settings import GROUP_OF
from tests.conftest import DEMO_EPISODES
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer

runner = CliRunner()


@pytest.mark.usefixtures("prefect_api")
def test_ingest_prints_each_feeds_counts_and_failures_and_exits_non_zero_when_an_episode_failed(
    server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = DEMO_EPISODES[3]
    server.add(f"/{demo.slug}.mp3", demo.audio)
    feed_url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item(demo.title, guid="good", enclosure=f"{demo.slug}.mp3"),
                rss_item("Gone Episode", guid="gone", enclosure="gone.mp3"),
                rss_item("Text Only Post", guid="text"),
            ],
            title="CLI Show",
        ),
    )
    command = [
        "ingest",
        feed_url,
        "--output",
        str(tmp_path),
        "--download-workers",
        "2",
        "--allow-network",
        "127.0.0.0/8",
    ]

    result = runner.invoke(app, command)

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "CLI Show: 1 complete, 1 failed, 1 skipped" in lines, result.output
    assert f"  Gone Episode — download: {server.url('/gone.mp3')} returned HTTP 404 Not Found" in lines
    assert demo.title not in result.output and "Text Only Post" not in result.output  # no row per episode
    assert "DownloadError" not in result.output  # the kind of error, only with --verbose
    assert len(list(tmp_path.glob("*/episodes/*/metadata.json"))) == 1

    # Each row on one line: a console of its own, so no width outlives the test.
    monkeypatch.setattr(cli_display, "console", Console(width=250))
    again = runner.invoke(app, [*command, "--details", "--verbose"])
    assert again.exit_code == 1, again.output
    assert re.search(rf"{demo.title} .* already complete .* done .* done .* done", again.output), again.output
    assert re.search(r"Gone Episode .* failed .* failed .* - .* -", again.output)
    assert re.search(r"Text Only Post .* skipped .* - .* - .* -", again.output)
    assert "CLI Show: 1 already complete, 1 failed, 1 skipped" in again.output
    assert f"  Gone Episode — download: {server.url('/gone.mp3')} returned HTTP 404 Not Found [DownloadError]" in (
        again.output.splitlines()
    )

    (feed_folder,) = tmp_path.glob("*/ledger.sqlite")
    shown = runner.invoke(app, ["ledger", str(feed_folder.parent)])
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"{demo.title} .* done .* done .* done", shown.output)
    assert re.search(r"Gone Episode .* failed .* - .* - .* download: DownloadError: .*HTTP 404", shown.output)
    exported = Ledger.model_validate_json(runner.invoke(app, ["ledger", str(feed_folder.parent), "--json"]).output)
    assert exported.feed_url == feed_url and exported.episodes["gone"].stages["download"].status == "failed"
    assert exported.episodes["good"].complete
    missing = runner.invoke(app, ["ledger", str(tmp_path)])
    assert missing.exit_code == 2 and "holds no podflow ledger" in missing.output


def podflow(*args: str) -> subprocess.CompletedProcess[str]:
    """The `podflow` command in a process of its own, as a user runs it, its output as the terminal would show it;
    on the test harness's Prefect API."""
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import app; app()", *args],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.usefixtures("prefect_api")
def test_an_unreachable_feed_is_one_line_with_the_reason_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on: bound, never listening
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        feed_url = f"http://127.0.0.1:{port}/feed.xml"
        command = ["ingest", feed_url, "--output", str(tmp_path), "--allow-network", "127.0.0.1/32"]
        plain, verbose = podflow(*command), podflow(*command, "--verbose")

    for result in (plain, verbose):
        shown = result.stdout + result.stderr
        assert result.returncode == 1, shown
        said = [line for line in shown.splitlines() if "connection refused" in line.lower()]
        assert len(said) == 1 and said[0].startswith(f"{feed_url}: could not connect to 127.0.0.1:{port}"), shown
        assert "NoneType" not in shown and "0/0" not in shown and "Traceback" not in shown
        assert "Run failed" not in shown  # the feed's line says it
        assert os.listdir(tmp_path) == []  # no lock file, no feed folder
    assert plain.stdout.strip() == f"{feed_url}: could not connect to 127.0.0.1:{port}: connection refused"
    assert plain.stderr.strip() == ""
    assert "Error" not in plain.stdout  # no kinds of error without --verbose
    assert verbose.stdout.strip() == (
        f"{feed_url}: could not connect to 127.0.0.1:{port}: connection refused "
        "[FeedError ← ConnectionError ← MaxRetryError ← NewConnectionError ← ConnectionRefusedError]"
    )


@pytest.mark.usefixtures("prefect_api")
def test_ingest_of_a_missing_feed_says_why(server: FeedServer, tmp_path) -> None:
    url = server.add("/feed.xml", status=410)
    result = runner.invoke(app, ["ingest", url, "--output", str(tmp_path)])  # the feed given is reached: no allowing
    assert result.exit_code == 1
    assert "returned HTTP 410" in result.output


def test_schema_is_the_metadata_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema == EpisodeMetadata.model_json_schema()
    assert set(schema["required"]) >= {
        "podflow_version",
        "feed",
        "episode",
        "audio",
        "transcript",
        "transcribed_with",
        "processing",
    }
    assert schema["properties"]["schema_version"]["const"] == 2
    assert not {"etag", "last_modified", "paging_error"} & schema["$defs"]["FeedFacts"]["properties"].keys()
    assert "beam_size" in schema["$defs"]["TranscribedWith"]["properties"]


def test_invalid_settings_are_refused_before_anything_runs(tmp_path) -> None:
    result = runner.invoke(app, ["ingest", "http://127.0.0.1:9/feed.xml", "--download-workers", "0"])
    assert result.exit_code == 2  # a usage error, said as one: no traceback
    assert "--download-workers: Input should be greater than 0" in result.output


def test_every_setting_is_an_ingest_option() -> None:
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    spelled = {"output_dir": "output", "allowed_networks": "allow-network"}  # one CIDR an option, repeated
    options = {spelled.get(name, name).replace("_", "-") for name in GROUP_OF if name not in cli.WORKER_ONLY}
    missing = [name for name in options if f"--{name}" not in result.output]
    assert missing == [] and len(options) > 40
    assert "--slots" not in result.output  # a worker's, not a run's


def test_every_option_name_is_whole_at_80_columns() -> None:
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    ingest = typer.main.get_command(app).commands["ingest"]  # type: ignore[attr-defined]
    names = [name for param in ingest.params for name in (*param.opts, *param.secondary_opts) if name.startswith("-")]
    assert len(names) > len(GROUP_OF)
    cut = [name for name in names if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", result.output)]
    assert cut == [], result.output
    assert max(map(len, result.output.splitlines())) <= 80


def test_options_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[Settings] = []
    monkeypatch.setattr(cli, "run", lambda feed_urls, opml, settings, *shown: given.append(settings) or 0)
    result = runner.invoke(
        app,
        [
            "ingest",
            "http://127.0.0.1:9/feed.xml",
            "-o",
            "out",
            "--download-workers",
            "2",
            "--word-timestamps",
            "--no-published-fallback",
            "--published-types",
            "text/vtt",
            "--published-types",
            "text/plain",
            "--allow-network",
            "10.0.0.0/8",
            "--allow-network",
            "192.168.1.0/24",
            "--published-after",
            "2026-11-01",
            "--max-download-s",
            "60",
            "--transcriber",
            "whisper",
        ],
    )
    assert result.exit_code == 0, result.output
    [settings] = given
    assert (
        settings.output.output_dir.name == "out"
        and settings.download.download_workers == 2
        and settings.download.max_download_s == 60
    )
    assert settings.transcribe.word_timestamps is True and settings.transcribe.published_fallback is False
    assert settings.transcribe.published_types == ("text/vtt", "text/plain")
    assert settings.network.allowed_networks == (ip_network("10.0.0.0/8"), ip_network("192.168.1.0/24"))
    assert settings.selection.published_after == datetime(2026, 11, 1, tzinfo=UTC)
    assert settings.transcribe.transcriber == "whisper"
    assert (
        settings.transcribe.model == Settings().transcribe.model and settings.selection.newest is None
    )  # not given: the field's default

    runner.invoke(app, ["ingest", "http://127.0.0.1:9/feed.xml"])
    assert given[-1] == Settings()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--device", "tpu", "device: Input should be 'cpu', 'cuda' or 'auto'"),
        ("--allow-network", "not-a-network", "--allow-network: value is not a valid"),
        ("--download-workers", "many", "Invalid value for '--download-workers'"),
        ("--published-after", "yesterday", "Invalid value for '--published-after'"),
    ],
)
def test_an_invalid_value_is_a_usage_error(option: str, value: str, message: str) -> None:
    result = runner.invoke(app, ["ingest", "http://127.0.0.1:9/feed.xml", option, value])
    assert result.exit_code == 2 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.usefixtures("prefect_api")
def test_ingest_takes_many_feeds_and_an_opml_file(server: FeedServer, tmp_path) -> None:
    urls = []
    for demo in DEMO_EPISODES[:2]:
        server.add(f"/{demo.slug}.mp3", demo.audio)
        urls.append(
            server.add(
                f"/{demo.slug}.xml",
                rss([rss_item(demo.title, guid=demo.slug, enclosure=f"{demo.slug}.mp3")], title=f"Show of {demo.slug}"),
            )
        )
    opml = tmp_path / "feeds.opml"
    opml.write_text(f'<opml version="2.0"><body><outline text="x" xmlUrl="{urls[1]}"/></body></opml>')

    result = runner.invoke(
        app,
        ["ingest", urls[0], "--opml", str(opml), "--output", str(tmp_path / "out"), "--allow-network", "127.0.0.0/8"],
    )

    assert result.exit_code == 0, result.output
    assert all(f"Show of {demo.slug}" in result.output for demo in DEMO_EPISODES[:2])
    assert len(list((tmp_path / "out").glob("*/episodes/*/metadata.json"))) == 2

    again = runner.invoke(
        app,
        ["ingest", urls[0], "--opml", str(opml), "--output", str(tmp_path / "out"), "--allow-network", "127.0.0.0/8"],
    )
    assert again.exit_code == 0 and again.output.count("not modified since the last run") == 2, again.output


def test_ingest_needs_a_feed() -> None:
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 2 and "FEED_URL" in result.output


def test_the_console_keeps_warnings_and_drops_run_failures_but_a_bugs_traceback_with_verbose() -> None:
    def record(name: str, level: int, traceback: bool | None) -> logging.LogRecord:
        try:
            raise KeyError("a bug")
        except KeyError:
            exc_info = sys.exc_info() if traceback else (None, None, None) if traceback is False else None
        return logging.LogRecord(name, level, __file__, 1, "message", None, exc_info)

    quiet, verbose = cli_display.RunFailureFilter(verbose=False), cli_display.RunFailureFilter(verbose=True)
    warning = record("prefect.task_runs", logging.WARNING, None)  # a stage's warning: not a failure
    failed_state = record("prefect.task_runs", logging.ERROR, False)  # Prefect's exc_info=True with no exception
    bug = record("prefect.flow_runs", logging.ERROR, True)
    elsewhere = record("prefect.server", logging.ERROR, None)
    assert [quiet.filter(r) for r in (warning, failed_state, bug, elsewhere)] == [True, False, False, True]
    assert [verbose.filter(r) for r in (warning, failed_state, bug, elsewhere)] == [True, False, True, True]


def test_a_stage_gets_its_bar_with_its_first_episode() -> None:
    from flows.pipeline import Progress

    display = cli_display.StageDisplay()
    with display:
        display(Progress(total=0, settled=0, done={}, failed={}, planned={}, dropped={}))
        assert display.bars.tasks == []  # nothing to do: no bar, no 0/0
        display(Progress(total=2, settled=0, done={}, failed={}, planned={"metadata": 2}, dropped={}))
        display(Progress(total=2, settled=1, done={"metadata": 1}, failed={}, planned={"metadata": 2}, dropped={}))
        assert [(bar.description, bar.completed, bar.total) for bar in display.bars.tasks] == [("metadata", 1, 2)]


@pytest.mark.usefixtures("prefect_api")
def test_a_dry_run_says_what_a_run_would_do_and_fetches_no_audio(server: FeedServer, tmp_path: Path) -> None:
    first, second = DEMO_EPISODES[:2]
    for demo in (first, second):
        server.add(f"/{demo.slug}.mp3", demo.audio)
    items = [
        rss_item(
            demo.title,
            guid=demo.slug,
            enclosure=f"{demo.slug}.mp3",  # its declared length: 1 byte
            published=f"Mon, 0{day} Nov 2026 08:00:00 GMT",
            extra="<itunes:duration>00:02:00</itunes:duration>",
        )
        for day, demo in ((2, first), (9, second))
    ]
    feed_url = server.add("/feed.xml", rss(items, title="Dry <b>Show</b>"))
    out = tmp_path / "out"
    options = ["--output", str(out), "--allow-network", "127.0.0.0/8"]

    before = runner.invoke(app, ["ingest", "--dry-run", feed_url, *options], env={"COLUMNS": "250"})

    assert before.exit_code == 0, before.output
    assert "Dry <b>Show</b>" in before.output  # a stranger's markup shown as text
    said = " ".join(before.output.split())  # as one line, however the console wrapped it
    assert "2 episodes in the feed, 2 chosen: 2 to process (2 B and 4 min of audio declared), 0 done" in said
    assert said.count("download, transcribe, metadata") == 2
    assert sum(server.count(f"/{demo.slug}.mp3") for demo in (first, second)) == 0
    assert not out.exists()  # nothing written

    ran = runner.invoke(app, ["ingest", feed_url, *options, "--newest", "1"])
    assert ran.exit_code == 0, ran.output
    fetched = sum(server.count(f"/{demo.slug}.mp3") for demo in (first, second))

    after = runner.invoke(app, ["ingest", "--dry-run", feed_url, *options], env={"COLUMNS": "250"})
    assert after.exit_code == 0, after.output
    said = " ".join(after.output.split())
    assert "1 to process" in said and "1 done" in said
    assert said.count("download, transcribe, metadata") == 1
    assert sum(server.count(f"/{demo.slug}.mp3") for demo in (first, second)) == fetched

    unreachable = runner.invoke(app, ["ingest", "--dry-run", "http://127.0.0.1:9/feed.xml", *options])
    assert unreachable.exit_code == 1 and "127.0.0.1:9" in unreachable.output
