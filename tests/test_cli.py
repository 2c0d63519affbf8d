"""The `podflow` command line, run in-process on the real engine."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.feedserver import FeedServer
from tasks.models import EpisodeMetadata, Settings
from tests.conftest import DEMO_EPISODES
from tests.feeds import rss, rss_item

runner = CliRunner()


@pytest.mark.usefixtures("prefect_api")
def test_ingest_prints_the_summary_and_exits_non_zero_when_an_episode_failed(server: FeedServer, tmp_path) -> None:
    demo = DEMO_EPISODES[3]
    server.add(f"/{demo.slug}.mp3", demo.audio)
    feed_url = server.add("/feed.xml", rss([
        rss_item(demo.title, guid="good", enclosure=f"{demo.slug}.mp3"),
        rss_item("Gone Episode", guid="gone", enclosure="gone.mp3"),
    ], title="CLI Show"))

    result = runner.invoke(app, ["ingest", feed_url, "--output", str(tmp_path), "--download-workers", "2",
                                  "--allow-network", "127.0.0.0/8"])

    assert result.exit_code == 1, result.output
    assert "CLI Show" in result.output
    assert "Gone Episode" in result.output and "HTTP 404" in result.output
    assert "1 complete, 1 failed" in result.output
    assert len(list(tmp_path.glob("*/episodes/*/metadata.json"))) == 1


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
    assert set(schema["required"]) >= {"feed", "episode", "audio", "transcript", "processing"}


def test_invalid_settings_are_refused_before_anything_runs(tmp_path) -> None:
    result = runner.invoke(app, ["ingest", "http://127.0.0.1:9/feed.xml", "--download-workers", "0"])
    assert result.exit_code == 2  # a usage error, said as one: no traceback
    assert "download_workers: Input should be greater than 0" in result.output


def test_every_setting_is_an_ingest_option() -> None:
    result = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"})
    spelled = {"output_dir": "output", "allowed_networks": "allow-network"}  # one CIDR an option, repeated
    options = {spelled.get(name, name).replace("_", "-") for name in Settings.model_fields}
    missing = [name for name in options if f"--{name}" not in result.output]
    assert missing == []


@pytest.mark.usefixtures("prefect_api")
def test_ingest_takes_many_feeds_and_an_opml_file(server: FeedServer, tmp_path) -> None:
    urls = []
    for demo in DEMO_EPISODES[:2]:
        server.add(f"/{demo.slug}.mp3", demo.audio)
        urls.append(server.add(f"/{demo.slug}.xml", rss([rss_item(demo.title, guid=demo.slug, enclosure=f"{demo.slug}.mp3")],
                                                        title=f"Show of {demo.slug}")))
    opml = tmp_path / "feeds.opml"
    opml.write_text(f'<opml version="2.0"><body><outline text="x" xmlUrl="{urls[1]}"/></body></opml>')

    result = runner.invoke(app, ["ingest", urls[0], "--opml", str(opml), "--output", str(tmp_path / "out"),
                                  "--allow-network", "127.0.0.0/8"])

    assert result.exit_code == 0, result.output
    assert all(f"Show of {demo.slug}" in result.output for demo in DEMO_EPISODES[:2])
    assert len(list((tmp_path / "out").glob("*/episodes/*/metadata.json"))) == 2

    again = runner.invoke(app, ["ingest", urls[0], "--opml", str(opml), "--output", str(tmp_path / "out"),
                                  "--allow-network", "127.0.0.0/8"])
    assert again.exit_code == 0 and again.output.count("not modified since the last run") == 2, again.output


def test_ingest_needs_a_feed() -> None:
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 2 and "FEED_URL" in result.output
