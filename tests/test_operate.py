"""Operate podflow for real: a `prefect server start` on 127.0.0.1, the work pool, the deployments
of prefect.yaml, a process worker, and `prefect deployment run --watch` against the demo feed; then the outputs,
the flow run, its task runs and its artifacts, read through the Prefect API. Once on SQLite, once on PostgreSQL."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import Scheduled

from tests.conftest import DEMO_DIR, DEMO_EPISODES
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.operate import ROOT, Operation, Postgres, embedded_postgres, postgres_unavailable, wait_until

POOL = "podflow"
DEPLOYMENT = "ingest-feed/on-demand"
SCHEDULED = "ingest-feeds/scheduled"


def watched_with_settings(output: Path, flat: bool = False) -> tuple[str, ...]:
    """`prefect deployment run`'s settings parameter (output folder; the test server's loopback allowed) and wait.
    `flat`: as one flat dict, the form of deployments made before settings came in groups (mapped, with a warning)."""
    settings: dict[str, object] = {
        "output": {"output_dir": str(output)},
        "network": {"allowed_networks": ["127.0.0.0/8"]},
    }
    if flat:
        settings = {name: value for group in settings.values() for name, value in group.items()}  # type: ignore[attr-defined]
    return ("--param", "settings=" + json.dumps(settings), "--watch", "--watch-interval", "1", "--watch-timeout", "240")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Postgres | None]:
    """None for the default SQLite database in PREFECT_HOME; else a PostgreSQL server of the test's own."""
    if request.param == "sqlite":
        yield None
        return
    if (reason := postgres_unavailable()) is not None:
        # Only where PostgreSQL cannot run at all (no wheel; as root, no user `nobody`, or no folder it can reach):
        # the reason shows in pytest's -ra summary, and the SQLite case still runs the whole scenario.
        pytest.skip(reason)
    with embedded_postgres(tmp_path) as postgres:
        yield postgres


@pytest.mark.timeout(900)  # a bound on a stuck step; each step has its own, shorter one
def test_a_deployment_runs_on_a_process_worker_against_a_real_server(database: Postgres | None, tmp_path: Path) -> None:
    started = time.monotonic()
    output = tmp_path / "podcasts"
    elsewhere = tmp_path / "worker-cwd"  # not a checkout: the pull steps must find the code on their own
    elsewhere.mkdir()
    with FeedServer() as feeds, Operation(tmp_path, database.url if database else None) as operation:
        feeds.add_directory(DEMO_DIR)
        operation.start_server()
        operation.prefect("work-pool", "create", POOL, "--type", "process")
        operation.start_worker(POOL, cwd=elsewhere)
        operation.prefect("--no-prompt", "deploy", "--all")
        operation.wait_for_worker(POOL)
        operation.prefect(  # fails the test unless it exits 0: the run ended Completed
            "deployment",
            "run",
            DEPLOYMENT,
            "--param",
            f"feed_url={feeds.url('/feed.xml')}",
            *watched_with_settings(output),
            timeout_s=270,
            timing="deployment run --watch",
        )
        with operation.client() as client:
            deployments = client.read_deployments()
            flow_runs = client.read_flow_runs()
            assert len(flow_runs) == 1, [(r.name, r.deployment_id, r.state_name) for r in flow_runs]
            flow_run = flow_runs[0]
            states = {state.type.value: state.timestamp for state in client.read_flow_run_states(flow_run.id)}
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
            )
        feed_requests = feeds.count("/feed.xml")
        logs = operation.logs()
        scheduled_runs(operation, feeds, tmp_path / "scheduled")

    # The server kept its data where it was told: SQLite in PREFECT_HOME, or else only in PostgreSQL.
    assert (operation.home / "prefect.db").exists() == (database is None)

    # Deployed from prefect.yaml, with its pull steps stored as written: nothing of this checkout's path.
    on_demand = next(d for d in deployments if d.name == "on-demand")
    assert on_demand.pull_steps == yaml.safe_load((ROOT / "prefect.yaml").read_text())["pull"]
    assert on_demand.path is None
    for deployment in deployments:
        assert str(ROOT) not in deployment.model_dump_json(), f"{deployment.name} stores the checkout's path"

    # The run, made on the worker: it loaded flows/ingest.py relative to a working directory that the pull steps
    # chose, since the worker ran elsewhere and runs each flow in a fresh temporary folder.
    assert flow_run.deployment_id == on_demand.id and flow_run.work_pool_name == POOL
    assert flow_run.state is not None and flow_run.state.is_completed(), (flow_run.state, logs)
    assert feed_requests >= 1

    by_stage = Counter(task_run.name.split(" ")[0] for task_run in task_runs)
    assert {stage: by_stage[stage] for stage in ("download", "transcribe", "metadata")} == {
        "download": 4,
        "transcribe": 4,
        "metadata": 4,
    }, by_stage
    assert all(task_run.state is not None and task_run.state.is_completed() for task_run in task_runs)

    table = next(a for a in artifacts if a.type == "table" and a.key == "podflow-episodes")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert sorted(row["episode"].replace("\u200b", "") for row in rows) == sorted(demo.title for demo in DEMO_EPISODES)
    assert {row["status"] for row in rows} == {"complete"}
    assert any(a.type == "progress" and a.data == 100.0 for a in artifacts), artifacts

    episode_dirs = sorted(output.glob("*/episodes/*"))
    assert len(episode_dirs) == len(DEMO_EPISODES)
    for episode_dir in episode_dirs:
        metadata = json.loads((episode_dir / "metadata.json").read_text())
        assert metadata["processing"]["flow_run_id"] == str(flow_run.id)
        assert len((episode_dir / "transcript.txt").read_text().split()) > 20

    if database is not None:
        operation.timings["postgres initdb and start"] = database.start_s
    operation.timings.update(
        {
            "worker pickup (Scheduled to Pending)": (states["PENDING"] - states["SCHEDULED"]).total_seconds(),
            "flow start (Pending to Running: pull steps, imports)": (
                states["RUNNING"] - states["PENDING"]
            ).total_seconds(),
            "flow run (Running to Completed)": (states["COMPLETED"] - states["RUNNING"]).total_seconds(),
        }
    )
    operation.timings["test"] = time.monotonic() - started
    timings = "; ".join(f"{name} {seconds:.1f} s" for name, seconds in operation.timings.items())
    print(f"\n{'postgresql' if database else 'sqlite'}: {timings}")
    print("\n".join(operation.commands))


def run_deployment(operation: Operation, feeds: list[str], output: Path, timing: str) -> FlowRun:
    """`prefect deployment run` of the scheduled deployment, now, on `feeds`; returns its flow run, finished."""
    operation.prefect(
        "deployment",
        "run",
        SCHEDULED,
        "--param",
        f"feeds={json.dumps(feeds)}",
        *watched_with_settings(output, flat=True),  # the scheduled runs keep a deployment's flat settings working
        timeout_s=270,
        timing=timing,
        check=False,  # a run that ends Failed exits 1: the test reads its state
    )
    with operation.client() as client:
        [deployment] = [d for d in client.read_deployments() if d.name == "scheduled"]
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return runs[0]


def wait_for_final_state(operation: Operation, flow_run_id: UUID, timeout_s: float = 240.0) -> FlowRun:
    with operation.client() as client:

        def final() -> bool:
            state = client.read_flow_run(flow_run_id).state
            return state is not None and state.is_final()

        wait_until(final, "a final state of the retried run", timeout_s)
        return client.read_flow_run(flow_run_id)


def running_seconds(operation: Operation, flow_run_id: UUID) -> float:
    """From the flow run's last Running state to the final state after it: the run as the UI times it."""
    with operation.client() as client:
        states = sorted(client.read_flow_run_states(flow_run_id), key=lambda state: state.timestamp)
    last_running = max(i for i, state in enumerate(states) if state.type.value == "RUNNING")
    return (states[last_running + 1].timestamp - states[last_running].timestamp).total_seconds()


def scheduled_runs(operation: Operation, feeds: FeedServer, output: Path) -> None:
    """The scheduled deployment, run as its schedule would: a feed with two new episodes (one of whose audio is
    not there yet), the UI's Retry of that failed run, then a run with nothing new. On the way, `podflow limits
    apply` bounds transcription across every run of this server."""
    with operation.client() as client:
        [deployment] = [d for d in client.read_deployments() if d.name == "scheduled"]
    assert [s.schedule.cron for s in deployment.schedules] == ["0 * * * *"]  # type: ignore[union-attr]
    # Runs of the schedule never overlap: one at a time, the next one waiting.
    assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options is not None
    assert deployment.concurrency_options.collision_strategy == "ENQUEUE"

    listed = operation.podflow("limits", "apply", "--transcribe", "1").stdout
    assert "podflow-transcribe" in listed

    demo, late = DEMO_EPISODES[0], DEMO_EPISODES[1]
    feed_url = feeds.add(
        "/scheduled.xml",
        rss(
            [
                rss_item(demo.title, guid="scheduled-1", enclosure=f"{demo.slug}.mp3"),
                rss_item(late.title, guid="scheduled-2", enclosure="late.mp3"),
            ],
            title="Scheduled Show",
        ),
    )
    first = run_deployment(operation, [feed_url], output, "scheduled run, 2 new episodes (1 failing)")
    assert first.state is not None and first.state.is_failed(), first.state
    assert first.state.message == "1 of 2 episodes failed (1 complete)"
    operation.timings["scheduled flow run, new episodes"] = running_seconds(operation, first.id)

    # The UI's Retry: the same flow run, set back to Scheduled, which the worker picks up again.
    feeds.add("/late.mp3", late.audio)
    with operation.client() as client:
        client.set_flow_run_state(first.id, Scheduled(name="AwaitingRetry"), force=True)
    retried = wait_for_final_state(operation, first.id)
    assert retried.state is not None and retried.state.is_completed(), (retried.state, operation.logs())
    assert feeds.count(f"/{demo.slug}.mp3") == 1 + 1  # once by the on-demand run's feed, once here; not again
    assert feeds.count("/late.mp3") == 2  # the 404 of the first try, then the retry's download

    unchanged = run_deployment(operation, [feed_url], output, "scheduled run, nothing new (304)")
    assert unchanged.state is not None and unchanged.state.is_completed()
    last_fetch = [hit for hit in feeds.hits if hit.path == "/scheduled.xml"][-1]
    assert last_fetch.headers.get("If-None-Match")
    with operation.client() as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[first.id])))
        summary = next(
            a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[unchanged.id]))
            )
            if a.key == "podflow-summary"
        )
    assert "1 not modified" in str(summary.data)
    transcribes = [run for run in task_runs if run.name.startswith("transcribe")]
    assert transcribes and all(run.tags == ["podflow-transcribe"] for run in transcribes)

    operation.timings.update(
        {
            "retried flow run, the failed episode": running_seconds(operation, first.id),
            "scheduled flow run, nothing new (304)": running_seconds(operation, unchanged.id),
        }
    )
