"""The stage wiring on the real Prefect engine, with worker processes that really die."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.futures import PrefectFuture

from flows.pipeline import ItemRun, Progress, Stage, run_pipeline

pytestmark = pytest.mark.usefixtures("prefect_api")


@task(cache_policy=NO_CACHE)
def arrive(item: str, released: Path) -> str:
    """ "late" waits until the flow's thread has seen the first failure, so it reaches the process stage only
    after the pool it would have used is broken. (A file, not an Event: Prefect pickles this task for the process
    stage's lineage, and a lock cannot be pickled.)"""
    deadline = time.monotonic() + 60
    while item == "late" and not released.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return item


@task(cache_policy=NO_CACHE)
def work_or_die(item: str) -> str:
    if item == "fatal":
        os._exit(3)  # what the OOM killer does to a worker: no exception, no state, just gone
    return item.upper()


@flow
def two_stages(items: list[str], released: Path) -> list[ItemRun[str]]:
    def watch(progress: Progress) -> None:
        if progress.failed:
            released.touch()

    def upstream(item: str, finished: dict[str, PrefectFuture[str]]) -> dict[str, object]:
        return {"item": finished["arrive"]}

    return run_pipeline(
        items,
        [
            Stage("arrive", arrive, 2, lambda item, finished: {"item": item, "released": released}),
            Stage("work", work_or_die, 1, upstream, after=("arrive",), in_processes=True),
        ],
        watch,
    )


def test_a_dead_worker_process_fails_its_item_and_later_items_get_a_new_pool(tmp_path: Path) -> None:
    runs = {run.item: run for run in two_stages(["fatal", "late"], tmp_path / "released")}

    assert runs["fatal"].failed_stage == "work"
    assert "BrokenProcessPool" in (runs["fatal"].error or "")
    assert "worker process died" in (runs["fatal"].error or "")
    assert runs["late"].failed_stage is None and runs["late"].error is None


@task(cache_policy=NO_CACHE, task_run_name="shout-{item}")
def shout(item: str) -> str:
    return item.upper()


@task(cache_policy=NO_CACHE, task_run_name="count-{item}")
def count(item: str, loud: str) -> int:
    return len(loud)


@task(cache_policy=NO_CACHE, task_run_name="note-{item}")
def note(item: str, loud: str, letters: int, notes: Path) -> None:
    (notes / item).write_text(f"{loud} {letters}")


@flow
def three_stages(items: list[str], notes: Path) -> list[ItemRun[str]]:
    return run_pipeline(
        items,
        [
            Stage("shout", shout, 2, lambda item, finished: {"item": item}),
            Stage(
                "count",
                count,
                1,
                lambda item, finished: {"item": item, "loud": finished["shout"]},
                after=("shout",),
                in_processes=True,
            ),
            Stage(
                "note",
                note,
                2,
                lambda item, finished: {
                    "item": item,
                    "loud": finished["shout"],
                    "letters": finished["count"],
                    "notes": notes,
                },
                after=("shout", "count"),
            ),
        ],
    )


def test_each_task_gets_its_upstream_results_and_records_the_runs_they_came_from(tmp_path: Path) -> None:
    state = three_stages(["ab", "cde"], tmp_path, return_state=True)
    with get_client(sync_client=True) as client:
        flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        runs = {run.name: run for run in client.read_task_runs(flow_run_filter=flow_run)}

    assert state.is_completed()
    assert {path.name: path.read_text() for path in tmp_path.iterdir()} == {"ab": "AB 2", "cde": "CDE 3"}
    for item in ("ab", "cde"):
        shouted, counted = {runs[f"shout-{item}"].id}, {runs[f"count-{item}"].id}
        assert {i.id for i in runs[f"count-{item}"].task_inputs["loud"]} == shouted  # across processes too
        assert {i.id for i in runs[f"note-{item}"].task_inputs["loud"]} == shouted
        assert {i.id for i in runs[f"note-{item}"].task_inputs["letters"]} == counted
        assert runs[f"note-{item}"].task_inputs["notes"] == []
