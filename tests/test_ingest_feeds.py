"""Many feeds in one pipeline, incremental runs (conditional GET, selection options) and what the Prefect UI shows,
on the real Prefect engine, a real HTTP server and the real model."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from markdown_it import MarkdownIt
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.states import State

from flows.ingest import ingest_feeds
from flows.summary import markdown_text, summary_markdown
from tasks.episode_id import normalise_url
from tasks.feed_index import FEED_ID, INDEX
from tasks.folder_names import slugify
from tasks.models import EpisodeOutcome, IngestReport, RunReport, Settings
from tasks.stages import STAGES
from tasks.store import FeedStore
from tests.conftest import DEMO_EPISODES, DemoEpisode
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.intervals import overlaps
from tests.ledgers import write_old_ledger

pytestmark = pytest.mark.usefixtures("prefect_api")


def serve_feed(
    server: FeedServer,
    path: str,
    episodes: list[DemoEpisode],
    title: str = "Test Show",
    guids: bool = True,
    query: str = "",
    titles: dict[str, str] | None = None,
    **options: object,
) -> str:
    """A feed of demo episodes at `path`, each enclosure at /<slug>.mp3 (served with `options`)."""
    items = []
    for demo in episodes:
        server.add(f"/{demo.slug}.mp3", demo.audio, content_type="audio/mpeg", **options)
        items.append(
            rss_item(
                (titles or {}).get(demo.slug, demo.title),
                guid=f"demo-{demo.slug}" if guids else None,
                enclosure=server.url(f"/{demo.slug}.mp3{query}"),
                published=demo.published,
            )
        )
    return server.add(path, rss(items, title=title), content_type="application/rss+xml")


def run(settings: Settings, feeds: list[str] | None = None, opml: str | None = None) -> tuple[State, RunReport]:
    state = ingest_feeds(feeds, opml, settings, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, RunReport), report
    return state, report


def statuses(report: IngestReport) -> dict[str, str]:
    return {e.title: e.status for e in report.episodes}


def audio_hits(server: FeedServer) -> int:
    return sum(1 for hit in server.hits if hit.path.endswith(".mp3") and hit.method == "GET")


def flow_run_id(state: State) -> UUID:
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


def test_many_feeds_flow_through_one_pipeline_whose_limits_hold_across_feeds(
    server: FeedServer, settings: Settings
) -> None:
    first = serve_feed(server, "/first.xml", DEMO_EPISODES[:2], title="First Show", delay_s=0.3)
    second = serve_feed(server, "/second.xml", DEMO_EPISODES[2:], title="Second Show", delay_s=0.3)
    missing = server.url("/missing.xml")
    broken = server.add("/broken.xml", b"<html><body>Moved, sorry</body></html>", content_type="text/html")
    settings = settings.but(download_workers=1, transcribe_workers=1, metadata_workers=1)

    state, report = run(settings, [first, second, missing, broken])

    assert state.is_failed() and state.message == "2 of 4 feeds failed"
    by_url = {feed.feed_url: feed for feed in report.feeds}
    assert [by_url[url].status for url in (first, second, missing, broken)] == [
        "fetched",
        "fetched",
        "failed",
        "failed",
    ]
    assert by_url[missing].error == f"FeedError: {missing} returned HTTP 404 Not Found"
    assert "is not a podcast feed" in (by_url[broken].error or "")
    assert list(statuses(by_url[first]).values()) == list(statuses(by_url[second]).values()) == ["complete"] * 2
    # One worker per stage for the whole run, not one per feed: no two episodes of either feed ever overlapped in
    # a stage, while the stages themselves did overlap (a pipeline, not stage after stage).
    entries = [
        entry
        for url in (first, second)
        for entry in FeedStore.for_feed(settings.output.output_dir, url).read_ledger().episodes.values()
    ]
    for stage in STAGES:
        assert overlaps([(e.stages[stage].started, e.stages[stage].ended) for e in entries]) == 1, stage
    all_stages = [(e.stages[stage].started, e.stages[stage].ended) for e in entries for stage in STAGES]
    assert overlaps(all_stages) > 1


def test_an_opml_file_adds_its_feeds_each_once(server: FeedServer, settings: Settings, tmp_path: Path) -> None:
    first = serve_feed(server, "/first.xml", DEMO_EPISODES[:1], title="First Show")
    second = serve_feed(server, "/second.xml", DEMO_EPISODES[1:2], title="Second Show")
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(f"""<?xml version="1.0"?><opml version="2.0"><head><title>Ours</title></head><body>
        <outline text="News"><outline text="Deep">
            <outline type="rss" text="First" xmlUrl="{first}"/></outline></outline>
        <outline type="rss" text="Second" xmlUrl="{second}"/></body></opml>""")

    state, report = run(settings, [first], opml=str(opml))

    assert state.is_completed()
    assert [(feed.feed_title, feed.count("complete")) for feed in report.feeds] == [
        ("First Show", 1),
        ("Second Show", 1),
    ]
    assert server.count("/first.xml") == 1


def test_an_unreadable_opml_fails_the_run_but_not_the_feeds_listed_beside_it(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    state = ingest_feeds(opml=str(tmp_path / "nowhere.opml"), settings=settings, return_state=True)
    assert state.is_failed() and "nowhere.opml" in (state.message or "")

    listed = serve_feed(server, "/listed.xml", DEMO_EPISODES[:1])
    state, report = run(settings, [listed], opml=str(tmp_path / "nowhere.opml"))

    assert state.is_failed() and "nowhere.opml" in (state.message or "")
    assert report.count("complete") == 1 and "nowhere" in report.source_errors[0]


def test_one_feed_given_twice_is_ingested_once_and_another_key_is_another_feed(
    server: FeedServer, settings: Settings
) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:1])
    # Listed twice: one folder, so one feed (not a FeedBusyError with itself). With another key: for all podflow can
    # tell, another subscriber's feed, in a folder of its own; neither is dropped.
    state, report = run(settings, [f"{feed_url}?key=old", f" {feed_url}?key=old ", f"{feed_url}?key=new"])
    assert state.is_completed(), state.message
    assert [feed.count("complete") for feed in report.feeds] == [1, 1]
    assert report.feeds[0].feed_dir != report.feeds[1].feed_dir


def test_a_feed_folder_an_older_podflow_named_is_taken_over_and_nothing_is_redone(
    server: FeedServer, settings: Settings
) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:1])
    run(settings, [feed_url])
    # Leave the folders as an older podflow named them: slug + 8 hex of the (masked) URL, episodes with 8 hex.
    store = FeedStore.for_feed(settings.output.output_dir, feed_url)
    ledger = store.read_ledger()
    entries = {
        i: e.model_copy(update={"folder": f"{e.folder}-{hashlib.sha256(i.encode()).hexdigest()[:8]}"})
        for i, e in ledger.episodes.items()
    }
    for entry in ledger.episodes.values():
        store.folder(entry).path.rename(store.feed_dir / "episodes" / entries[entry.episode_id].folder)
    write_old_ledger(store, ledger.model_copy(update={"episodes": entries}))
    parts = urlsplit(feed_url)
    old_name = f"{slugify(parts.netloc + ' ' + parts.path, 40)}-{hashlib.sha256(feed_url.encode()).hexdigest()[:8]}"
    (store.feed_dir / FEED_ID).unlink()
    shutil.rmtree(settings.output.output_dir / INDEX)
    store.feed_dir.rename(settings.output.output_dir / old_name)

    state, report = run(settings, [feed_url])

    assert state.is_completed(), state.message
    assert report.feeds[0].status == "not modified"  # its ledger found, every episode in it complete
    assert audio_hits(server) == 1
    # The run lock's file gone with the run; the feed named by its title again, its episodes by theirs.
    assert sorted(os.listdir(settings.output.output_dir)) == [INDEX, "test-show"]
    assert report.feeds[0].feed_dir == store.feed_dir
    assert FeedStore.for_feed(settings.output.output_dir, feed_url).read_ledger().episodes == ledger.episodes


def test_a_feed_whose_folder_is_a_symbolic_link_fails_alone_and_nothing_goes_through_the_link(
    server: FeedServer, settings: Settings, tmp_path: Path
) -> None:
    linked = serve_feed(server, "/linked.xml", DEMO_EPISODES[:1])
    fine = serve_feed(server, "/fine.xml", DEMO_EPISODES[1:2])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "theirs.part").write_text("theirs")
    settings.output.output_dir.mkdir(parents=True)
    FeedStore.for_feed(settings.output.output_dir, linked).feed_dir.symlink_to(elsewhere)

    state, report = run(settings, [linked, fine])

    assert state.is_failed() and state.message == "1 of 2 feeds failed"
    assert "is a symbolic link; podflow never follows links inside its output folder" in (report.feeds[0].error or "")
    assert report.feeds[1].count("complete") == 1
    assert os.listdir(elsewhere) == ["theirs.part"]


def test_a_feed_whose_ledger_is_broken_fails_alone(server: FeedServer, settings: Settings) -> None:
    broken = serve_feed(server, "/broken.xml", DEMO_EPISODES[:1])
    run(settings, [broken])
    write_old_ledger(FeedStore.for_feed(settings.output.output_dir, broken), "{ not json")
    serve_feed(server, "/broken.xml", DEMO_EPISODES[:2])  # a new version: the ledger must be read
    fine = serve_feed(server, "/fine.xml", DEMO_EPISODES[2:3])

    state, report = run(settings, [broken, fine])

    assert state.is_failed() and state.message == "1 of 2 feeds failed"
    assert report.feeds[0].status == "failed" and "ValidationError" in (report.feeds[0].error or "")
    assert report.feeds[1].count("complete") == 1


def test_an_unchanged_feed_ends_at_its_304_and_a_changed_one_brings_only_its_new_episodes(
    server: FeedServer, settings: Settings
) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:2])
    run(settings, [feed_url])

    state, report = run(settings, [feed_url])

    assert state.is_completed()
    [feed] = report.feeds
    assert feed.status == "not modified" and feed.episodes == () and feed.feed_title == "Test Show"
    last_fetch = [hit for hit in server.hits if hit.path == "/feed.xml"][-1]
    assert last_fetch.headers.get("If-None-Match")
    assert audio_hits(server) == 2

    serve_feed(server, "/feed.xml", DEMO_EPISODES[:3])
    state, report = run(settings, [feed_url])

    assert state.is_completed()
    assert list(statuses(report.feeds[0]).values()) == ["already complete", "already complete", "complete"]
    assert audio_hits(server) == 3


def test_a_failed_episode_is_retried_though_the_feed_is_unchanged(server: FeedServer, settings: Settings) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:2])
    del server.routes[f"/{DEMO_EPISODES[1].slug}.mp3"]
    state, _ = run(settings, [feed_url])
    assert state.is_failed()

    server.add(f"/{DEMO_EPISODES[1].slug}.mp3", DEMO_EPISODES[1].audio, content_type="audio/mpeg")
    state, report = run(settings, [feed_url])

    # Sending the feed's ETag would have got a 304 and left the failed episode for good.
    assert "If-None-Match" not in [hit for hit in server.hits if hit.path == "/feed.xml"][-1].headers
    assert state.is_completed()
    assert list(statuses(report.feeds[0]).values()) == ["already complete", "complete"]
    assert server.count(f"/{DEMO_EPISODES[0].slug}.mp3") == 1


def test_renamed_titles_and_tracking_parameters_redo_nothing(server: FeedServer, settings: Settings) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:2], guids=False)
    _, before = run(settings, [feed_url])

    serve_feed(
        server,
        "/feed.xml",
        DEMO_EPISODES[:2],
        guids=False,
        query="?utm_source=rss&aid=feed&ts=1764000000",
        titles={demo.slug: f"{demo.title} (remastered)" for demo in DEMO_EPISODES},
    )
    state, after = run(settings, [feed_url])

    assert state.is_completed()
    assert [e.status for e in after.feeds[0].episodes] == ["already complete"] * 2
    assert [e.folder for e in after.feeds[0].episodes] == [e.folder for e in before.feeds[0].episodes]
    assert audio_hits(server) == 2


def test_newest_and_published_after_choose_episodes_and_a_new_choice_refetches_the_feed(
    server: FeedServer, settings: Settings
) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES)
    newest_one = settings.but(newest=1)
    _, report = run(newest_one, [feed_url])
    assert list(statuses(report.feeds[0])) == [DEMO_EPISODES[-1].title]

    later = Settings.of(
        output_dir=settings.output.output_dir,
        published_after=datetime(2026, 11, 5),  # read as UTC
        allowed_networks=settings.network.allowed_networks,
    )
    state, report = run(later, [feed_url])

    assert state.is_completed() and report.feeds[0].status == "fetched"  # a 304 would have hidden the other two
    assert statuses(report.feeds[0]) == {
        demo.title: "already complete" if demo is DEMO_EPISODES[-1] else "complete" for demo in DEMO_EPISODES[1:]
    }
    assert server.count(f"/{DEMO_EPISODES[0].slug}.mp3") == 0


def test_skip_back_catalogue_marks_the_first_run_seen_and_takes_only_later_episodes(
    server: FeedServer, settings: Settings
) -> None:
    settings = settings.but(skip_back_catalogue=True)
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:2])

    state, report = run(settings, [feed_url])

    assert state.is_completed()
    assert [e.status for e in report.feeds[0].episodes] == ["skipped"] * 2
    assert "skip_back_catalogue" in (report.feeds[0].episodes[0].error or "")
    assert audio_hits(server) == 0

    serve_feed(server, "/feed.xml", DEMO_EPISODES[:3])
    state, report = run(settings, [feed_url])

    assert list(statuses(report.feeds[0]).values()) == ["skipped", "skipped", "complete"]
    assert audio_hits(server) == 1


def test_skip_back_catalogue_takes_the_first_episode_of_a_feed_that_started_empty(
    server: FeedServer, settings: Settings
) -> None:
    settings = settings.but(skip_back_catalogue=True)
    feed_url = serve_feed(server, "/feed.xml", [])
    run(settings, [feed_url])

    serve_feed(server, "/feed.xml", DEMO_EPISODES[:1])
    state, report = run(settings, [feed_url])

    assert state.is_completed() and list(statuses(report.feeds[0]).values()) == ["complete"]


def test_ledgers_of_podflow_0_1_keep_their_guidless_episodes(server: FeedServer, settings: Settings) -> None:
    """podflow 0.1 named a GUID-less episode by its whole normalised enclosure URL; its ledger is re-keyed."""
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:2], guids=False, query="?id=7")
    _, before = run(settings, [feed_url])
    store = FeedStore.for_feed(settings.output.output_dir, feed_url)
    ledger = store.read_ledger()
    old_ids = {
        entry.episode_id: hashlib.sha256(normalise_url(entry.audio.source_url).encode()).hexdigest()[:32]
        for entry in ledger.episodes.values()
        if entry.audio
    }
    write_old_ledger(
        store,
        ledger.model_copy(
            update={
                "validators": None,
                "episodes": {
                    f"sha256:{old_ids[i]}": e.model_copy(update={"episode_id": f"sha256:{old_ids[i]}"})
                    for i, e in ledger.episodes.items()
                },
            }
        ),
    )

    state, after = run(settings, [feed_url])

    assert state.is_completed()
    assert [e.status for e in after.feeds[0].episodes] == ["already complete"] * 2
    assert [e.folder for e in after.feeds[0].episodes] == [e.folder for e in before.feeds[0].episodes]
    assert audio_hits(server) == 2


def test_the_ui_shows_named_task_runs_a_table_and_a_summary(server: FeedServer, settings: Settings) -> None:
    feed_url = serve_feed(server, "/feed.xml", DEMO_EPISODES[:2])
    missing = server.url("/gone.xml")
    state, report = run(settings, [feed_url, missing])

    with get_client(sync_client=True) as client:
        flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id(state)]))
        task_runs = client.read_task_runs(flow_run_filter=flow_filter)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)]))
        )

    names = {run.name for run in task_runs}
    for demo in DEMO_EPISODES[:2]:
        slug = demo.title.lower().replace(":", "").replace(" ", "-")
        date = datetime.strptime(demo.published, "%a, %d %b %Y %H:%M:%S %Z").date().isoformat()
        assert {f"{stage} · {date} · {slug}" for stage in STAGES} <= names
    by_key = {artifact.key: artifact for artifact in artifacts if artifact.key}
    rows = by_key["podflow-episodes"].data
    assert isinstance(rows, str) and "Test Show" in rows and "feed failed" in rows and "HTTP 404" in rows
    summary = by_key["podflow-summary"].data
    assert isinstance(summary, str)
    assert "2 feeds, 2 episodes" in summary and "1 fetched, 1 failed" in summary and "2 complete" in summary
    audio_mb = sum(len(demo.audio) for demo in DEMO_EPISODES[:2]) / 1e6
    assert f"{audio_mb:,.1f} MB" in summary
    assert "### Failures (1)" in summary and "gone\\.xml returned HTTP 404" in summary
    assert any(a.type == "progress" and a.data == 100.0 for a in artifacts)
    assert report.feeds[0].episodes[0].audio_duration_s and report.feeds[0].episodes[0].seconds.keys() == set(STAGES)


HOSTILE_MARKUP = [
    "![](http://127.0.0.1:9/pixel.png) loads on view",
    "[click](javascript:alert(1)) and [ref][x] <a href='javascript:alert(2)'>here</a>",
    "<img src=x onerror=alert(3)> <script>alert(4)</script> <http://127.0.0.1:9/auto> www.example.org",
    "[x]: http://127.0.0.1:9/defined &lt;img src=y&gt;",
]


def test_feed_strings_in_the_table_artifact_render_as_text_and_read_as_written(
    server: FeedServer, settings: Settings
) -> None:
    """Prefect's V1 UI renders each table cell as markdown: rendered here as CommonMark with raw HTML allowed (the
    most a renderer could make of it), no cell forms a link, an image or a tag."""
    items = [
        rss_item(title, guid=f"g{n}", enclosure=f"gone-{n}.mp3?<img src=z>") for n, title in enumerate(HOSTILE_MARKUP)
    ]
    feed_url = server.add("/feed.xml", rss(items, title=HOSTILE_MARKUP[0]))
    state, report = run(settings, [feed_url])

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)]))
        )
    (table,) = [artifact for artifact in artifacts if artifact.key == "podflow-episodes"]
    assert isinstance(table.data, str)
    rows = json.loads(table.data)
    cells = [str(cell) for row in rows for cell in row.values()]
    renderer = MarkdownIt("commonmark", {"html": True})
    formatting = {"p", "ul", "ol", "li", "em", "strong", "code", "pre", "blockquote", "hr", "br"}
    for cell in cells:
        html = renderer.render(cell)
        assert set(re.findall(r"</?([a-z][a-z0-9]*)", html)) <= formatting, (cell, html)  # no link, image or tag
    titles = sorted(" ".join(e.title.split()) for e in report.feeds[0].episodes)  # as feedparser gave them
    assert sorted(row["episode"].replace("\u200b", "") for row in rows) == titles
    assert {row["feed"].replace("\u200b", "") for row in rows} == {HOSTILE_MARKUP[0]}
    assert all("HTTP 404" in row["error"] for row in rows)


def test_the_summary_shows_hostile_titles_as_text() -> None:
    title = "<script>alert(1)</script> | **bold** [link](javascript:x)\n# heading"
    escaped = markdown_text(title)
    assert "<" not in escaped.replace("\\<", "") and "\n" not in escaped and "](" not in escaped
    moment = datetime(2026, 11, 27, tzinfo=UTC)
    report = RunReport(
        started=moment,
        ended=moment,
        feeds=(
            IngestReport(
                feed_url="https://x/feed.xml",
                feed_title=title,
                feed_dir=Path("/tmp/x"),
                episodes=(EpisodeOutcome(episode_id="e", title=title, folder="f", status="failed", error=title),),
            ),
        ),
    )
    summary = summary_markdown(report)
    # The summary's title and its failures heading; the feed's "# heading" is escaped.
    assert len([line for line in summary.splitlines() if line.startswith("#")]) == 2
    assert "<script>" not in summary and "0 s" in summary
