"""Stage wiring: one bounded task runner per stage, and the flow's own thread handing each item to its next stage
the moment its upstream future resolves.

Why not `a.map(items)` -> `b.map(...)` on one runner: a task waiting on its upstream future holds a pool thread and
the pool is FIFO, so downstream work queues behind every upstream task (head-of-line blocking). Why not submit from
a future's done-callback: the callback runs outside the flow run's context, and the task runs lose their flow run;
the callback only tells the flow's thread, which submits.
"""

from __future__ import annotations

import queue
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prefect import Task
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from tasks import stopping

Item = TypeVar("Item")


@dataclass(frozen=True)
class Stage(Generic[Item]):
    """One stage: its task, how many of its tasks may run at once, and how to call it for an item.

    `parameters(item, upstream)` gets the finished futures of the item's earlier stages by stage name; passing
    them (not their results) as task parameters is what lets the Prefect UI draw each episode's lineage.
    """

    name: str
    task: Task[..., Any]
    workers: int
    parameters: Callable[[Item, Mapping[str, PrefectFuture[Any]]], dict[str, Any]]
    in_processes: bool = False  # worker processes for work that holds the GIL; threads otherwise

    def task_runner(self) -> TaskRunner[Any]:
        runner = ProcessPoolTaskRunner if self.in_processes else ThreadPoolTaskRunner
        return runner(max_workers=self.workers)


@dataclass
class ItemRun(Generic[Item]):
    """One item's way through the stages: where and why it failed, if it did.

    `finished` holds the futures of its finished stages only while the item is in flight; they are dropped once it
    settles, so a run's memory does not grow with its results (a transcript per episode).
    """

    item: Item
    finished: dict[str, PrefectFuture[Any]] = field(default_factory=dict)
    failed_stage: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Progress:
    total: int
    settled: int  # items that will not move again: through every stage, or failed
    done: Mapping[str, int]
    failed: Mapping[str, int]


@contextmanager
def stopping_on_termination() -> Iterator[None]:
    """Around the flow thread's waits on stage threads: on SIGTERM (Prefect's TerminationSignal) or Ctrl-C there,
    stop them (tasks/stopping.py), then go on raising."""
    try:
        yield
    except (TerminationSignal, KeyboardInterrupt):
        stopping.stop()
        raise


def failure_message(future: PrefectFuture[Any]) -> str | None:
    """Why a finished task failed: its exception, or the message of the Failed state it returned."""
    exc = future.result(raise_on_failure=False)
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else future.state.message


def run_pipeline(
    items: Sequence[Item],
    stages: Sequence[Stage[Item]],
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> list[ItemRun[Item]]:
    """Run every item through every stage, each stage bounded by its workers; returns when all items settle.

    Must be called inside a flow run. A failed task ends its item's run; the other items go on.
    """
    runs = [ItemRun(item) for item in items]
    done: Counter[str] = Counter({stage.name: 0 for stage in stages})
    failed: Counter[str] = Counter()
    settled = 0
    in_flight: dict[uuid.UUID, tuple[ItemRun[Item], int, TaskRunner[Any]]] = {}
    # Runner threads only signal here; the flow's own thread submits, so every task run keeps its flow run.
    resolved: queue.SimpleQueue[PrefectFuture[Any]] = queue.SimpleQueue()

    with ExitStack() as stack:
        runners = [stack.enter_context(stage.task_runner()) for stage in stages]
        stack.enter_context(stopping_on_termination())  # exited first: stops the stage threads the runners await

        def submit(run: ItemRun[Item], index: int) -> None:
            stage = stages[index]
            future = runners[index].submit(stage.task, stage.parameters(run.item, run.finished))
            in_flight[future.task_run_id] = (run, index, runners[index])
            future.add_done_callback(resolved.put)

        for run in runs:
            submit(run, 0)
        on_progress(Progress(len(runs), settled, dict(done), dict(failed)))
        while in_flight:
            future = resolved.get()
            run, index, runner = in_flight.pop(future.task_run_id)
            stage = stages[index]
            try:
                future.wait()  # syncs the future's final state from the finished worker
            except BrokenProcessPool as exc:
                # A worker process died (killed, out of memory) and took its pool down: every task queued on
                # that pool fails, and later ones go to a new pool.
                if runners[index] is runner:
                    runners[index] = stack.enter_context(stage.task_runner())
                failed[stage.name] += 1
                run.failed_stage, run.error = stage.name, f"the worker process died: {type(exc).__name__}: {exc}"
            else:
                if future.state.is_completed():
                    done[stage.name] += 1
                    run.finished[stage.name] = future
                    if index + 1 < len(stages):
                        submit(run, index + 1)
                        on_progress(Progress(len(runs), settled, dict(done), dict(failed)))
                        continue
                else:
                    failed[stage.name] += 1
                    run.failed_stage, run.error = stage.name, failure_message(future)
            settled += 1
            run.finished.clear()
            on_progress(Progress(len(runs), settled, dict(done), dict(failed)))
    return runs
