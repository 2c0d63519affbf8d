"""Transcription on a real Dask cluster on 127.0.0.1: a `dask scheduler` and two `podflow worker` processes with a
transcribe slot each, real Whisper on the demo speech, the real Prefect engine and the real CLI; workers killed by
PID mid-transcription."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import distributed
import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun

from flows.ingest import ingest_feed
from tasks.download import sha256_of
from tasks.episode_folder import TRANSCRIPT_TEXT
from tasks.episode_id import guid_episode_id
from tasks.errors import AudioNotVisibleError, ClusterError
from tasks.models import AudioFile, IngestReport, Ledger, Settings
from tasks.store import FeedStore
from tasks.transcribe.cluster_worker import TOPIC, WorkerModel, audio_on_worker
from tasks.transcribe.stage import transcribe_audio
from tests.conftest import DEMO_EPISODES, LOOPBACK, DemoEpisode
from tests.dask_cluster import PODFLOW, DaskProcesses, dask_cluster
from tests.events import retried_into
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.long_episode import write_episode
from tests.operate import Operation, wait_until
from tests.speech import word_error_rate
from tests.transcripts import episode_of

pytestmark = pytest.mark.usefixtures("prefect_api")

SCRIPTS = {demo.title: demo.script for demo in DEMO_EPISODES}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    """Two workers of one slot each. Each has two threads, so only the transcribe resource keeps it to one
    transcription at a time; the scheduler gives a task up once two workers died running it (Dask's default: 4)."""
    with dask_cluster(
        tmp_path_factory.mktemp("dask"),
        workers=2,
        worker_options=("--nthreads", "2"),
        scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"},
    ) as processes:
        yield processes


@dataclass
class Events:
    """The events the workers log as they take and hear episodes, as they arrive; `react(note)` may kill."""

    notes: list[dict[str, Any]] = field(default_factory=list)
    killed: list[dict[str, Any]] = field(default_factory=list)  # the started notes whose worker was killed
    react: Callable[[dict[str, Any]], bool] = lambda note: False  # True: kill the worker that sent it
    kill_after_s: float = 0.0  # after it started hearing

    def __call__(self, event: tuple[float, dict[str, Any]]) -> None:
        note = event[1]
        self.notes.append(note)
        if note["event"] == "started" and self.react(note):
            threading.Timer(self.kill_after_s, os.kill, (note["pid"], signal.SIGKILL)).start()
            self.killed.append(note)

    def started(self, episode_id: str | None = None) -> list[dict[str, Any]]:
        return [n for n in self.notes if n["event"] == "started" and episode_id in (None, n["episode"])]

    def most_at_once(self) -> int:
        """The most transcriptions heard at the same time: from each start to its finish, or to its worker's kill."""
        running: set[tuple[str, str]] = set()
        most = 0
        for note in self.notes:
            if note["event"] == "started":
                running.add((note["key"], note["worker"]))
                if note in self.killed:
                    most = max(most, len(running))
                    running.discard((note["key"], note["worker"]))
            elif note["event"] == "finished":
                running.discard((note["key"], note["worker"]))
            most = max(most, len(running))
        return most


@pytest.fixture
def events(cluster: DaskProcesses) -> Iterator[Events]:
    cluster.wait_for_slots(2)  # a killed worker's nanny starts it again, model and all
    heard = Events()
    with distributed.Client(cluster.address, timeout=10, set_as_default=False) as client:
        client.subscribe_topic(TOPIC, heard)
        yield heard
        time.sleep(0.5)  # the last events are on their way
        client.unsubscribe_topic(TOPIC)


def demo_feed(server: FeedServer, name: str, demos: Sequence[DemoEpisode] = DEMO_EPISODES) -> str:
    items = []
    for demo in demos:
        guid = f"{name}-{demo.slug}"
        server.add(f"/{guid}.mp3", demo.audio)
        items.append(rss_item(demo.title, guid=guid, enclosure=f"{guid}.mp3"))
    return server.add(f"/{name}.xml", rss(items, title=f"Show {name}"))


def ledger_of(feed_url: str, output: Path) -> Ledger:
    return FeedStore.for_feed(output, feed_url).read_ledger()


def assert_heard_right(feed_url: str, output: Path) -> None:
    store = FeedStore.for_feed(output, feed_url)
    for entry in store.read_ledger().episodes.values():
        assert entry.complete, entry
        text = store.folder(entry).file(TRANSCRIPT_TEXT).read_text()
        assert word_error_rate(SCRIPTS[entry.title], text) < 0.3, text


def cluster_settings(cluster: DaskProcesses, output: Path, **changes: Any) -> Settings:
    return Settings.of(
        output_dir=output,
        allowed_networks=LOOPBACK,
        transcribe_cluster=cluster.address,
        cluster_timeout_s=20,
        **changes,
    )


@pytest.mark.timeout(600)
def test_many_runs_on_many_hosts_share_the_slots_and_a_worker_killed_mid_episode_hands_it_to_another(
    cluster: DaskProcesses, events: Events, server: FeedServer, tmp_path: Path
) -> None:
    """docs/operate/scale-out.md on one machine: a `prefect server start`, a work pool with two process workers started
    from folders of their own (two flow hosts, one flow run at a time each), the scheduled many-feed deployment
    and the on-demand one run at once, and a `podflow ingest --transcribe-cluster` beside them: three flow runs,
    eight episodes, one output folder, two slots. The first worker to start an episode is SIGKILLed by its PID."""
    output = tmp_path / "shared"
    few = DEMO_EPISODES[:2]
    many, one, cli = (
        [demo_feed(server, "east", few), demo_feed(server, "west", few)],
        demo_feed(server, "solo", few),
        demo_feed(server, "cli", few),
    )
    settings = {
        "output": {"output_dir": str(output)},
        "network": {"allowed_networks": ["127.0.0.0/8"]},
        "cluster": {"transcribe_cluster": cluster.address, "cluster_timeout_s": 20},
    }
    events.react = lambda note: not events.killed
    with Operation(tmp_path / "prefect") as operation:
        operation.start_server()
        operation.prefect("work-pool", "create", "podflow", "--type", "process")
        hosts = []
        for host in ("flow-host-a", "flow-host-b"):
            (tmp_path / host).mkdir()
            hosts.append(operation.start_worker("podflow", tmp_path / host, name=host, options=("--limit", "1")))
        operation.prefect("--no-prompt", "deploy", "--all")
        with operation.client() as client:
            wait_until(lambda: len(client.read_workers_for_work_pool("podflow")) == 2, "two workers", 60)
            for deployment, parameters in (
                ("ingest-feeds/scheduled", ("--param", f"feeds={json.dumps(many)}")),
                ("ingest-feed/on-demand", ("--param", f"feed_url={one}")),
            ):
                operation.prefect(
                    "deployment", "run", deployment, *parameters, "--param", f"settings={json.dumps(settings)}"
                )
            cli_log = tmp_path / "cli.log"
            with open(cli_log, "wb") as log:
                command = [PODFLOW, "ingest", cli, "-o", str(output), "--transcribe-cluster", cluster.address]
                ingest = subprocess.Popen(
                    [*command, "--allow-network", "127.0.0.0/8"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=operation.env,
                )
            assert ingest.wait(timeout=300) == 0, cli_log.read_text()

            def deployed_runs() -> list[FlowRun]:
                return [run for run in client.read_flow_runs() if run.deployment_id is not None]

            wait_until(lambda: all(r.state is not None and r.state.is_final() for r in deployed_runs()), "runs", 300)
            flow_runs = deployed_runs()
        logs = [cli_log.read_text(), *(host.log.read_text() for host in hosts)]

    assert len(flow_runs) == 2
    assert all(run.state is not None and run.state.is_completed() for run in flow_runs), logs
    # Each flow host ran one of the two deployment runs (a worker may reach for the run the other took: refused).
    taken = [{run.name for run in flow_runs if f"Beginning flow run '{run.name}'" in log} for log in logs[1:]]
    assert sorted(map(len, taken)) == [1, 1] and taken[0] != taken[1], logs
    for feed_url in [*many, one, cli]:
        assert_heard_right(feed_url, output)
    # Eight episodes went through the two slots, never more at once, and both slots were used.
    assert events.most_at_once() == 2
    # The killed worker's episode moved: it started again on another worker, which the ledger and the log name.
    [killed] = events.killed
    moved = killed["episode"]
    [again] = [note for note in events.started(moved) if note is not killed]
    assert again["worker"] != killed["worker"]
    entries = [e for f in [*many, one, cli] for e in ledger_of(f, output).episodes.values()]
    assert [e.stages["transcribe"].workers for e in entries if e.episode_id == moved] == [
        (killed["worker"], again["worker"])
    ]
    assert all(len(e.stages["transcribe"].workers) == 1 for e in entries if e.episode_id != moved)
    assert any(f"worker {killed['worker']} left mid-way" in log for log in logs)
    # Nothing else was heard twice, and no audio fetched twice.
    heard = [note["episode"] for note in events.started()]
    assert len(heard) == 9 and len(set(heard)) == 8
    assert set(audio_hits(server).values()) == {1}, audio_hits(server)


def audio_hits(server: FeedServer) -> dict[str, int]:
    paths = {hit.path for hit in server.hits if hit.path.endswith(".mp3")}
    return {path: server.count(path) for path in paths}


def test_an_episode_that_kills_every_worker_it_runs_on_fails_with_killed_worker_and_the_others_go_on(
    server: FeedServer, tmp_path: Path
) -> None:
    """One worker of one slot, killed a second after it starts hearing the poison: the other episode, downloaded
    just after, waits for the slot on that worker, so each death strikes it too (Dask counts every task a dying
    worker holds). It was never heard when Dask gives it up, so it is sent again; the poison, heard at both
    deaths, fails."""
    poison, innocent = DEMO_EPISODES[0], DEMO_EPISODES[1]
    server.add(f"/poison-{poison.slug}.mp3", poison.audio)
    server.add(f"/poison-{innocent.slug}.mp3", innocent.audio, delay_s=0.3)
    items = [rss_item(d.title, guid=f"poison-{d.slug}", enclosure=f"poison-{d.slug}.mp3") for d in (poison, innocent)]
    feed_url = server.add("/poison.xml", rss(items))
    with dask_cluster(
        tmp_path / "dask", workers=1, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    ) as one_slot:
        heard = Events(react=lambda note: note["episode"] == guid_episode_id(f"poison-{poison.slug}"), kill_after_s=1)
        with distributed.Client(one_slot.address, timeout=10, set_as_default=False) as client:
            client.subscribe_topic(TOPIC, heard)
            state = ingest_feed(feed_url, cluster_settings(one_slot, tmp_path / "out"), return_state=True)
            time.sleep(0.5)  # the last events are on their way

    assert state.is_failed()
    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport)
    outcome = {episode.title: episode for episode in report.episodes}
    assert outcome[poison.title].status == "failed"
    assert "every worker that heard it died (2): KilledWorker" in (outcome[poison.title].error or "")
    assert len(heard.killed) == 2  # the one death the scheduler allows, and the one that made it give up
    assert outcome[innocent.title].status == "complete"
    assert [note["episode"] for note in heard.started()][-1] == guid_episode_id(f"poison-{innocent.slug}")
    with get_client(sync_client=True) as prefect:
        flow_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        logs = [log.message for log in prefect.read_logs(log_filter=flow_run)]
    assert "Sending the episode again: 2 workers died holding it, while it was heard on 0" in logs


def test_a_worker_with_another_model_fails_each_episode_and_says_which_models(
    cluster: DaskProcesses, events: Events, server: FeedServer, tmp_path: Path
) -> None:
    state = ingest_feed(
        demo_feed(server, "mismatch"),
        cluster_settings(cluster, tmp_path / "out", model="bundled:base"),
        return_state=True,
    )

    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport)
    assert {episode.status for episode in report.episodes} == {"failed"}
    for episode in report.episodes:
        assert episode.stages["transcribe"] == "failed"
        assert "runs faster-whisper bundled:tiny.en on cpu" in (episode.error or "")
        assert "asks for faster-whisper bundled:base on cpu" in (episode.error or "")
    assert events.started() == []  # refused before any hearing


def test_a_worker_started_without_a_model_hears_english_and_fails_a_french_episode_saying_why(
    cluster: DaskProcesses, events: Events, server: FeedServer, tmp_path: Path
) -> None:
    english = DEMO_EPISODES[0]
    server.add("/fr.mp3", (Path(__file__).parent / "fixtures" / "speech-fr.mp3").read_bytes())
    server.add("/en.mp3", english.audio)
    items = [
        rss_item("Bonjour", guid="fr", enclosure="fr.mp3"),
        rss_item(english.title, guid="en", enclosure="en.mp3", extra="<language>en</language>"),
    ]
    body = rss(items, title="Le Show").replace(b"<channel>", b"<channel><language>fr</language>")
    state = ingest_feed(server.add("/fr.xml", body), cluster_settings(cluster, tmp_path / "out"), return_state=True)

    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport)
    outcome = {episode.title: episode for episode in report.episodes}
    assert outcome[english.title].status == "complete"  # model auto, English: the workers' bundled:tiny.en
    assert outcome["Bonjour"].status == "failed"
    error = outcome["Bonjour"].error or ""
    assert "runs faster-whisper bundled:tiny.en on cpu" in error and "asks for faster-whisper bundled:base" in error
    assert "Model auto chose bundled:base for this episode: feed language fr; bundled:tiny.en is English-only" in error
    assert [note["episode"] for note in events.started()] == [guid_episode_id("en")]


def test_an_episode_heard_past_its_deadline_fails_and_its_worker_is_restarted(
    cluster: DaskProcesses, events: Events, tmp_path: Path
) -> None:
    """A running Dask task ignores cancel(): past cluster_transcribe_timeout_s the flow restarts the worker, or
    the episode it gave up would keep the slot."""
    path = tmp_path / "episode" / "audio.mp3"
    path.parent.mkdir()
    write_episode(path, 120)
    size, sha256 = path.stat().st_size, sha256_of(path)
    audio = AudioFile(episode_id="slow", path=path, source_url="http://127.0.0.1/a.mp3", bytes=size, sha256=sha256)
    settings = cluster_settings(cluster, tmp_path, cluster_transcribe_timeout_s=0.5)

    with pytest.raises(ClusterError, match="not transcribed 0.5 s after a worker took it: given up"):
        transcribe_audio(audio, episode_of(audio), path.parent, settings)

    [started] = events.started("slow")
    assert "finished" not in [note["event"] for note in events.notes if note["key"] == started["key"]]
    cluster.wait_for_slots(2)
    with distributed.Client(cluster.address, timeout=10, set_as_default=False) as client:
        assert started["worker"] not in client.scheduler_info(n_workers=-1)["workers"]  # a new process took its place


def test_a_worker_whose_model_cannot_load_exits_instead_of_offering_a_slot(cluster: DaskProcesses) -> None:
    done = subprocess.run(
        [PODFLOW, "worker", cluster.address, "--model", "bundled:nope", "--no-dashboard"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode != 0
    assert "podflow worker: TranscriptionError: the faster-whisper model 'bundled:nope' cannot be loaded" in done.stderr
    assert cluster.slots() == 2  # the two of the module's workers, and none of its


def test_an_unreachable_scheduler_fails_the_run_before_any_download(server: FeedServer, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{unused.getsockname()[1]}"  # nothing listens there
    feed_url = demo_feed(server, "nowhere")
    settings = Settings.of(
        output_dir=tmp_path / "out", allowed_networks=LOOPBACK, transcribe_cluster=address, cluster_timeout_s=2
    )

    state = ingest_feed(feed_url, settings, return_state=True)

    assert state.is_failed()
    assert f"cluster at {address}: its scheduler cannot be reached within 2 s" in (state.message or "")
    assert server.hits == []


def test_a_cluster_without_a_worker_fails_the_run_before_any_download(server: FeedServer, tmp_path: Path) -> None:
    feed_url = demo_feed(server, "idle")
    with dask_cluster(tmp_path / "dask", workers=0) as idle:
        settings = Settings.of(
            output_dir=tmp_path / "out", allowed_networks=LOOPBACK, transcribe_cluster=idle.address, cluster_timeout_s=1
        )
        state = ingest_feed(feed_url, settings, return_state=True)

    assert state.is_failed()
    assert f"no worker of the transcribe cluster at {idle.address} offers a transcribe slot" in (state.message or "")
    assert f"start `podflow worker {idle.address}`" in (state.message or "")
    assert server.hits == []


def test_a_scheduler_lost_mid_run_fails_the_waiting_episodes_within_the_deadline(
    server: FeedServer, tmp_path: Path
) -> None:
    feed_url = demo_feed(server, "orphan", DEMO_EPISODES[:2])
    with dask_cluster(tmp_path / "dask", workers=1) as doomed:
        heard = Events(react=lambda note: True)  # the first transcription to start: the scheduler dies
        heard.react = lambda note: bool(os.kill(doomed.scheduler.pid, signal.SIGKILL)) or False
        with distributed.Client(doomed.address, timeout=10, set_as_default=False) as client:
            client.subscribe_topic(TOPIC, heard)
            settings = Settings.of(
                output_dir=tmp_path / "out",
                allowed_networks=LOOPBACK,
                transcribe_cluster=doomed.address,
                cluster_timeout_s=3,
            )
            begun = time.monotonic()
            state = ingest_feed(feed_url, settings, return_state=True)
            took_s = time.monotonic() - begun

    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport)
    assert len(heard.started()) == 1 and doomed.scheduler.poll() is not None
    assert {episode.status for episode in report.episodes} == {"failed"}
    for episode in report.episodes:
        assert episode.stages["transcribe"] == "failed"
        assert f"the transcribe cluster at {doomed.address}" in (episode.error or ""), episode.error
    assert took_s < 120  # not a speed check: a hang would sit here until pytest's own timeout


def test_audio_the_workers_do_not_see_as_the_flow_wrote_it_travels_as_bytes(
    cluster: DaskProcesses, events: Events, tmp_path: Path
) -> None:
    """On one machine every worker sees the flow's files; a worker sees another file at the path when the hosts
    keep separate folders of the same layout. Here the record's hash is not the file's, as for such a worker: it
    refuses the path, and the flow sends the bytes. The worker hearing them is killed: whether the bytes lived on
    it (sent again) or on the other worker (fetched from there), the episode is heard on the other."""
    demo = DEMO_EPISODES[1]
    path = tmp_path / "episode" / "audio.mp3"
    path.parent.mkdir()
    path.write_bytes(demo.audio)
    audio = AudioFile(
        episode_id="bytes", path=path, source_url="http://127.0.0.1/a.mp3", bytes=len(demo.audio), sha256="0" * 64
    )
    retried: list[str] = []
    events.react = lambda note: not events.killed

    transcript = transcribe_audio(
        audio, episode_of(audio), path.parent, cluster_settings(cluster, tmp_path), retried_into(retried)
    )

    assert word_error_rate(demo.script, transcript.text) < 0.3
    assert [note["audio"] for note in events.started("bytes")] == ["bytes", "bytes"]
    assert retried[0] == f"Sending the audio as bytes: the worker does not see {path} as the flow wrote it"


def test_a_worker_takes_the_flows_file_only_with_its_size_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "audio.mp3"
    path.write_bytes(DEMO_EPISODES[0].audio)
    audio = AudioFile(
        episode_id="e",
        path=path,
        source_url="http://127.0.0.1/a.mp3",
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
    )
    with audio_on_worker(audio, None, tmp_path / "copies") as local:
        assert local.path == path
    with audio_on_worker(audio, b"sent bytes", tmp_path / "copies") as local:
        assert local.path.parent == tmp_path / "copies" and local.path.read_bytes() == b"sent bytes"
    assert list((tmp_path / "copies").iterdir()) == []  # the copy is removed after
    path.write_bytes(DEMO_EPISODES[0].audio[:-1] + b"x")  # same size, other bytes
    with pytest.raises(AudioNotVisibleError), audio_on_worker(audio, None, tmp_path / "copies"):
        pass


@pytest.mark.parametrize(
    ("flow", "serves"),
    [
        (("faster-whisper", "bundled:tiny.en", "cuda", "float16"), True),
        (("faster-whisper", "bundled:tiny.en", "auto", None), True),  # the worker's device and compute type
        (("faster-whisper", "bundled:tiny.en", "cpu", None), False),
        (("faster-whisper", "bundled:tiny.en", "cuda", "int8"), False),
        (("faster-whisper", "bundled:base", "cuda", "float16"), False),
        (("whisper", "bundled:tiny.en", "cuda", "float16"), False),
    ],
)
def test_a_worker_serves_only_its_transcriber_and_model_on_its_device(flow: tuple, serves: bool) -> None:
    worker = WorkerModel("faster-whisper", "bundled:tiny.en", "cuda", "float16")
    assert worker.serves(WorkerModel(*flow)) is serves


def test_a_worker_process_imports_no_prefect() -> None:
    script = (
        "import sys; from tasks.models import Settings; import tasks.transcribe.cluster_worker; "
        "from tasks.transcribe.base import load_backend; load_backend(Settings(), 1); "
        "print('prefect' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip() == "False", result.stderr
