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
from prefect.client.schemas.objects import RunInput, TaskRunResult
from prefect.exceptions import TerminationSignal
from prefect.futures import PrefectFuture
from prefect.results import ResultRecord
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from tasks import stopping

Item = TypeVar("Item")


@dataclass(frozen=True)
class Stage(Generic[Item]):
    """One stage: its task, how many of its tasks may run at once, the stages it waits for, and how to call it.

    `parameters(item, finished)` gets the item's finished upstream futures by stage name; a parameter that is one of
    them is given to the task as that future's result, and recorded as the task run's input from it, which is how
    the Prefect UI draws each episode's lineage (`task_call`). `after` names the stages whose results it takes: the
    stages form a graph, and a stage starts the moment the last of those resolves.
    """

    name: str
    task: Task[..., Any]
    workers: int
    parameters: Callable[[Item, Mapping[str, PrefectFuture[Any]]], dict[str, Any]]
    after: tuple[str, ...] = ()
    in_processes: bool = False  # worker processes for work that holds the GIL; threads otherwise

    def task_runner(self) -> TaskRunner[Any]:
        runner = ProcessPoolTaskRunner if self.in_processes else ThreadPoolTaskRunner
        return runner(max_workers=self.workers)


@dataclass
class ItemRun(Generic[Item]):
    """One item's way through its stages: where and why it failed, if it did.

    `finished` holds the futures of its finished stages only while the item is in flight; they are dropped once it
    settles, so a run's memory does not grow with its results (a transcript per episode).
    """

    item: Item
    stages: tuple[str, ...]  # the stages it runs, in order; a stage of `after` not among them was done before
    finished: dict[str, PrefectFuture[Any]] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    failed_stage: str | None = None
    error: str | None = None

    def ready(self, stages: Mapping[str, Stage[Item]]) -> list[str]:
        """Its stages that may start now: not started, each stage they wait for that it runs finished."""
        if self.failed_stage is not None:
            return []
        return [
            name
            for name in self.stages
            if name not in self.finished
            and name not in self.running
            and all(up in self.finished or up not in self.stages for up in stages[name].after)
        ]


@dataclass(frozen=True)
class Progress:
    total: int
    settled: int  # items that will not move again: through all their stages, or failed
    done: Mapping[str, int]
    failed: Mapping[str, int]
    planned: Mapping[str, int]  # items that run each stage
    dropped: Mapping[str, int]  # items that would have run each stage, had an earlier stage of theirs not failed


@contextmanager
def stopping_on_termination() -> Iterator[None]:
    """Around the flow thread's waits on stage threads: on SIGTERM (Prefect's TerminationSignal) or Ctrl-C there,
    stop them (tasks/stopping.py), then go on raising."""
    try:
        yield
    except (TerminationSignal, KeyboardInterrupt):
        stopping.stop()
        raise


def completed_result(future: PrefectFuture[Any]) -> Any:
    """A completed task's return value. A task run of this process holds it in its final state; `future.result()`
    would fetch it through Prefect's event loop thread, where it waits behind every event and log line sent."""
    data = future.state.data
    return data.result if isinstance(data, ResultRecord) else future.result()


def task_call(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, set[RunInput]]]:
    """A stage's parameters as its task run takes them, and the task runs they come from.

    A finished future becomes its result, its task run named as that parameter's input (a task in a worker process
    sees only the value). Every value is quoted: Prefect would otherwise walk each one (a transcript's every word,
    the settings' every field) twice per task run, looking for futures to wait on and inputs to record, and fetch
    each future's result through its event loop thread.
    """
    given: dict[str, Any] = {}
    upstream: dict[str, set[RunInput]] = {}
    for name, value in parameters.items():
        if isinstance(value, PrefectFuture):
            upstream[name] = {TaskRunResult(id=value.task_run_id)}
            value = completed_result(value)
        given[name] = quote(value)
    return given, upstream


def failure_message(future: PrefectFuture[Any]) -> str | None:
    """Why a finished task failed: its exception, or the message of the Failed state it returned."""
    exc = future.result(raise_on_failure=False)
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else future.state.message


def run_pipeline(
    items: Sequence[Item],
    stages: Sequence[Stage[Item]],
    on_progress: Callable[[Progress], None] = lambda progress: None,
    stages_of: Callable[[Item], Sequence[str]] | None = None,
) -> list[ItemRun[Item]]:
    """Run every item through its stages (`stages_of(item)`, default all), each stage bounded by its workers; returns
    when all items settle.

    Must be called inside a flow run. A failed task ends its item's run (stages of it already running finish); the
    other items go on.
    """
    by_name = {stage.name: stage for stage in stages}
    runs = [ItemRun(item, tuple(stages_of(item)) if stages_of else tuple(by_name)) for item in items]
    planned = Counter(name for run in runs for name in run.stages)
    done: Counter[str] = Counter({stage.name: 0 for stage in stages})
    failed: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    settled = 0
    in_flight: dict[uuid.UUID, tuple[ItemRun[Item], str, TaskRunner[Any]]] = {}
    # Runner threads only signal here; the flow's own thread submits, so every task run keeps its flow run.
    resolved: queue.SimpleQueue[PrefectFuture[Any]] = queue.SimpleQueue()

    def progress() -> Progress:
        return Progress(len(runs), settled, dict(done), dict(failed), dict(planned), dict(dropped))

    def fail(run: ItemRun[Item], name: str, error: str | None) -> None:
        failed[name] += 1
        if run.failed_stage is None:
            run.failed_stage, run.error = name, error
            dropped.update(s for s in run.stages if s not in run.finished and s not in run.running and s != name)

    with ExitStack() as stack:
        runners = {stage.name: stack.enter_context(stage.task_runner()) for stage in stages}
        stack.enter_context(stopping_on_termination())  # exited first: stops the stage threads the runners await

        def submit_ready(run: ItemRun[Item]) -> None:
            for name in run.ready(by_name):
                stage = by_name[name]
                parameters, upstream = task_call(stage.parameters(run.item, run.finished))
                future = runners[name].submit(stage.task, parameters, dependencies=upstream)
                run.running.add(name)
                in_flight[future.task_run_id] = (run, name, runners[name])
                future.add_done_callback(resolved.put)

        for run in runs:
            submit_ready(run)
        settled = sum(1 for run in runs if not run.stages)
        on_progress(progress())
        while in_flight:
            future = resolved.get()
            run, name, runner = in_flight.pop(future.task_run_id)
            run.running.discard(name)
            try:
                future.wait()  # syncs the future's final state from the finished worker
            except BrokenProcessPool as exc:
                # A worker process died (killed, out of memory) and took its pool down: every task queued on
                # that pool fails, and later ones go to a new pool.
                if runners[name] is runner:
                    runners[name] = stack.enter_context(by_name[name].task_runner())
                fail(run, name, f"the worker process died: {type(exc).__name__}: {exc}")
            else:
                if future.state.is_completed():
                    done[name] += 1
                    run.finished[name] = future
                    submit_ready(run)
                else:
                    fail(run, name, failure_message(future))
            if not run.running and (run.failed_stage is not None or len(run.finished) == len(run.stages)):
                settled += 1
                run.finished.clear()
            on_progress(progress())
    return runs
