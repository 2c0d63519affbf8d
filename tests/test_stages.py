"""The stage registry: a stage added as the docs' "Add a stage" says runs through the real flow, and on a folder
the previous release wrote it runs alone, nothing before it downloaded or transcribed again; the registry's
graph is checked, and each episode runs just the stages it has not done."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

import tasks
from flows.ingest import ingest_feeds
from tasks.episode_folder import METADATA, TRANSCRIPT_JSON
from tasks.models import (
    AudioFile,
    Episode,
    EpisodeMetadata,
    LedgerEntry,
    RunReport,
    Settings,
    StageOutcome,
    Transcript,
    utc_now,
)
from tasks.stages import STAGES, StageInfo, check_stages, to_run
from tasks.store import FeedStore
from tests.conftest import DEMO_EPISODES
from tests.doc_examples import python_blocks
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.ledgers import write_old_ledger

FAKE = "tasks.word_count"


@pytest.fixture
def word_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The docs' stage as tasks/word_count.py (the file in a folder of the package) and the docs' entry in STAGES;
    the name it is registered under."""
    module, entry = python_blocks("extending.md", "Add a stage")
    path, code = module.split("\n", 1)
    assert path == f"# {FAKE.replace('.', '/')}.py"
    (tmp_path / "word_count.py").write_text(code)
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(tmp_path)])
    [(name, info)] = eval("{" + entry.split("\n", 1)[1] + "}", {"StageInfo": StageInfo}).items()  # as written
    monkeypatch.setitem(STAGES, name, info)
    check_stages(STAGES)
    try:
        yield name
    finally:
        sys.modules.pop(FAKE, None)
        vars(tasks).pop("word_count", None)


def serve(server: FeedServer, count: int) -> str:
    items = []
    for demo in DEMO_EPISODES[:count]:
        server.add(f"/{demo.slug}.mp3", demo.audio, content_type="audio/mpeg")
        items.append(rss_item(demo.title, guid=demo.slug, enclosure=f"{demo.slug}.mp3", published=demo.published))
    return server.add("/feed.xml", rss(items), content_type="application/rss+xml")


def run(settings: Settings, feed_url: str) -> RunReport:
    state = ingest_feeds([feed_url], None, settings, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, RunReport) and state.is_completed(), state.message
    return report


def task_runs_of(report_state_flow_run_id: object) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[report_state_flow_run_id])))
    return sorted(run.name.split(" · ")[0] for run in runs)


def audio_hits(server: FeedServer) -> int:
    return sum(1 for hit in server.hits if hit.path.endswith(".mp3") and hit.method == "GET")


@pytest.mark.usefixtures("prefect_api")
def test_a_stage_added_as_the_docs_say_runs_alone_on_a_folder_the_previous_release_wrote(
    word_count: str, server: FeedServer, settings: Settings
) -> None:
    feed_url = serve(server, 2)
    added = STAGES.pop(word_count)  # the previous release: three stages
    run(settings, feed_url)
    store = FeedStore.for_feed(settings.output.output_dir, feed_url)
    write_old_ledger(store, store.read_ledger())  # as that release left it: ledger.json, no database
    folders = [store.folder(entry) for entry in store.read_ledger().episodes.values()]
    before = {path: path.stat().st_mtime_ns for folder in folders for path in folder.path.iterdir()}
    assert audio_hits(server) == 2 and len(before) == 2 * 6  # audio, four transcript files, metadata.json

    STAGES[word_count] = added
    state = ingest_feeds([feed_url], None, settings, return_state=True)
    report = state.result()

    assert isinstance(report, RunReport) and state.is_completed(), state.message
    assert [e.status for e in report.episodes] == ["complete", "complete"]
    assert all(e.seconds.keys() == {word_count} for e in report.episodes)  # only the new stage ran
    assert task_runs_of(state.state_details.flow_run_id) == ["fetch-feed", word_count, word_count]
    assert audio_hits(server) == 2  # nothing downloaded again
    assert {path: path.stat().st_mtime_ns for path in before} == before  # nor transcribed nor described again
    assert not (store.feed_dir / "ledger.json").exists()  # moved into the database
    for folder in folders:
        transcript = Transcript.model_validate_json(folder.file(TRANSCRIPT_JSON).read_bytes())
        metadata = EpisodeMetadata.model_validate_json(folder.file(METADATA).read_bytes())
        counted = json.loads(folder.file("word_count.json").read_text())
        words = len(transcript.text.split())
        assert counted == {"words": words, "per_minute": round(60 * words / metadata.audio.duration_s, 1)}
        assert words > 20 and store.entry(folder.entry.episode_id).stages[word_count].status == "done"

    again = run(settings, feed_url)  # every stage of every episode done: a conditional GET, nothing to do
    assert again.feeds[0].status == "not modified"


@pytest.mark.usefixtures("prefect_api")
def test_a_new_episode_runs_every_stage_the_added_one_included(
    word_count: str, server: FeedServer, settings: Settings
) -> None:
    report = run(settings, serve(server, 1))

    (episode,) = report.episodes
    assert episode.status == "complete" and episode.seconds.keys() == set(STAGES)
    assert list(STAGES)[-1] == word_count and episode.stages[word_count] == "done"


def entry_with(done: list[str]) -> LedgerEntry:
    outcome = StageOutcome(status="done", started=utc_now(), ended=utc_now())
    return LedgerEntry(episode_id="ep", title="Ep", folder="ep", stages={stage: outcome for stage in done})


def finished_folder(tmp_path: Path) -> FeedStore:
    store = FeedStore(tmp_path / "feed", "https://example.org/feed.xml")
    store.register([Episode(episode_id="ep", title="Ep", enclosure_url="https://x/a.mp3")])
    folder = store.folder(store.entry("ep"))
    folder.path.mkdir(parents=True)
    audio = folder.path / "audio.mp3"
    audio.write_bytes(b"sound")
    for name in (TRANSCRIPT_JSON, METADATA):
        (folder.path / name).write_text("{}")
    for stage in STAGES:
        with store.recording("ep", stage) as recording:
            if stage == "download":
                recording.audio = AudioFile(
                    episode_id="ep", path=audio, source_url="https://x/a.mp3", bytes=5, sha256="00"
                )
    return store


@pytest.mark.parametrize(
    ("removed", "runs"),
    [
        ((), []),
        (("audio.mp3",), []),  # deleted to save space: nothing takes it any more
        ((METADATA,), ["metadata"]),  # the audio it takes is still there
        ((METADATA, "audio.mp3"), ["download", "metadata"]),  # fetched again for it, not transcribed again
        ((TRANSCRIPT_JSON,), ["transcribe", "metadata"]),  # downstream of a stage that runs
        ((TRANSCRIPT_JSON, "audio.mp3"), ["download", "transcribe", "metadata"]),
    ],
)
def test_an_episode_runs_the_stages_whose_work_is_gone_and_what_they_need(
    tmp_path: Path, removed: tuple[str, ...], runs: list[str]
) -> None:
    store = finished_folder(tmp_path)
    folder = store.folder(store.entry("ep"))
    for name in removed:
        folder.file(name).unlink()
    assert folder.stages_to_run() == runs
    assert store.is_settled(folder.entry) == (not runs)


def test_the_ledger_decides_first_a_failed_stage_runs_again_with_what_follows(tmp_path: Path) -> None:
    store = finished_folder(tmp_path)
    store.record("ep", "transcribe", utc_now(), error="TranscriptionError: no")
    assert store.folder(store.entry("ep")).stages_to_run() == ["transcribe", "metadata"]
    assert store.folder(entry_with([])).stages_to_run() == list(STAGES)


def test_downstream_of_a_stage_that_runs_runs_too() -> None:
    stages = {
        "a": StageInfo("", "m:a", "w", stored="m:a"),
        "b": StageInfo("", "m:b", "w", takes={"x": "a"}, stored="m:b"),
        "c": StageInfo("", "m:c", "w", stored="m:c"),
        "d": StageInfo("", "m:d", "w", takes={"x": "b", "y": "c"}),
    }
    check_stages(stages)
    assert to_run(stages, {"a"}) == ["a", "b", "d"]
    assert to_run(stages, {"c"}) == ["c", "d"]
    assert to_run(stages, set()) == []


GIVES_BACK = StageInfo("", "m:b", "w", stored="m:b")
KEEPS = StageInfo("", "m:a", "w")


@pytest.mark.parametrize(
    ("stages", "error"),
    [
        ({"a": StageInfo("", "m:a", "w", takes={"x": "b"}), "b": GIVES_BACK}, "not a stage before it"),
        ({"a": KEEPS, "b": StageInfo("", "m:b", "w", takes={"x": "a"})}, "cannot read its result back"),
    ],
)
def test_a_stage_may_take_only_from_earlier_stages_that_can_give_their_result_back(
    stages: dict[str, StageInfo], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        check_stages(stages)
