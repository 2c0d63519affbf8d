"""The `podflow` command line, run in-process on the real engine."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path

import pytest
import typer
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
def test_ingest_prints_the_summary_and_exits_non_zero_when_an_episode_failed(
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
            ],
            title="CLI Show",
        ),
    )

    result = runner.invoke(
        app,
        ["ingest", feed_url, "--output", str(tmp_path), "--download-workers", "2", "--allow-network", "127.0.0.0/8"],
    )

    assert result.exit_code == 1, result.output
    assert "CLI Show" in result.output
    assert "Gone Episode" in result.output and "HTTP 404" in result.output
    assert "1 complete, 1 failed" in result.output
    assert len(list(tmp_path.glob("*/episodes/*/metadata.json"))) == 1

    (feed_folder,) = tmp_path.glob("*/ledger.sqlite")
    monkeypatch.setattr(cli_display.console, "width", 250)  # each row on one line
    shown = runner.invoke(app, ["ledger", str(feed_folder.parent)])
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"{demo.title} .* done .* done .* done", shown.output)
    assert re.search(r"Gone Episode .* failed .* - .* - .* download: DownloadError: .*HTTP 404", shown.output)
    exported = Ledger.model_validate_json(runner.invoke(app, ["ledger", str(feed_folder.parent), "--json"]).output)
    assert exported.feed_url == feed_url and exported.episodes["gone"].stages["download"].status == "failed"
    assert exported.episodes["good"].complete
    missing = runner.invoke(app, ["ledger", str(tmp_path)])
    assert missing.exit_code == 2 and "holds no podflow ledger" in missing.output


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
    assert "download_workers: Input should be greater than 0" in result.output


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
    monkeypatch.setattr(cli, "run", lambda feed_urls, opml, settings: given.append(settings) or 0)
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
        ("--allow-network", "not-a-network", "allowed_networks.0: "),
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
