"""The ingest flow on the real Prefect engine, a real HTTP server and the real model."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.states import State

from flows.ingest import ingest_feed
from tasks.folder_names import slugify
from tasks.models import EpisodeMetadata, IngestReport, Ledger, Settings, TranscribedWith
from tasks.store import FeedStore
from tests.conftest import DEMO_DIR, DEMO_EPISODES, LOOPBACK
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.intervals import overlaps
from tests.speech import word_error_rate

pytestmark = pytest.mark.usefixtures("prefect_api")
# The feed's HTTP validators (the ledger keeps them) and what a run's paging left unread: in neither file.
RUN_STATE = {"etag", "last_modified", "paging_error"}


class DemoRun(NamedTuple):
    feed_url: str
    settings: Settings
    state: State
    report: IngestReport


def run(feed_url: str, settings: Settings) -> tuple[State, IngestReport]:
    state = ingest_feed(feed_url, settings, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport), report
    return state, report


def ledger_of(feed_url: str, settings: Settings) -> Ledger:
    return FeedStore.for_feed(settings.output.output_dir, feed_url).read_ledger()


def demo_feed(server: FeedServer, delays: dict[str, float] | None = None) -> str:
    for demo in DEMO_EPISODES:
        server.add(f"/{demo.slug}.mp3", demo.audio, delay_s=(delays or {}).get(demo.slug, 0.0))
    return server.add("/feed.xml", (DEMO_DIR / "feed.xml").read_bytes())


def flow_run_id(state: State) -> UUID:
    assert state.state_details.flow_run_id is not None
    return state.state_details.flow_run_id


@pytest.fixture(scope="module")
def demo_run(prefect_api: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One run of the demo feed at the default settings, for the tests that only read what it left: its files and
    ledger, its task runs and artifacts. Tests that run the feed again or change it make their own."""
    with FeedServer() as server:
        settings = Settings.of(
            output_dir=tmp_path_factory.mktemp("demo-run") / "out", retry_backoff_s=0.01, allowed_networks=LOOPBACK
        )
        feed_url = demo_feed(server)
        yield DemoRun(feed_url, settings, *run(feed_url, settings))


def test_demo_feed_end_to_end(demo_run: DemoRun) -> None:
    feed_url, settings, state, report = demo_run

    assert state.is_completed()
    assert [e.status for e in report.episodes] == ["complete"] * 4
    assert report.feed_dir.name == "the-podflow-demo-show"
    for demo, outcome in zip(DEMO_EPISODES, report.episodes):
        published = datetime.strptime(demo.published, "%a, %d %b %Y %H:%M:%S GMT")
        assert outcome.folder == f"{published:%Y-%m-%d}-{slugify(demo.title)}"  # no id: none shares its name
        folder = report.feed_dir / "episodes" / outcome.folder
        assert sorted(p.name for p in folder.iterdir()) == [
            "audio.mp3",
            "metadata.json",
            "transcript.json",
            "transcript.srt",
            "transcript.txt",
            "transcript.vtt",
        ]
        document = EpisodeMetadata.model_validate_json((folder / "metadata.json").read_bytes())
        assert document.episode.title == demo.title
        assert document.audio.sha256 == hashlib.sha256(demo.audio).hexdigest()
        assert document.audio.codec.startswith("mp3") and document.audio.sample_rate == 22050
        assert 10 < document.audio.duration_s < 20
        assert document.transcript.word_count > 20
        assert document.processing.flow_run_id == str(flow_run_id(state))
        timings = document.processing.stages
        assert timings["download"].ended <= timings["transcribe"].started <= timings["transcribe"].ended
        assert timings["transcribe"].ended <= timings["metadata"].started
        assert word_error_rate(demo.script, (folder / "transcript.txt").read_text()) < 0.3
        assert document.podflow_version == importlib.metadata.version("podflow")
        assert document.transcribed_with == TranscribedWith.of(settings.transcribe)
        assert document.transcribed_with is not None and document.transcribed_with.transcriber == "faster-whisper"
        written = json.loads((folder / "metadata.json").read_text())
        assert written["schema_version"] == 2 and not RUN_STATE & written["feed"].keys()
    saved = json.loads((report.feed_dir / "feed.json").read_text())
    assert saved["title"] == "The podflow Demo Show" and not RUN_STATE & saved.keys()
    assert ledger_of(feed_url, settings).validators is not None
    assert all(entry.complete for entry in ledger_of(feed_url, settings).episodes.values())


def test_task_runs_belong_to_the_flow_run_and_record_lineage(demo_run: DemoRun) -> None:
    state = demo_run.state
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id(state)])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id(state)]))
        )

    by_stage: dict[str, list] = {}
    for task_run in runs:
        by_stage.setdefault(task_run.name.split(" ")[0].split("-")[0], []).append(task_run)
    assert {stage: len(r) for stage, r in by_stage.items()} == {
        "fetch": 1,
        "download": 4,
        "transcribe": 4,
        "metadata": 4,
    }
    assert all(r.tags == [] for r in runs)  # no stage limit exists, so no tag (see flows.ingest.tagged)
    download_ids = {r.id for r in by_stage["download"]}
    transcribe_ids = {r.id for r in by_stage["transcribe"]}
    for task_run in by_stage["transcribe"]:
        assert len(audio := {i.id for i in task_run.task_inputs["audio"]}) == 1 and audio <= download_ids
    for task_run in by_stage["metadata"]:
        assert len(transcript := {i.id for i in task_run.task_inputs["transcript"]}) == 1
        assert transcript <= transcribe_ids
    table = next(a for a in artifacts if a.type == "table")
    assert table.key == "podflow-episodes"
    assert "complete" in str(table.data)
    assert any(a.type == "progress" and a.data == 100.0 for a in artifacts)


def test_a_rerun_downloads_and_transcribes_nothing(server: FeedServer, settings: Settings) -> None:
    feed_url = demo_feed(server)
    run(feed_url, settings)
    first = ledger_of(feed_url, settings)
    # A new version of the feed (a new ETag), so the second run reads it instead of ending at a 304.
    server.add("/feed.xml", (DEMO_DIR / "feed.xml").read_bytes() + b"<!-- rebuilt -->")

    state, report = run(feed_url, settings)

    assert state.is_completed()
    assert [e.status for e in report.episodes] == ["already complete"] * 4
    assert all(server.count(f"/{demo.slug}.mp3") == 1 for demo in DEMO_EPISODES)
    after = ledger_of(feed_url, settings)
    assert after.episodes == first.episodes  # no stage ran again
    assert after.validators != first.validators


def test_one_broken_episode_fails_alone_and_a_rerun_finishes_what_was_left(
    server: FeedServer, settings: Settings
) -> None:
    for demo in DEMO_EPISODES[:2]:
        server.add(f"/{demo.slug}.mp3", demo.audio)
    server.add("/corrupt.mp3", b"\xff\xfb" + b"definitely not mpeg audio" * 200)
    feed_url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item(DEMO_EPISODES[0].title, guid="ok-1", enclosure=f"{DEMO_EPISODES[0].slug}.mp3"),
                rss_item("Missing audio", guid="missing", enclosure="missing.mp3"),
                rss_item("Corrupt audio", guid="corrupt", enclosure="corrupt.mp3"),
                rss_item("Just an announcement", guid="text-only"),
                rss_item(DEMO_EPISODES[1].title, guid="ok-2", enclosure=f"{DEMO_EPISODES[1].slug}.mp3"),
            ]
        ),
    )

    state, report = run(feed_url, settings)

    assert state.is_failed()
    assert state.message == "2 of 5 episodes failed (2 complete, 1 skipped)"
    status = {e.episode_id: e for e in report.episodes}
    assert status["ok-1"].status == status["ok-2"].status == "complete"
    assert status["missing"].status == "failed" and status["missing"].stages == {"download": "failed"}
    assert "HTTP 404" in (status["missing"].error or "")
    assert status["corrupt"].status == "failed"
    assert status["corrupt"].stages == {"download": "done", "transcribe": "failed"}
    assert "AudioDecodeError" in (status["corrupt"].error or "")
    assert status["text-only"].status == "skipped"
    ledger = ledger_of(feed_url, settings).episodes
    assert "HTTP 404" in (ledger["missing"].stages["download"].error or "")
    assert server.count("/missing.mp3") == 1  # a 404 is not retried

    server.add("/missing.mp3", DEMO_EPISODES[2].audio)  # the publisher fixes the enclosure
    state, report = run(feed_url, settings)

    status = {e.episode_id: e for e in report.episodes}
    assert status["missing"].status == "complete"
    assert status["ok-1"].status == status["ok-2"].status == "already complete"
    assert status["corrupt"].status == "failed"
    assert server.count("/corrupt.mp3") == 1  # its verified download was kept; only transcription was retried
    assert all(server.count(f"/{demo.slug}.mp3") == 1 for demo in DEMO_EPISODES[:2])


def test_a_feed_that_fails_fails_the_run_with_the_url_and_reason(server: FeedServer, settings: Settings) -> None:
    url = server.add("/feed.xml", status=404)
    state = ingest_feed(url, settings, return_state=True)
    assert state.is_failed()
    assert state.message == f"FeedError: {url} returned HTTP 404 Not Found"


def test_episodes_move_on_as_soon_as_their_download_ends_and_stages_keep_their_limits(
    server: FeedServer, tmp_path: Path
) -> None:
    settings = Settings.of(
        output_dir=tmp_path, allowed_networks=LOOPBACK, download_workers=2, transcribe_workers=1, metadata_workers=1
    )
    first, *others = DEMO_EPISODES
    feed_url = demo_feed(server, delays={demo.slug: 3.0 for demo in others})

    state, _ = run(feed_url, settings)

    assert state.is_completed()
    episodes = ledger_of(feed_url, settings).episodes
    timing = {e.episode_id.removeprefix("podflow-demo-"): e.stages for e in episodes.values()}
    last_download_end = max(stages["download"].ended for stages in timing.values())
    assert timing[first.slug]["transcribe"].started < last_download_end
    for stage, limit in (("download", 2), ("transcribe", 1), ("metadata", 1)):
        peak = overlaps([(s[stage].started, s[stage].ended) for s in timing.values()])
        assert peak <= limit, stage
    assert overlaps([(s["download"].started, s["download"].ended) for s in timing.values()]) == 2


def test_an_operator_limit_on_a_stage_tag_bounds_that_stage(server: FeedServer, tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path, allowed_networks=LOOPBACK, transcribe_workers=2)
    feed_url = demo_feed(server)
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="podflow-transcribe", concurrency_limit=1)
    try:
        state, _ = run(feed_url, settings)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("podflow-transcribe")

    assert state.is_completed()
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id(state)])))
    assert sorted(r.name.split(" ")[0] for r in runs if r.tags == ["podflow-transcribe"]) == ["transcribe"] * 4
    assert all(r.tags == [] for r in runs if not r.name.startswith("transcribe"))
    timing = [e.stages["transcribe"] for e in ledger_of(feed_url, settings).episodes.values()]
    assert overlaps([(t.started, t.ended) for t in timing]) == 1


def test_transcribe_workers_can_be_processes(server: FeedServer, tmp_path: Path) -> None:
    settings = Settings.of(
        output_dir=tmp_path,
        allowed_networks=LOOPBACK,
        transcriber="whisper",
        beam_size=1,
        transcribe_workers=2,
        transcribe_pool="processes",
    )
    feed_url = demo_feed(server)

    state, report = run(feed_url, settings)

    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id(state)])))
    assert sorted(r.name.split(" ")[0] for r in runs if r.state_name == "Completed").count("transcribe") == 4
    for demo, outcome in zip(DEMO_EPISODES, report.episodes):
        folder = report.feed_dir / "episodes" / outcome.folder
        document = EpisodeMetadata.model_validate_json((folder / "metadata.json").read_bytes())
        assert document.transcript.backend == "whisper"
        assert word_error_rate(demo.script, (folder / "transcript.txt").read_text()) < 0.3


def test_published_transcripts_are_read_from_the_feed_and_bad_ones_fail_their_episode(
    server: FeedServer, tmp_path: Path
) -> None:
    settings = Settings.of(output_dir=tmp_path, allowed_networks=LOOPBACK, transcriber="published")
    good, unlinked, broken = DEMO_EPISODES[:3]
    for demo in (good, unlinked, broken):
        server.add(f"/{demo.slug}.mp3", demo.audio)
    server.add("/good.vtt", f"WEBVTT\n\n00:00.000 --> 00:05.000\n{good.script}\n".encode())
    server.add("/broken.json", b'{"version": "1.0.0", "segments": "nope"}')
    link = '<podcast:transcript url="{}" type="{}" language="en"/>'
    feed_url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item(
                    good.title,
                    guid="good",
                    enclosure=f"{good.slug}.mp3",
                    extra=link.format("good.vtt", "text/vtt") + link.format("good.txt", "text/plain"),
                ),
                rss_item(unlinked.title, guid="unlinked", enclosure=f"{unlinked.slug}.mp3"),
                rss_item(
                    broken.title,
                    guid="broken",
                    enclosure=f"{broken.slug}.mp3",
                    extra=link.format("broken.json", "application/json"),
                ),
            ]
        ),
    )

    state, report = run(feed_url, settings)

    assert state.is_failed() and state.message == "2 of 3 episodes failed (1 complete)"
    status = {e.episode_id: e for e in report.episodes}
    assert status["good"].status == "complete"
    folder = report.feed_dir / "episodes" / status["good"].folder
    document = EpisodeMetadata.model_validate_json((folder / "metadata.json").read_bytes())
    assert document.transcript.backend == "published" and document.transcript.source_url == server.url("/good.vtt")
    assert document.transcribed_with is None  # no transcriber made it
    assert (folder / "transcript.txt").read_text().strip() == good.script
    assert "links no transcript" in (status["unlinked"].error or "")
    assert server.url("/broken.json") in (status["broken"].error or "")
    assert server.count("/good.txt") == 0  # VTT was preferred; the text version was never fetched


def test_items_sharing_a_guid_are_one_episode(server: FeedServer, settings: Settings) -> None:
    demo = DEMO_EPISODES[0]
    server.add("/a.mp3", demo.audio)
    feed_url = server.add(
        "/feed.xml",
        rss(
            [
                rss_item("First copy", guid="same", enclosure="a.mp3"),
                rss_item("Second copy", guid="same", enclosure="b.mp3"),
            ]
        ),
    )
    state, report = run(feed_url, settings)
    assert state.is_completed()
    assert [(e.episode_id, e.title, e.status) for e in report.episodes] == [("same", "First copy", "complete")]
    assert server.count("/b.mp3") == 0
